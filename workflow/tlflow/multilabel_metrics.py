"""Scores of a multi-label predictions table: mean average precision, micro and macro
F1, per-label precision, recall, F1, average precision, support and calibration
error; per-label counts; the images whose labels the head got most surely wrong.

The table has one row per image: file, true_labels and predicted_labels (each
image's labels joined by the run's separator) and one probability per label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import calibration, multilabel
from .probabilities import per_class, probability_columns


def matrix(cells, classes, separator: str, where: str = "") -> np.ndarray:
    """0/1 rows of label cells ("a|b"; empty: none) over ``classes``; ValueError
    naming ``where`` and the unknown labels."""
    index = {cls: i for i, cls in enumerate(classes)}
    rows = np.zeros((len(cells), len(classes)), dtype=np.int64)
    unknown = set()
    for row, cell in enumerate(cells):
        for name in str(cell).split(separator) if isinstance(cell, str) and cell else []:
            if name in index:
                rows[row, index[name]] = 1
            else:
                unknown.add(name)
    if unknown:
        raise ValueError(
            f"{where} names label(s) {', '.join(map(repr, sorted(unknown)))} that are not "
            f"the run's ({', '.join(classes)}): rebuild it with the run's label table"
        )
    return rows


def cells(rows, classes, separator: str) -> list[str]:
    """Each 0/1 row as one cell of its labels."""
    return [multilabel.join(multilabel.names_of(row, classes), separator) for row in np.asarray(rows)]


def predictions_table(files, labels, proba, classes, thresholds, separator: str) -> pd.DataFrame:
    """One row per image: file, true labels, labels at or above their thresholds, probabilities."""
    table = pd.DataFrame(
        {
            "file": list(files),
            "true_labels": cells(labels, classes, separator),
            "predicted_labels": cells(multilabel.decide(proba, thresholds), classes, separator),
        }
    )
    table[probability_columns(classes)] = proba
    return table


def metrics(labels, proba, classes, thresholds) -> dict:
    """Every figure of metrics.json for 0/1 ``labels`` and calibrated ``proba``."""
    from sklearn import metrics as skm

    predicted = multilabel.decide(proba, thresholds)
    precision, recall, f1, support = skm.precision_recall_fscore_support(labels, predicted, zero_division=0)
    micro = skm.precision_recall_fscore_support(labels, predicted, average="micro", zero_division=0)
    ap, ece = (
        multilabel.average_precisions(labels, proba),
        multilabel.expected_calibration_errors(labels, proba),
    )
    return {
        "images": len(labels),
        **multilabel.scores(labels, proba, thresholds),
        # Every label of the image right, none extra.
        "exact_match": float(np.mean((predicted == labels).all(axis=1))),
        "per_label": {
            cls: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "average_precision": None if np.isnan(ap[i]) else float(ap[i]),
                "support": int(support[i]),
                "threshold": float(thresholds[i]),
                "ece": ece[i],
            }
            for i, cls in enumerate(classes)
        },
        "macro": {
            "precision": float(np.mean(precision)),
            "recall": float(np.mean(recall)),
            "f1": float(np.mean(f1)),
        },
        "micro": {"precision": float(micro[0]), "recall": float(micro[1]), "f1": float(micro[2])},
        "ece": float(np.mean(ece)),  # the mean of the labels'
    }


def label_counts(labels, proba, classes, thresholds) -> pd.DataFrame:
    """Per label: images with it found (true positives), extra, missed and rightly absent."""
    labels, predicted = np.asarray(labels), multilabel.decide(proba, thresholds)
    return pd.DataFrame(
        {
            "true_positive": (labels & predicted).sum(axis=0),
            "false_positive": ((1 - labels) & predicted).sum(axis=0),
            "false_negative": (labels & (1 - predicted)).sum(axis=0),
            "true_negative": ((1 - labels) & (1 - predicted)).sum(axis=0),
        },
        index=pd.Index(classes, name="label"),
    )


def reliability(labels, proba_sets) -> pd.DataFrame:
    """calibration.reliability over every (image, label) decision, per named set of probabilities."""
    labels = np.asarray(labels).ravel()
    return pd.concat(
        pd.DataFrame(calibration.reliability(per_class(p.reshape(-1, 1)), labels)).assign(probabilities=name)
        for name, p in proba_sets
    )


def mistakes(table: pd.DataFrame, classes, separator: str, most: int) -> pd.DataFrame:
    """Images with a missed or an extra label, the surest mistake first: columns missed,
    extra (label cells) and confidence (the probability against the truth of the
    surest wrong label)."""
    proba = table[probability_columns(classes)].to_numpy(dtype=np.float64)
    truth = matrix(table["true_labels"].fillna(""), classes, separator, "the predictions table")
    predicted = matrix(table["predicted_labels"].fillna(""), classes, separator, "the predictions table")
    wrong = truth != predicted
    against = np.where(truth == 1, 1 - proba, proba)  # how sure the head was of the wrong answer
    shown = table.assign(
        missed=cells(truth & (1 - predicted), classes, separator),
        extra=cells((1 - truth) & predicted, classes, separator),
        confidence=np.where(wrong, against, 0).max(axis=1),
    )[wrong.any(axis=1)]
    return shown.sort_values(["confidence", "file"], ascending=[False, True]).head(most)
