"""Test-time augmentation: an image's probabilities averaged over it and its fixed views.

The evaluation averages the head's probabilities over each image and its test-time
views (tlflow.views); ``model.keras`` averages the same way behind one Average layer,
so a deployed prediction equals the evaluated one. Log losses are taken in log space
from the logits (the log of the mean probability), never from rounded probabilities.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import log_softmax, logsumexp

from . import calibration, split_rows
from .metrics import predictions_table
from .probabilities import probability_columns, softmax_logits
from .readers import read_table


def view_rows(manifest_csv, views_manifest_csv) -> dict[str, np.ndarray]:
    """``{view name: rows of the views' features}``, each in the split manifest's order."""
    files = read_table(manifest_csv)["file"]
    views = read_table(views_manifest_csv)
    where = {key: i for i, key in enumerate(zip(views["file"], views["view"]))}
    try:
        return {
            name: np.array([where[(file, name)] for file in files]) for name in dict.fromkeys(views["view"])
        }
    except KeyError as missing:
        raise ValueError(
            f"{views_manifest_csv} lacks the view {missing} of an image of {manifest_csv}: "
            "they were not written from the same images. Delete both and rerun the workflow."
        ) from None


def average(table: pd.DataFrame, raw, head, views, manifest_csv, classes):
    """The predictions table averaged over each image and its views, the logit sets
    (originals first) and the views' names.

    ``table`` and ``raw`` are the originals' (evaluate.predict_split); ``head`` is
    numpy_head.load's; ``views`` is (shard files, manifest.csv) of the split's
    test-time views.
    """
    features = split_rows.Rows([(views[1], views[0])])
    probas, sets = [table[probability_columns(classes)].to_numpy(np.float64)], [raw]
    rows_of = view_rows(manifest_csv, views[1])
    for rows in rows_of.values():
        view = features.subset(rows)  # one view's rows, read as predicted
        probas.append(head.probabilities(view))
        sets.append(head.logits(view))
    labels = table["true_class"].map({cls: i for i, cls in enumerate(classes)}).to_numpy()
    averaged = predictions_table(table["file"], labels, np.mean(probas, axis=0), classes)
    return averaged, sets, list(rows_of)


def _log_proba(logits_, temperature: float) -> np.ndarray:
    return log_softmax(softmax_logits(np.asarray(logits_, dtype=np.float64) / temperature), axis=1)


def log_loss(logit_sets, labels, temperature: float = 1.0) -> float:
    """Mean negative log of the views' mean probability of the true class."""
    if len(logit_sets) == 1:
        return calibration.log_loss(logit_sets[0], labels, temperature)
    logp = np.stack([_log_proba(z, temperature) for z in logit_sets])
    mean = logsumexp(logp, axis=0) - np.log(len(logit_sets))
    return float(-np.mean(mean[np.arange(len(mean)), np.asarray(labels)]))


def probabilities(logit_sets, temperature: float = 1.0) -> np.ndarray:
    """The views' mean probabilities, one column per class."""
    if len(logit_sets) == 1:
        return calibration.probabilities(logit_sets[0], temperature)
    return np.mean([calibration.probabilities(z, temperature) for z in logit_sets], axis=0)
