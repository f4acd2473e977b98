"""Corrections of labels as data (config 'corrections'): a CSV of file, action, class.

``relabel`` gives an image another of the data set's classes, ``exclude`` leaves
it out (named in logs/ignored_files.csv). They apply to the split's labels listing
when the workflow is read, after the layout or label table gave each image its
class, so no image is moved or touched: a corrected image keeps its content hash,
its split and its features (an excluded one is still extracted, and left out where
the split is joined), and only what reads labels (the joins, the head and what
follows) reruns. The audit's review page (tlflow.review) writes this
table, with the earlier corrections in it.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import replace
from pathlib import Path

from .images import Dataset, DatasetError
from .label_table import relative_name
from .table_problems import SHOWN, first_of, listed_twice, row_numbers

COLUMNS = ["file", "action", "class"]
ACTIONS = ("relabel", "exclude")
EXCLUDED = "excluded by {table}"


def read(path) -> list[tuple[str, str, str]]:
    """The table's rows (file, action, class), as text; a DatasetError names the
    table when it cannot be read or lacks a column."""
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DatasetError(
            f"corrections table '{path}' (config 'corrections') does not exist: set "
            "'corrections' to a CSV relative to the folder you run Snakemake in, e.g. "
            "the one the audit's review page (audit/review.html) downloads."
        ) from None
    except (OSError, ValueError) as error:  # pandas' ParserError is a ValueError
        raise DatasetError(
            f"cannot read the corrections table '{path}' ({error}): it must be a CSV."
        ) from None
    missing = [column for column in COLUMNS if column not in table]
    if missing:
        raise DatasetError(
            f"corrections table '{path}' has no column(s) {missing}; its columns are "
            f"{list(table.columns)}. It needs {', '.join(COLUMNS)}: one row per image, "
            "action 'relabel' (with the new class) or 'exclude' (class empty)."
        )
    return list(zip(table["file"], table["action"].str.strip(), table["class"]))


def apply(dataset: Dataset, rows, table) -> Dataset:
    """``dataset`` with the corrections ``rows`` (of ``table``, for messages) applied;
    its ``corrected`` counts them ({"relabelled": n, "excluded": m}).

    Raises DatasetError naming every bad row at once: files that are not images of
    the data set, unknown classes, a file listed twice, unknown actions.
    """
    where = {
        unicodedata.normalize("NFC", file): (split, cls, file)
        for split, by_class in dataset.images.items()
        for cls, files in by_class.items()
        for file in files
    }
    reasons = {unicodedata.normalize("NFC", name): reason for name, reason in dataset.ignored}
    unknown_file, unknown_class, bad_action, no_class, extra_class = [], [], [], [], []
    first: dict[str, int] = {}
    twice: dict[str, list[int]] = {}
    changes: dict[str, tuple[str, str | None]] = {}  # file as listed -> (action, class)
    for number, (name, action, cls) in enumerate(rows, 1):
        key = relative_name(name) if name else None
        if key in first:
            twice.setdefault(key, [first[key]]).append(number)
            continue
        if key is not None:
            first[key] = number
        if key not in where:
            unknown_file.append(name + (f" ({reasons[key]})" if key in reasons else ""))
        if action not in ACTIONS:
            bad_action.append(number)
            continue
        cls = unicodedata.normalize("NFC", cls.strip())
        if action == "relabel" and not cls:
            no_class.append(number)
        elif action == "relabel" and cls not in dataset.classes:
            unknown_class.append(f"{cls} (row {number})")
        elif action == "exclude" and cls:
            extra_class.append(number)
        elif key in where:
            changes[where[key][2]] = (action, cls or None)
    problems = []
    if unknown_file:
        problems.append(
            f"{len(unknown_file)} file(s) are not images of the data set (paths relative "
            f"to data_dir '{dataset.data_dir}'): " + first_of(unknown_file)
        )
    if unknown_class:
        problems.append(
            f"{len(unknown_class)} relabel(s) name a class the data set does not have "
            f"(its classes: {', '.join(dataset.classes)}): " + ", ".join(unknown_class[:SHOWN])
        )
    if no_class:
        problems.append(f"row(s) {row_numbers(no_class)} relabel without a class")
    if extra_class:
        problems.append(f"row(s) {row_numbers(extra_class)} exclude but name a class (leave it empty)")
    if bad_action:
        problems.append(f"row(s) {row_numbers(bad_action)} have an action that is not {' or '.join(ACTIONS)}")
    if twice:
        problems.append(listed_twice(twice, "one correction per image"))
    if problems:
        raise DatasetError(
            f"corrections table '{table}': " + "; ".join(problems) + ". Fix or remove "
            "these rows (columns file, action, class) and rerun; nothing was run."
        )
    moved = {
        file
        for file, (action, cls) in changes.items()
        if action == "exclude" or cls != where[unicodedata.normalize("NFC", file)][1]
    }
    images = {
        split: {cls: [f for f in files if f not in moved] for cls, files in by_class.items()}
        for split, by_class in dataset.images.items()
    }
    counts, ignored, excluded = Counter(), list(dataset.ignored), {}
    for file in sorted(moved):
        action, cls = changes[file]
        split = where[unicodedata.normalize("NFC", file)][0]
        if action == "relabel":
            images[split][cls].append(file)
            counts["relabelled"] += 1
        else:
            ignored.append((file, EXCLUDED.format(table=table)))
            excluded.setdefault(split, []).append(file)
            counts["excluded"] += 1
    emptied = [
        (s, c)
        for s, by_class in images.items()
        for c, files in by_class.items()
        if not files and dataset.images[s][c]
    ]
    if emptied:
        raise DatasetError(
            f"corrections table '{table}' leaves "
            + "; ".join(f"'{split}' without an image of class '{cls}'" for split, cls in emptied)
            + ": a head chosen, calibrated or scored without a class is wrong for it. Keep "
            "at least one image of each class in every split; nothing was run."
        )
    for by_class in images.values():
        for files in by_class.values():
            files.sort()
    corrected = {"relabelled": counts["relabelled"], "excluded": counts["excluded"]}
    return replace(dataset, images=images, ignored=sorted(ignored), corrected=corrected, excluded=excluded)
