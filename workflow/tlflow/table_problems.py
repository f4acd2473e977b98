"""How an error names the bad rows of a table the user gave (labels, corrections):
the first few of each kind, by row number or file name."""

from __future__ import annotations

SHOWN = 10


def first_of(items) -> str:
    """The first SHOWN of ``items``, joined, with ' ...' when there are more."""
    items = list(items)
    return ", ".join(map(str, items[:SHOWN])) + (" ..." if len(items) > SHOWN else "")


def row_numbers(numbers) -> str:
    """Rows by their number in the table (1 is the first after the header)."""
    return first_of(numbers)


def listed_twice(twice: dict[str, list[int]], rule: str) -> str:
    """The problem of a table's files listed more than once (``rule`` says why one is
    enough), each with its rows."""
    return f"{len(twice)} file(s) are listed more than once ({rule}): " + "; ".join(
        f"{key} (rows {row_numbers(numbers)})" for key, numbers in list(twice.items())[:SHOWN]
    )
