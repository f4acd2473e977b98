"""Run every export on the evaluation images against ``model.keras``: ``check.json``.

Per export: the largest absolute difference in probability, the share of images
whose predicted class agrees, its size, and its CPU latency per image at batch 1
and 32. A float32 export further than TOLERANCE from the reference fails the
check; the int8 LiteRT model reports its change of accuracy and log loss instead.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np

from . import export
from .atomic import atomic_path
from .metadata import Meta, model_meta_path
from .onnx_model import OnnxModel

log = logging.getLogger(__name__)

TOLERANCE = 1e-4
BATCH = 32


class ExportMismatchError(RuntimeError):
    """A float32 export does not compute what ``model.keras`` computes."""


class LiteRtModel:
    """A ``.tflite`` file on the LiteRT interpreter (batch size set per call)."""

    def __init__(self, path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(str(path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.shape = None

    def __call__(self, images) -> np.ndarray:
        batch = np.asarray(images, dtype=np.float32)
        if batch.shape != self.shape:
            self.interpreter.resize_tensor_input(self.input, batch.shape)
            self.interpreter.allocate_tensors()
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input, batch)
        self.interpreter.invoke()
        return np.asarray(self.interpreter.get_tensor(self.output), dtype=np.float64)


class SavedModel:
    """A SavedModel folder's ``serve`` endpoint (what Keras's export writes)."""

    def __init__(self, path, threads: int = 1):
        import tensorflow as tf

        self.model = tf.saved_model.load(str(path))

    def __call__(self, images) -> np.ndarray:
        return np.asarray(self.model.serve(np.asarray(images, np.float32)), dtype=np.float64)


class KerasModel:
    def __init__(self, model):
        self.model = model

    def __call__(self, images) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(np.asarray(images, np.float32)), np.float64)


RUNTIMES = {"onnx": OnnxModel, "tflite": LiteRtModel, "saved_model": SavedModel}


def predict(model, images: np.ndarray) -> np.ndarray:
    return np.concatenate([model(images[i : i + BATCH]) for i in range(0, len(images), BATCH)])


def latency_ms(model, images: np.ndarray) -> dict:
    """Median milliseconds per image at batch 1 (20 images) and batch 32 (3 batches),
    after a first call of each shape (which allocates)."""
    batch = np.resize(images, (BATCH, *images.shape[1:]))  # repeats a smaller split
    result = {}
    for name, inputs, repeats in (("batch_1", images[:1], 20), ("batch_32", batch, 3)):
        model(inputs)
        times = []
        for i in range(repeats):
            one = images[i % len(images)][None] if len(inputs) == 1 else inputs
            started = time.perf_counter()
            model(one)
            times.append(time.perf_counter() - started)
        result[name] = 1000 * statistics.median(times) / len(inputs)
    return result


def compare(proba: np.ndarray, reference: np.ndarray, thresholds=None) -> dict:
    """The largest difference and the share of images decided alike: the same class,
    or with multi-label ``thresholds`` the same labels."""
    if thresholds is None:
        same = proba.argmax(1) == reference.argmax(1)
    else:
        same = ((proba >= thresholds) == (reference >= thresholds)).all(axis=1)
    return {"max_abs_diff": float(np.abs(proba - reference).max()), "agreement": float(np.mean(same))}


def scores(proba: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.metrics import log_loss

    return {
        "accuracy": float(np.mean(proba.argmax(1) == labels)),
        # float32 outputs sum to 1 within rounding only; scikit-learn warns of that
        "log_loss": float(
            log_loss(labels, proba / proba.sum(1, keepdims=True), labels=range(proba.shape[1]))
        ),
    }


def check(
    model_path,
    out_dir,
    formats,
    images: np.ndarray,
    labels: np.ndarray,
    out_json,
    threads: int = 1,
    int8: bool = False,
    seconds=None,
    loaded=None,
) -> dict:
    """Write ``check.json`` for the exports in ``out_dir``; raise ExportMismatchError
    (with every figure) if a float32 export is further than TOLERANCE. ``seconds``:
    how long each export took, recorded beside; ``loaded``: ``model_path`` loaded
    already (readers.load_model)."""
    from .readers import load_model
    from .runtime import configure_threads

    configure_threads(threads)
    keras_model = load_model(model_path) if loaded is None else loaded
    saved = KerasModel(keras_model)
    as_saved = predict(saved, images)
    result = {
        "reference": "model.keras",
        "images": len(images),
        "tolerance": TOLERANCE,
        "export_seconds": seconds or {},
        "keras": {"size_bytes": export.size_bytes(model_path), "latency_ms": latency_ms(saved, images)},
    }
    reference = as_saved
    meta = Meta.read(model_meta_path(model_path))
    thresholds = meta.head["thresholds"] if meta.multi_label else None
    if meta.backbone.precision != "float32":
        # The exports compute in float32; so is the reference their figures are
        # against. How far that is from the model as saved is the precision's doing.
        float32 = KerasModel(export.exportable(keras_model, images.shape[1:3]))
        reference = predict(float32, images)
        result["reference"] = "model.keras computed in float32"
        result["float32_vs_saved_precision"] = compare(reference, as_saved, thresholds)
    result["exports"] = {}
    failed = []
    targets = [(fmt, export.FORMATS[fmt][0], RUNTIMES[fmt]) for fmt in formats]
    if int8:
        targets.append(("tflite_int8", export.INT8, LiteRtModel))
    for name, file, runtime in targets:
        path = Path(out_dir, file)
        model = runtime(path, threads)
        proba = predict(model, images)
        figures = {
            "file": file,
            "size_bytes": export.size_bytes(path),
            **compare(proba, reference, thresholds),
            "latency_ms": latency_ms(model, images),
        }
        if name != "tflite_int8":
            figures["passed"] = figures["max_abs_diff"] <= TOLERANCE
            failed += [] if figures["passed"] else [name]
        elif thresholds is None:  # of multi-label data, the labels' agreement is the figure
            mine, theirs = scores(proba, labels), scores(as_saved, labels)
            figures.update({f"{key}_change": mine[key] - theirs[key] for key in mine})
        result["exports"][name] = figures
        log.info("%s: %s", name, figures)
    if failed:
        raise ExportMismatchError(
            f"{', '.join(failed)} differ from {model_path} by more than {TOLERANCE} in "
            f"probability on the evaluation images: {json.dumps(result['exports'], indent=1)}. "
            "Leave the format out of 'export: formats:' meanwhile; the other exports and "
            "model.keras are unaffected."
        )
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def manifest_images(manifest_csv, data_dir, size, count: int | None = None):
    """(uint8 images, labels) of a kept-image manifest, decoded as the features were;
    with ``count``, that many spread evenly over it (its rows go class by class)."""
    from .images import decode_all
    from .manifest import read_manifest

    rows = read_manifest(manifest_csv)
    if count is not None:
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, min(count, len(rows)), dtype=int)]
    array, _, failed = decode_all([Path(data_dir, row["file"]) for row in rows], tuple(size))
    if failed:
        names = [rows[i]["file"] for i, _ in failed[:5]]
        raise ValueError(
            f"{len(failed)} image(s) of {manifest_csv} no longer decode ({', '.join(names)}, "
            f"first error: {failed[0][1]}): they changed after the features were made. "
            "Rerun snakemake so that the manifests are made again."
        )
    return array, np.array([row["label"] for row in rows])
