"""How good a trained head is on one split: predictions, then metrics.

Predictions are made once (by NumPy from head.h5, tlflow.numpy_head: the job does
not import TensorFlow) and written as a table;
metrics and the confusion matrix are computed from that table (tlflow.metrics), and
the figures are drawn from it later (tlflow.plots), so all of them agree.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from . import calibration, multilabel, multilabel_metrics, numpy_head, split_rows, test_time
from .atomic import atomic_path
from .metadata import Meta, model_meta_path
from .metrics import confusion_table, metrics, predictions_table
from .probabilities import logits, probability_columns
from .readers import load_array, load_model, read_table
from .runtime import configure_threads

log = logging.getLogger(__name__)


def predict_split(
    shards, labels_npy, manifest_csv, head_model, classes, separator: str | None = None, threads: int = 1
):
    """Run the head on a split's cached features (in its ``shards`` files): (predictions
    table, logits).

    Rows stay in the manifest's order; the logits are those before calibration.
    With ``separator`` (multi-label data), the labels are a 0/1 matrix and the table
    is left to the caller, which knows the thresholds: (None, logits).
    """
    expected = (
        None
        if separator is None
        else (
            lambda table: multilabel_metrics.matrix(
                table["class"].fillna(""), classes, separator, str(manifest_csv)
            )
        )
    )
    features, labels, manifest = split_rows.joined_split(shards, labels_npy, manifest_csv, expected)
    head = numpy_head.load(head_model, threads)
    proba = head.probabilities(features)  # read block by block
    if proba.shape[1] != len(classes):
        raise ValueError(
            f"head {head_model} gives {proba.shape[1]} probabilities but the classes are "
            f"{classes}; the head is out of date: delete it and rerun the workflow."
        )
    if separator is not None:
        return None, head.logits(features)
    return predictions_table(manifest["file"], labels, proba, classes), head.logits(features)


def evaluate(
    shards,
    labels_npy,
    manifest_csv,
    head_model,
    head_meta,
    split: str,
    out_predictions,
    out_metrics,
    out_confusion,
    out_reliability,
    threads: int = 1,
    views=None,
) -> dict:
    """Predict a split with the head; write predictions, metrics, confusion and reliability.

    With ``views`` (shard files, manifest.csv of the split's test-time views), each
    image's probabilities are the mean over it and its views, as in ``model.keras``.
    """
    meta = Meta.read(head_meta)
    classes = meta.classes
    if meta.multi_label:
        if views is not None:
            raise ValueError(
                "test-time views are not made for multi-label data yet: remove "
                "'augmentation: test_time:' from the config"
            )
        return score_multi_label(
            shards,
            labels_npy,
            manifest_csv,
            head_model,
            meta,
            split,
            out_predictions,
            out_metrics,
            out_confusion,
            out_reliability,
        )
    table, raw = predict_split(shards, labels_npy, manifest_csv, head_model, classes, threads=threads)
    labels = load_array(labels_npy, mmap=False)
    sets, names = [raw], []  # logits of the originals, then of each test-time view
    if views is not None:
        head = numpy_head.load(head_model, threads)
        table, sets, names = test_time.average(table, raw, head, views, manifest_csv, classes)
    return score(
        table,
        sets,
        names,
        labels,
        meta.head["temperature"],
        split,
        classes,
        out_predictions,
        out_metrics,
        out_confusion,
        out_reliability,
    )


def evaluate_fine_tuned(
    model_path,
    manifest_csv,
    data_dir,
    split: str,
    out_predictions,
    out_metrics,
    out_confusion,
    out_reliability,
    batch_size: int = 32,
    threads: int = 1,
) -> dict:
    """Predict a split's images (its kept-image manifest) with a whole ``model.keras``.

    For a model trained on pixels (fine-tuning), where cached features no longer apply.
    The model's layer ``logits`` gives the log loss and ECE before its temperature.
    """
    configure_threads(threads)
    from .image_batches import ImageBatches

    meta = Meta.read(model_meta_path(model_path))
    batches = ImageBatches.from_manifest(
        manifest_csv, data_dir, meta.backbone.image_size, batch_size, workers=threads
    )
    raw = logits(load_model(model_path), batches)
    # From the logits in float64, as the model's own output but summing to 1 exactly.
    proba = calibration.probabilities(raw, meta.head["temperature"])
    labels = batches.labels
    table = predictions_table(batches.files, labels, proba, meta.classes)
    return score(
        table,
        [raw],
        [],
        labels,
        meta.head["temperature"],
        split,
        meta.classes,
        out_predictions,
        out_metrics,
        out_confusion,
        out_reliability,
    )


def score(
    table,
    sets,
    names,
    labels,
    temperature: float,
    split: str,
    classes,
    out_predictions,
    out_metrics,
    out_confusion,
    out_reliability,
) -> dict:
    """Metrics of a predictions table and its logits; write the four evaluation files.

    ``sets``: logits of the originals, then of each test-time view in ``names``.
    """
    calibrated = table[probability_columns(classes)].to_numpy(dtype=np.float64)
    uncalibrated = test_time.probabilities(sets)
    result = {
        "split": split,
        "classes": classes,
        **metrics(table, classes),
        # Exact, from the logits: probabilities rounded to 1.0 would clip the loss of
        # a sure mistake (scikit-learn's log_loss on the table reads 0.76 for 0.89).
        "log_loss": test_time.log_loss(sets, labels, temperature),
        "ece": calibration.expected_calibration_error(calibrated, labels),
        "calibration": {
            "temperature": temperature,
            "log_loss_before": test_time.log_loss(sets, labels),
            "log_loss_after": test_time.log_loss(sets, labels, temperature),
            "ece_before": calibration.expected_calibration_error(uncalibrated, labels),
            "ece_after": calibration.expected_calibration_error(calibrated, labels),
        },
    }
    if names:  # averaged over the originals and these views
        result["test_time_views"] = names
    bins = pd.concat(
        pd.DataFrame(calibration.reliability(proba, labels)).assign(probabilities=name)
        for name, proba in (("before calibration", uncalibrated), ("after calibration", calibrated))
    )
    with atomic_path(out_predictions) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out_metrics) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    with atomic_path(out_confusion) as tmp:
        confusion_table(table, classes).to_csv(tmp)
    with atomic_path(out_reliability) as tmp:
        bins[["probabilities", *bins.columns[:-1]]].to_csv(tmp, index=False)
    log.info("%s: accuracy %.4f on %d images", split, result["accuracy"], len(table))
    return result


def score_multi_label(
    shards,
    labels_npy,
    manifest_csv,
    head_model,
    meta: Meta,
    split: str,
    out_predictions,
    out_metrics,
    out_confusion,
    out_reliability,
) -> dict:
    """evaluate's files for multi-label data: each label's temperature and threshold
    from ``meta`` (the head's), per-label counts in place of the confusion matrix."""
    classes, separator = meta.classes, meta.multi_label["separator"]
    temperatures, thresholds = meta.head["temperature"], meta.head["thresholds"]
    _, raw = predict_split(shards, labels_npy, manifest_csv, head_model, classes, separator)
    labels = load_array(labels_npy, mmap=False)
    # From the logits in float64, as the head's own output.
    before, after = multilabel.probabilities(raw), multilabel.probabilities(raw, temperatures)
    files = read_table(manifest_csv)["file"]
    table = multilabel_metrics.predictions_table(files, labels, after, classes, thresholds, separator)
    result = {
        "split": split,
        "classes": classes,
        "multi_label": True,
        **multilabel_metrics.metrics(labels, after, classes, thresholds),
        "log_loss": multilabel.log_loss(raw, labels, temperatures),
        "calibration": {
            "temperatures": temperatures,
            "log_loss_before": multilabel.log_loss(raw, labels),
            "log_loss_after": multilabel.log_loss(raw, labels, temperatures),
            "ece_before": float(np.mean(multilabel.expected_calibration_errors(labels, before))),
            "ece_after": float(np.mean(multilabel.expected_calibration_errors(labels, after))),
        },
    }
    bins = multilabel_metrics.reliability(
        labels, (("before calibration", before), ("after calibration", after))
    )
    with atomic_path(out_predictions) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out_metrics) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    with atomic_path(out_confusion) as tmp:
        multilabel_metrics.label_counts(labels, after, classes, thresholds).to_csv(tmp)
    with atomic_path(out_reliability) as tmp:
        bins[["probabilities", *bins.columns[:-1]]].to_csv(tmp, index=False)
    log.info(
        "%s: mean average precision %.4f, macro F1 %.4f on %d images",
        split,
        result["mean_average_precision"],
        result["macro_f1"],
        len(table),
    )
    return result
