"""How good a trained head is on one split, and where it fails.

Predictions are made once (the only step that needs Keras) and written as a table;
metrics, the confusion matrix and the figures are all computed from that table, so
they agree with each other and can be redrawn without TensorFlow.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path

log = logging.getLogger(__name__)


def probability_columns(classes) -> list[str]:
    return [f"prob_{cls}" for cls in classes]


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


def predict_split(features_npy, labels_npy, manifest_csv, head_model, classes) -> pd.DataFrame:
    """Run the head on a split's cached features; rows stay in the manifest's order."""
    import keras

    from . import head

    features = np.load(features_npy, mmap_mode="r")
    labels = np.load(labels_npy)
    manifest = pd.read_csv(manifest_csv, dtype={"file": str, "class": str})
    if not len(features) == len(labels) == len(manifest):
        raise ValueError(
            f"{features_npy} has {len(features)} rows, {labels_npy} {len(labels)} and "
            f"{manifest_csv} {len(manifest)}: they were not written together. Delete "
            "them and rerun the workflow to rebuild the split."
        )
    if not np.array_equal(labels, manifest["label"].to_numpy()):
        raise ValueError(
            f"labels in {labels_npy} differ from those in {manifest_csv}; delete both "
            "and rerun the workflow to rebuild the split."
        )
    model = keras.models.load_model(head_model, compile=False)
    proba = head.predict_proba(model, features)
    if proba.shape[1] != len(classes):
        raise ValueError(
            f"head {head_model} gives {proba.shape[1]} probabilities but the classes are "
            f"{classes}; the head is out of date: delete it and rerun the workflow."
        )
    return predictions_table(manifest["file"], labels, proba, classes)


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


def evaluate(
    features_npy, labels_npy, manifest_csv, head_model, head_meta,
    split: str, out_predictions, out_metrics, out_confusion, threads: int = 1,
) -> dict:  # fmt: skip
    """Predict a split with the head and write predictions, metrics and the confusion matrix."""
    from .features import configure_threads

    configure_threads(threads)
    classes = json.loads(Path(head_meta).read_text())["classes"]
    table = predict_split(features_npy, labels_npy, manifest_csv, head_model, classes)
    result = {"split": split, "classes": classes, **metrics(table, classes)}
    with atomic_path(out_predictions) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out_metrics) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    with atomic_path(out_confusion) as tmp:
        confusion_table(table, classes).to_csv(tmp)
    log.info("%s: accuracy %.4f on %d images", split, result["accuracy"], len(table))
    return result


def plot_confusion(confusion_csv, out_png, title: str) -> None:
    """The confusion matrix as a heat map, each cell labelled with its count."""
    from .plots import plt, save

    counts = pd.read_csv(confusion_csv, index_col=0)
    n = len(counts)
    side = max(4.0, 1.0 + 0.6 * n)
    figure, axes = plt.subplots(figsize=(side + 1, side), dpi=100)
    image = axes.imshow(counts.to_numpy(), cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(n), counts.columns, rotation=45, ha="right")
    axes.set_yticks(range(n), counts.index)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    threshold = counts.to_numpy().max() / 2
    for (row, col), value in np.ndenumerate(counts.to_numpy()):
        colour = "white" if value > threshold else "black"
        axes.text(col, row, str(value), ha="center", va="center", color=colour)
    figure.tight_layout()
    save(figure, out_png)


def confident_mistakes(table: pd.DataFrame, classes, most: int) -> pd.DataFrame:
    """Wrong predictions, the most confident first (likely mislabelled or hard images)."""
    wrong = table[table["true_class"] != table["predicted_class"]].copy()
    proba = wrong[probability_columns(classes)].to_numpy()
    wrong["confidence"] = proba.max(axis=1)
    return wrong.sort_values(["confidence", "file"], ascending=[False, True]).head(most)


def plot_mistakes(predictions_csv, data_dir, out_png, title: str, most: int = 16) -> int:
    """Grid of the most confident mistakes, each captioned; returns how many are shown."""
    from .plots import image_grid

    table = pd.read_csv(predictions_csv, dtype={"file": str})
    classes = [c.removeprefix("prob_") for c in table.columns if c.startswith("prob_")]
    shown = confident_mistakes(table, classes, most)
    cells = [
        (
            row.file,
            f"{Path(row.file).name}\ntrue: {row.true_class}\n"
            f"predicted: {row.predicted_class} ({row.confidence:.3f})",
        )
        for row in shown.itertuples()
    ]
    image_grid(cells, data_dir, out_png, title, empty=f"no mistakes\n({len(table)} images)")
    return len(shown)


def summary_html(head_meta, manifests: dict, skipped: dict, metrics_json, out_html) -> None:
    """One page for the report: what was run on which images, and the metrics it reached.

    ``manifests`` and ``skipped`` map each split to its joined manifest and skipped list.
    """
    meta = json.loads(Path(head_meta).read_text())
    result = json.loads(Path(metrics_json).read_text())
    spec = meta["backbone"]
    source = spec.get("model") or f"keras.applications {spec['application']}"
    weights = "in the model file" if "model" in spec else spec["weights"]
    setup = {
        "backbone": f"{spec['id']} ({source})",
        "weights": weights,
        "preprocessing": spec["preprocessing"],
        "image size (height x width)": " x ".join(map(str, spec["image_size"])),
        "precision": spec["precision"],
        "feature shape": " x ".join(map(str, meta.get("feature_shape", []))),
        "classes": ", ".join(meta["classes"]),
    }
    sizes = pd.DataFrame(
        {
            split: {
                **pd.read_csv(manifests[split], dtype=str)["class"].value_counts().to_dict(),
                "skipped (unreadable)": len(pd.read_csv(skipped[split], dtype=str)),
            }
            for split in manifests
        }
    ).T
    sizes = sizes.reindex(columns=[*meta["classes"], "skipped (unreadable)"]).fillna(0)
    sizes = sizes.astype(int)
    sizes.insert(len(meta["classes"]), "images used", sizes[meta["classes"]].sum(axis=1))
    per_class = pd.DataFrame(result["per_class"]).T
    per_class.loc["macro average"] = {**result["macro"], "support": result["images"]}
    per_class["support"] = per_class["support"].astype(int)
    overall = {
        "accuracy": result["accuracy"],
        "log loss": result["log_loss"],
        **({"ROC AUC": result["roc_auc"]} if "roc_auc" in result else {}),
    }
    parts = [
        f"<h2>Run of {html.escape(spec['id'])}</h2>",
        _key_values(setup),
        "<h3>Images per split</h3>",
        sizes.to_html(),
        f"<h3>Metrics on the {html.escape(result['split'])} split "
        f"({result['images']} images)</h3>",
        _key_values({k: "n/a" if v is None else f"{v:.4f}" for k, v in overall.items()}),
        per_class.to_html(float_format="{:.4f}".format),
    ]
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><style>"
        "body{font-family:sans-serif} table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    with atomic_path(out_html) as tmp:
        tmp.write_text(page)


def _key_values(pairs: dict) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in pairs.items()
    )
    return f"<table>{rows}</table>"
