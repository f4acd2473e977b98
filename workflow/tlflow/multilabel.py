"""Several labels per image: per-label probabilities, temperatures, thresholds, scores.

A multi-label head gives one logit per label, and each label's probability is the
sigmoid of its logit over that label's temperature. Labels are a 0/1 matrix
(images, labels). Temperatures and thresholds are fitted on the validation split:
a label's temperature minimises its log loss there (calibration.fit_temperature),
and its decision threshold is the lowest calibrated probability at which that
label's validation F1 is highest (an image has the label when its probability is
at least the threshold); a label without a positive validation image keeps
DEFAULT_THRESHOLD.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.special import expit

from . import calibration
from .probabilities import per_class

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
# Multi-label selection criteria; the single-label ones that have no multi-label
# meaning choose by mean average precision.
CRITERIA = ("mean_average_precision", "macro_f1", "log_loss")
DEFAULT_CRITERION = "mean_average_precision"


def criterion(setting: str) -> str:
    """The criterion a multi-label head is chosen by for config ``head: criterion``."""
    return setting if setting in CRITERIA else DEFAULT_CRITERION


def probabilities(logits, temperatures=None) -> np.ndarray:
    """One sigmoid per label of (n, labels) ``logits`` over each label's temperature."""
    z = np.asarray(logits, dtype=np.float64)
    return expit(z if temperatures is None else z / np.asarray(temperatures, dtype=np.float64))


def log_loss(logits, labels, temperatures=None) -> float:
    """Mean binary cross-entropy over images and labels, from logits (no log(0))."""
    z = np.asarray(logits, dtype=np.float64)
    if temperatures is not None:
        z = z / np.asarray(temperatures, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - np.asarray(labels) * z))


def check_labels(labels, classes, multi_label: bool, path, split: str) -> None:
    """Raise ValueError naming ``path`` when its labels are not of the run's kind, or
    when a training label has no positive image (no head can learn it); warn of a
    validation split without one (its threshold stays DEFAULT_THRESHOLD)."""
    labels = np.asarray(labels)
    if (labels.ndim == 2) != multi_label or (multi_label and labels.shape[1] != len(classes)):
        kind = f"a 0/1 matrix of {len(classes)} labels" if multi_label else "one class per image"
        raise ValueError(
            f"{path} holds labels of shape {labels.shape}, but the run expects {kind}: it was "
            "written for another label table. Delete it and rerun the workflow."
        )
    missing = [cls for cls, n in zip(classes, labels.sum(axis=0)) if n == 0] if multi_label else []
    if missing and split != "train":
        log.warning(
            "label(s) %s have no %s image: their threshold stays %s",
            ", ".join(missing),
            split,
            DEFAULT_THRESHOLD,
        )
    elif missing:
        raise ValueError(
            f"label(s) {', '.join(map(repr, missing))} have no training image ({path}): no head can "
            "learn them. Give them training images in the label table, or remove them from it."
        )


def fit_temperatures(logits, labels) -> list[float]:
    """Each label's temperature: the T > 0 minimising its log loss on ``labels``."""
    labels = np.asarray(labels)
    return [calibration.fit_temperature(logits[:, [j]], labels[:, j]) for j in range(labels.shape[1])]


def fit_thresholds(proba, labels) -> list[float]:
    """Each label's threshold: the lowest probability of highest F1 (module docstring)."""
    from sklearn.metrics import precision_recall_curve

    proba, labels = np.asarray(proba), np.asarray(labels)
    chosen = []
    for j in range(labels.shape[1]):
        if not labels[:, j].any():
            chosen.append(DEFAULT_THRESHOLD)
            continue
        precision, recall, cuts = precision_recall_curve(labels[:, j], proba[:, j])
        f1 = np.divide(
            2 * precision * recall,
            precision + recall,
            out=np.zeros_like(precision),
            where=precision + recall > 0,
        )[:-1]
        chosen.append(float(cuts[int(np.argmax(f1))]))  # cuts ascend: the first maximum is the lowest
    return chosen


def decide(proba, thresholds) -> np.ndarray:
    """0/1 decisions: a label is on when its probability reaches its threshold."""
    return (np.asarray(proba) >= np.asarray(thresholds)).astype(np.int64)


def average_precisions(labels, proba) -> np.ndarray:
    """Average precision per label (NaN for a label without a positive image)."""
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels)
    return np.array(
        [
            average_precision_score(labels[:, j], proba[:, j]) if labels[:, j].any() else np.nan
            for j in range(labels.shape[1])
        ]
    )


def scores(labels, proba, thresholds) -> dict:
    """Mean average precision (over the labels with a positive image), macro and micro F1."""
    from sklearn.metrics import f1_score

    predicted = decide(proba, thresholds)
    return {
        "mean_average_precision": float(np.nanmean(average_precisions(labels, proba))),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(labels, predicted, average="micro", zero_division=0)),
    }


def expected_calibration_errors(labels, proba) -> list[float]:
    """Each label's ECE, as calibration's of its two-column (absent, present) probabilities."""
    labels, proba = np.asarray(labels), np.asarray(proba)
    return [
        calibration.expected_calibration_error(per_class(proba[:, [j]]), labels[:, j])
        for j in range(labels.shape[1])
    ]


def join(names, separator: str) -> str:
    """An image's labels as one cell, in the order given."""
    return separator.join(names)


def names_of(row, classes) -> list[str]:
    """The labels of one 0/1 row."""
    return [cls for cls, on in zip(classes, row) if on]
