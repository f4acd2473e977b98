"""A training history (history.csv): one row per epoch that ran, the same for the
head's mlp and for fine-tuning, and the epoch that early stopping keeps."""

from __future__ import annotations

import numpy as np

from .atomic import atomic_path

COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]


def epoch_row(epoch: int, logs: dict) -> dict:
    """The row of Keras's 0-based ``epoch`` from its ``logs`` (numbers by metric name)."""
    return {"epoch": epoch + 1, **{k: float(logs[k]) for k in COLUMNS[1:]}}


def best_epoch(rows: list[dict], early_stopping: bool) -> int:
    """The 1-based epoch whose weights are kept: with early stopping, the first of the
    lowest validation loss (Keras's restore_best_weights), else the last."""
    return int(np.argmin([row["val_loss"] for row in rows])) + 1 if early_stopping else len(rows)


def write(rows: list[dict], path) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp, index=False)
