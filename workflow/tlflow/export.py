"""``model.keras`` -> ONNX, LiteRT (TFLite) and SavedModel files that compute the same.

Each export takes raw RGB pixels (0-255) at the model's image size, batch size
free, and gives one probability per class: preprocessing, backbone, pooling,
head, temperature and test-time views are inside, as in ``model.keras``. Its
resize layer is dropped: at the model's own size it leaves the pixels as they
are, and the converters have no antialiased resize. Exports compute in float32:
a model saved in ``mixed_bfloat16`` keeps its float32 weights and computes them
in float32 (ONNX Runtime and LiteRT have no bfloat16 convolutions on CPUs).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .metadata import Meta, model_meta_path

log = logging.getLogger(__name__)

# Format name (config 'export: formats:') -> (file name in export/, keras format).
FORMATS = {
    "onnx": ("model.onnx", "onnx"),
    "tflite": ("model.tflite", "litert"),
    "saved_model": ("saved_model", "tf_saved_model"),
}
INT8 = "model_int8.tflite"


def float32_config(config):
    """A Keras config with every dtype policy float32 (variables are float32 already)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [float32_config(value) for value in config]
    return config


def exportable(model, image_size):
    """``model`` computing in float32 on (n, height, width, 3) pixels, without its resize."""
    import keras

    config = model.get_config()
    if float32_config(config) != config:  # rebuilt only when some layer computes in another dtype
        float32 = keras.Model.from_config(float32_config(config))
        float32.set_weights(model.get_weights())
        model = float32

    def without_resize(layer):  # the other layers are reused, weights and all
        return keras.layers.Identity(name=layer.name) if layer.name == "resize" else layer

    fixed = keras.models.clone_model(
        model,
        input_tensors=keras.Input((*image_size, 3), name="image"),
        clone_function=without_resize,
    )
    fixed.predict_on_batch(np.zeros((1, *image_size, 3), np.float32))  # Keras exports called models only
    return fixed


def size_bytes(path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def write(model, fmt: str, path) -> None:
    """Export ``model`` as ``fmt``, so that a killed job leaves no complete-looking file."""
    path = Path(path)
    keras_format = FORMATS[fmt][1]
    if keras_format == "tf_saved_model":  # a folder: built beside, then renamed
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
        try:
            model.export(str(tmp / "model"), format=keras_format, verbose=False)
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp / "model", path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    with atomic_path(path) as tmp:
        model.export(str(tmp), format=keras_format, verbose=False)


def write_int8(model, calibration: np.ndarray, path) -> None:
    """Post-training integer quantisation calibrated on ``calibration`` images; input
    and output stay float32, so it is a drop-in for ``model.tflite``."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder, "saved_model")
        model.export(str(saved), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration)
        flat = converter.convert()
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(flat)


def export_model(model_path, out_dir, formats, calibration=None, loaded=None) -> dict:
    """Write each of ``formats`` into ``out_dir`` (and the int8 LiteRT model when
    ``calibration`` images are given); return {format: seconds it took}. ``loaded``:
    ``model_path`` loaded already (readers.load_model), so it is not loaded twice."""
    import time

    from .readers import load_model

    meta = Meta.read(model_meta_path(model_path))
    model = exportable(load_model(model_path) if loaded is None else loaded, meta.backbone.image_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for fmt in formats:
        started = time.perf_counter()
        write(model, fmt, out_dir / FORMATS[fmt][0])
        seconds[fmt] = time.perf_counter() - started
        log.info("%s written in %.1f s", FORMATS[fmt][0], seconds[fmt])
    if calibration is not None:
        started = time.perf_counter()
        write_int8(model, calibration, out_dir / INT8)
        seconds["tflite_int8"] = time.perf_counter() - started
    meta.write(out_dir / "model.json")  # the class names travel with the exports
    return seconds
