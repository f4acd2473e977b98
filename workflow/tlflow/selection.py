"""Which heads to try, and which one wins on the validation split.

Settings that may list several values (kind, pooling, l2, dropout, learning_rate)
span the grid; with ``search: false`` only the first value of each is used, so a
pinned head is the grid's first candidate. With more training rows than
``search_rows``, the candidates are fitted on a stratified subsample of them.
"""

from __future__ import annotations

import itertools

import numpy as np

GRID_KEYS = ("kind", "pooling", "l2", "dropout", "learning_rate")
# The hyper-parameters each kind of head has; the others do not multiply its candidates.
KIND_KEYS = {"linear": ("l2",), "mlp": ("dropout", "learning_rate")}


def values(settings: dict, key: str) -> list:
    value = settings[key]
    return list(value) if isinstance(value, list) else [value]


def candidates(settings: dict, poolings: list[str]) -> list[dict]:
    """Every candidate as {kind, pooling, <its hyper-parameters>}, in a fixed order.

    ``poolings`` is the configured pooling list with duplicates for this feature
    shape removed (pooling.distinct_poolings).
    """
    grid = {key: values(settings, key) for key in GRID_KEYS}
    grid["pooling"] = poolings
    if not settings["search"]:
        grid = {key: choices[:1] for key, choices in grid.items()}
    found = []
    for kind in grid["kind"]:
        keys = KIND_KEYS[kind]
        for pooling in grid["pooling"]:
            for combo in itertools.product(*(grid[key] for key in keys)):
                found.append({"kind": kind, "pooling": pooling, **dict(zip(keys, combo))})
    return found


# Criteria where higher wins, by their column in the candidates table; log_loss: lower wins.
HIGHER_WINS = {
    "accuracy": "val_accuracy",
    "balanced_accuracy": "val_balanced_accuracy",
    "macro_f1": "val_macro_f1",
}
CRITERIA = ("log_loss", *HIGHER_WINS)
# Of multi-label data only (tlflow.multilabel).
MULTI_LABEL_HIGHER_WINS = {"mean_average_precision": "val_mean_average_precision"}


def best(scores: list[dict], criterion: str) -> int:
    """Index of the winner in ``scores`` (candidate rows with val_log_loss and the
    criterion's column).

    ``log_loss``: lowest validation log loss; ``accuracy``, ``balanced_accuracy``
    (mean recall over the classes), ``macro_f1`` or ``mean_average_precision``
    (multi-label): the highest, then the lowest log
    loss. Remaining ties go to the earlier candidate, so the choice never depends on
    anything but the scores and the grid's order.
    """
    if criterion == "log_loss":
        key = lambda i: (scores[i]["val_log_loss"], i)  # noqa: E731
    elif criterion in HIGHER_WINS or criterion in MULTI_LABEL_HIGHER_WINS:
        column = {**HIGHER_WINS, **MULTI_LABEL_HIGHER_WINS}[criterion]
        if column not in scores[0]:
            raise ValueError(
                f"selection criterion '{criterion}' applies to multi-label data only; "
                "set 'head: criterion:' to accuracy, balanced_accuracy, macro_f1 or log_loss"
            )
        key = lambda i: (-scores[i][column], scores[i]["val_log_loss"], i)  # noqa: E731
    else:
        raise ValueError(
            f"unknown selection criterion '{criterion}'; use one of "
            f"{', '.join([*CRITERIA, *MULTI_LABEL_HIGHER_WINS])}"
        )
    return min(range(len(scores)), key=key)


def search_subsample(labels, limit: int, seed: int):
    """Sorted indices of a stratified subsample of about ``limit`` of ``labels``'
    rows, fixed by ``seed``; None when there are no more than ``limit`` rows.

    Each class keeps its share of the rows, and at least one: scikit-learn's
    stratified splits round a rare class down to none, and a class the search never
    sees cannot be scored fairly.
    """
    labels = np.asarray(labels)
    if len(labels) <= limit:
        return None
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        share = max(1, round(len(rows) * limit / len(labels)))
        chosen.append(rng.choice(rows, share, replace=False))
    return np.sort(np.concatenate(chosen))
