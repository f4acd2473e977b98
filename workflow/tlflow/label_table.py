"""Labels from a table (config 'labels'): a CSV of file, label and optionally split.

Files are relative to data_dir, matched to the images found there (after
Unicode NFC normalisation, as a Mac may write names decomposed). Every listed
file must be an image there, and each is listed once; the images the table does
not list are named as ignored, never silently dropped. A table may give several
labels per image (tlflow.label_sets).
"""

from __future__ import annotations

import posixpath
import unicodedata
from pathlib import Path

from . import label_sets, listing
from .images import DatasetError
from .table_problems import SHOWN, first_of, listed_twice, row_numbers

COLUMNS = {"file": "file", "label": "label", "split": "split", "labels": []}
NOT_LISTED = "not listed in the label table"


def _read(path: Path, columns: dict):
    """The table's columns as text; a DatasetError names the table and the columns it lacks."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DatasetError(
            f"label table '{path}' (config 'labels') does not exist: set 'labels' to "
            "a CSV relative to the folder you run Snakemake in."
        ) from None
    except (OSError, ValueError) as error:  # pandas' ParserError is a ValueError
        raise DatasetError(f"cannot read the label table '{path}' ({error}): it must be a CSV.") from None
    # 0/1 label columns (label_sets) stand for the label column; label_sets checks them.
    needed = ["file"] if columns["labels"] else ["file", "label"]
    unknown = [columns[key] for key in needed if columns[key] not in table]
    if unknown:
        raise DatasetError(
            f"label table '{path}' has no column(s) {unknown}; its columns are "
            f"{list(table.columns)}. Name the file and label columns in config "
            "'label_columns: {file: ..., label: ...}'."
        )
    return table


def relative_name(name: str) -> str | None:
    """The path as data_dir's walk writes it, or None when it leaves data_dir."""
    path = posixpath.normpath(unicodedata.normalize("NFC", name))
    if posixpath.isabs(path) or path == ".." or path.startswith("../"):
        return None
    return path


def read(path, data_dir, splits: list[str], columns: dict, separator: str = "|"):
    """([(file as found under data_dir, label, split or None)], ignored, multi-label)
    of the table; of multi-label tables, the label is the image's labels joined by
    ``separator`` (label_sets.cells).

    Raises DatasetError naming every bad row at once: empty or outside file names,
    empty labels, unknown splits, files listed twice, files that are not images there.
    """
    import pandas as pd

    path, data_dir = Path(path), Path(data_dir)
    columns = {**COLUMNS, **columns}
    table = _read(path, columns)
    cells = label_sets.cells(table, path, columns["label"], columns["labels"], separator)
    files = table[columns["file"]]
    labels = table[columns["label"]] if cells is None else pd.Series(cells, dtype=str)
    split_column = columns["split"] if columns["split"] in table else None
    found, ignored = listing.images_below(data_dir)
    on_disk = {unicodedata.normalize("NFC", name): name for name in found}
    problems, rows, first_row = [], [], {}
    missing, outside, twice = [], [], {}
    empty_file = [n for n, f in enumerate(files, 1) if not f]
    # A row of 0/1 columns may name no label: an image with none of them.
    empty_label = [] if columns["labels"] else [n for n, label in enumerate(labels, 1) if not label.strip()]
    bad_split = []
    for number, (name, label) in enumerate(zip(files, labels), 1):
        if not name:
            continue
        key = relative_name(name)
        if key is None:
            outside.append(name)
            continue
        if key in first_row:
            twice.setdefault(key, [first_row[key]]).append(number)
            continue
        first_row[key] = number
        split = table[split_column].iloc[number - 1] if split_column else ""
        if split and split not in splits:
            bad_split.append(number)
        if key not in on_disk:
            missing.append(name)
        else:
            rows.append((on_disk[key], unicodedata.normalize("NFC", label), split or None))
    if empty_file:
        problems.append(f"row(s) {row_numbers(empty_file)} have no file name")
    if empty_label:
        problems.append(f"row(s) {row_numbers(empty_label)} have an empty label")
    if bad_split:
        problems.append(
            f"row(s) {row_numbers(bad_split)} name a split that is not in config 'splits' "
            f"{splits} (an empty cell is split by content hash)"
        )
    if outside:
        problems.append(
            f"{len(outside)} file(s) lie outside data_dir '{data_dir}': " + ", ".join(outside[:SHOWN])
        )
    if twice:
        problems.append(listed_twice(twice, "one label per image"))
    if missing:
        reasons = dict(ignored)
        problems.append(
            f"{len(missing)} listed file(s) are not images under data_dir '{data_dir}': "
            + first_of(name + (f" ({reasons[name]})" if name in reasons else "") for name in missing)
        )
    if problems:
        raise DatasetError(
            f"label table '{path}': " + "; ".join(problems) + ". Fix these rows (file "
            f"names relative to data_dir, an image extension: "
            f"{', '.join(sorted(listing.IMAGE_EXTENSIONS))}) and rerun; nothing was run."
        )
    names = {label for _, label, _ in rows} if cells is None else label_sets.names(labels, separator)
    if len(names) < 2:
        raise DatasetError(
            f"label table '{path}' has {len(names)} label(s); a classifier needs at least two."
        )
    listed = {file for file, _, _ in rows}
    ignored.extend((name, NOT_LISTED) for name in found if name not in listed)
    return rows, ignored, cells is not None
