"""Several labels per image in a label table (docs/multilabel.md).

Two forms: the label column with several labels per cell, joined by the
separator (config 'label_separator'); or one 0/1 column per label (config
'label_columns: labels:'). A table of the first form is multi-label when at least
one cell holds the separator. Each image's labels become one cell, its labels
sorted and joined by the separator: the "class" its rows carry through the
listings and manifests, from which the join makes the 0/1 matrix.
"""

from __future__ import annotations

from .images import DatasetError
from .table_problems import row_numbers


def cells(table, path, label_column: str, label_columns: list[str], separator: str) -> list[str] | None:
    """Each row's labels as one cell (sorted, joined by ``separator``; empty: none),
    or None when the table is single-label. DatasetError naming the table and rows."""
    if label_columns:
        return _from_columns(table, path, label_columns, separator)
    labels = table[label_column]
    if not labels.str.contains(separator, regex=False).any():
        return None
    broken = [
        n
        for n, cell in enumerate(labels, 1)
        if cell.strip() and any(not part.strip() for part in cell.split(separator))
    ]
    if broken:
        raise DatasetError(
            f"label table '{path}': row(s) {row_numbers(broken)} have an empty label between two "
            f"'{separator}' (config 'label_separator'). Remove the extra separators and rerun."
        )
    return [
        separator.join(sorted({part.strip() for part in cell.split(separator)})) if cell.strip() else ""
        for cell in labels
    ]


def _from_columns(table, path, label_columns: list[str], separator: str) -> list[str]:
    missing = [name for name in label_columns if name not in table]
    if missing:
        raise DatasetError(
            f"label table '{path}' has no column(s) {missing} named in config 'label_columns: "
            f"labels:'; its columns are {list(table.columns)}. Name each label's 0/1 column."
        )
    joined = [name for name in label_columns if separator in name]
    if joined:
        raise DatasetError(
            f"label(s) {joined} of config 'label_columns: labels:' contain '{separator}', which "
            "joins an image's labels: rename the columns or set another 'label_separator'."
        )
    bad = {
        name: [n for n, cell in enumerate(table[name], 1) if cell.strip() not in ("0", "1")]
        for name in label_columns
    }
    bad = {name: rows for name, rows in bad.items() if rows}
    if bad:
        raise DatasetError(
            f"label table '{path}': "
            + "; ".join(f"column '{name}' rows {row_numbers(rows)}" for name, rows in bad.items())
            + " are not 0 or 1. Each label column holds 1 (the image has the label) or 0."
        )
    ordered = sorted(label_columns)
    return [
        separator.join(name for name in ordered if row[name].strip() == "1")
        for _, row in table[ordered].iterrows()
    ]


def names(cells_, separator: str) -> list[str]:
    """The labels the cells name, sorted."""
    return sorted({part for cell in cells_ if cell for part in cell.split(separator)})


def check_training(train_cells, labels: list[str], separator: str, path) -> None:
    """DatasetError when a label has no training image: no head can learn it."""
    found = set(names(train_cells, separator))
    absent = [label for label in labels if label not in found]
    if absent:
        raise DatasetError(
            f"label table '{path}': label(s) {absent} have no training image. No head can learn "
            "them: give them training images (the table's split column, or more images for the "
            "content-hash split), or remove them from the table."
        )
