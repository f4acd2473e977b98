"""Precision and threads of the extraction: what they must really do (not how fast)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tlflow import backbones, features
from tlflow.backbones import build, resolve
from tlflow.synthetic import make_dataset


def _saved_model(path):
    """A tiny saved .keras model with built-in preprocessing, conv and dense layers."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 128, offset=-1)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3)(x)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(5)(x)
    keras.Model(inputs, outputs).save(path)
    return path


def test_bfloat16_clone_of_a_saved_model_computes_in_bfloat16(tmp_path):
    import keras

    path = _saved_model(tmp_path / "tiny.keras")
    spec = resolve({"name": str(path), "preprocessing": "none"}, [16, 16], "bfloat16")
    model, original = build(spec), keras.models.load_model(path, compile=False)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert {layer.compute_dtype for layer in layers} == {"bfloat16"}
    assert {layer.variable_dtype for layer in layers} == {"float32"}  # weights kept exact
    for a, b in zip(model.get_weights(), original.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    low, high = model.predict_on_batch(x), original.predict_on_batch(x)
    assert str(low.dtype) == "bfloat16" and high.dtype == np.float32
    np.testing.assert_allclose(np.asarray(low, np.float32), high, rtol=0.05, atol=0.05)
    assert not np.array_equal(np.asarray(low, np.float32), high)  # really rounded


def test_build_applies_precision_and_restores_the_global_policy():
    import keras

    before = keras.config.dtype_policy().name
    model = build(resolve({"name": "vgg16", "weights": "none"}, [32, 32], "bfloat16"))
    assert model.layers[-1].compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == before  # a later head is not bf16
    model = build(resolve({"name": "vgg16", "weights": "none"}, [32, 32], "float32"))
    assert model.layers[-1].compute_dtype == "float32"
    assert set(backbones.PRECISIONS) == {"float32", "bfloat16"}


def test_bfloat16_features_are_float32_rows_close_to_float32_ones(tmp_path):
    make_dataset(tmp_path / "data", {"train": 3}, classes=2)
    paths = sorted((tmp_path / "data/train").glob("*/*.jpg"))  # 3 + 4 = 7: last batch padded
    rows = {}
    for precision in ("float32", "bfloat16"):
        spec = resolve({"name": "vgg16", "weights": "none"}, [32, 32], precision)
        batches = list(features.compute(paths, spec, batch_size=4, threads=2))
        assert [good for good, _, _ in batches] == [[0, 1, 2, 3], [4, 5, 6]]
        assert all(not failed for _, _, failed in batches)
        rows[precision] = np.concatenate([out for _, out, _ in batches])
        assert rows[precision].dtype == np.float32 and len(rows[precision]) == 7
    scale = np.abs(rows["float32"]).max()
    np.testing.assert_allclose(rows["bfloat16"], rows["float32"], atol=0.05 * scale)


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    """``code`` run by a new Python that imports this checkout's tlflow."""
    env = {**os.environ, "PYTHONPATH": str(Path(features.__file__).parents[1])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)


def test_configure_threads_after_tensorflow_started_warns_instead_of_failing():
    code = (
        "import logging, tensorflow as tf; logging.basicConfig();"
        "from tlflow.runtime import configure_threads;"
        "configure_threads(2); tf.constant(1.0) + 1;"
        "configure_threads(2); configure_threads(3);"
        "print(tf.config.threading.get_intra_op_parallelism_threads())"
    )
    result = _fresh_python(code)
    assert result.stdout.strip().splitlines()[-1] == "2"
    assert "threads stay as they are" in result.stderr


def test_configure_threads_limits_blas_to_the_granted_threads():
    """Not one BLAS thread per core of the node: the job's own threads."""
    code = (
        "import numpy, sklearn; from threadpoolctl import threadpool_info;"
        "from tlflow.runtime import configure_threads; configure_threads(1);"
        "print(sorted({p['num_threads'] for p in threadpool_info()}))"
    )
    assert _fresh_python(code).stdout.strip().splitlines()[-1] == "[1]"
