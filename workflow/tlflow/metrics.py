"""Scores of a predictions table: accuracy, per-class precision/recall/F1, log loss.

Everything is computed from the table (file, true class, predicted class, one
probability per class), so metrics, confusion matrix and figures agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .probabilities import probability_columns


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
    """Accuracy, per-class and macro precision/recall/F1, log loss; ROC AUC for two classes."""
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
