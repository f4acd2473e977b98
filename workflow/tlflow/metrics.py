"""Scores of a predictions table: accuracy, balanced accuracy, top-5 accuracy (more
than 5 classes), per-class precision/recall/F1, log loss; the most confused pairs.

Everything is computed from the table (file, true class, predicted class, one
probability per class), so metrics, confusion matrix and figures agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import imbalance
from .probabilities import probability_columns

TOP_K = 5  # top-k accuracy is reported above this many classes


def predictions_table(files, labels, proba, classes) -> pd.DataFrame:
    """One row per image: file, true class, predicted class, probability of each class."""
    labels = np.asarray(labels)
    table = pd.DataFrame(
        {
            "file": list(files),
            "true_class": [classes[i] for i in labels],
            "predicted_class": [classes[i] for i in np.argmax(proba, axis=1)],
        }
    )
    table[probability_columns(classes)] = proba
    return table


def metrics(table: pd.DataFrame, classes) -> dict:
    """Accuracy, balanced accuracy, per-class and macro precision/recall/F1, log loss;
    top-5 accuracy above 5 classes; ROC AUC for two classes."""
    from sklearn import metrics as skm

    index = {cls: i for i, cls in enumerate(classes)}
    y_true = table["true_class"].map(index).to_numpy()
    y_pred = table["predicted_class"].map(index).to_numpy()
    proba = table[probability_columns(classes)].to_numpy(dtype=np.float64)
    labels = list(range(len(classes)))
    # zero_division=0: a class never predicted has precision 0, not a warning and NaN.
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    result = {
        "images": len(table),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        **imbalance.class_scores(y_true, y_pred, len(classes)),
        "per_class": {
            cls: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, cls in enumerate(classes)
        },
        "macro": {
            "precision": float(np.mean(precision)),
            "recall": float(np.mean(recall)),
            "f1": float(np.mean(f1)),
        },
        "log_loss": float(skm.log_loss(y_true, proba, labels=labels)),
    }
    if len(classes) > TOP_K:
        # Right when the true class is among the 5 most probable.
        result[f"top_{TOP_K}_accuracy"] = float(
            skm.top_k_accuracy_score(y_true, proba, k=TOP_K, labels=labels)
        )
    if len(classes) == 2:
        # Undefined when the split holds one class only: null rather than a crash.
        both = len(set(y_true)) == 2
        result["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1])) if both else None
    return result


def confusion_table(table: pd.DataFrame, classes) -> pd.DataFrame:
    """Counts with true classes as rows and predicted classes as columns."""
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(table["true_class"], table["predicted_class"], labels=classes)
    return pd.DataFrame(
        counts,
        index=pd.Index(classes, name="true \\ predicted"),
        columns=list(classes),
    )


def confident_mistakes(table: pd.DataFrame, classes, most: int) -> pd.DataFrame:
    """Wrong predictions, the most confident first (likely mislabelled or hard images)."""
    wrong = table[table["true_class"] != table["predicted_class"]].copy()
    proba = wrong[probability_columns(classes)].to_numpy()
    wrong["confidence"] = proba.max(axis=1)
    return wrong.sort_values(["confidence", "file"], ascending=[False, True]).head(most)


def confused_pairs(confusion: pd.DataFrame) -> pd.DataFrame:
    """Every (true, predicted) pair of different classes with a mistake, the most
    frequent first: its count and its share of the true class's images.

    ``confusion``: confusion_table's counts. Ties go by class names, so the order is
    fixed.
    """
    counts = confusion.to_numpy()
    totals = counts.sum(axis=1)
    rows, cols = np.nonzero(counts * (1 - np.eye(len(counts), dtype=counts.dtype)))
    pairs = pd.DataFrame(
        {
            "true_class": confusion.index[rows].astype(str),
            "predicted_class": confusion.columns[cols].astype(str),
            "images": counts[rows, cols],
            "share_of_true_class": counts[rows, cols] / totals[rows],
        }
    )
    return pairs.sort_values(
        ["images", "true_class", "predicted_class"], ascending=[False, True, True], ignore_index=True
    )
