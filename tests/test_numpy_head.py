"""The frozen head by NumPy (tlflow.numpy_head) gives head.h5's probabilities and
logits, as Keras computes them, for every kind, pooling and class count, with and
without test-time views; and the evaluation then runs without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, write_split
from tlflow import evaluate, head, numpy_head, test_time
from tlflow.probabilities import logits, predict_proba

# (storage, stored row shape, pooling): every pooling of each storage.
POOLINGS = [
    ("pooled", (2, 8), "avg"),
    ("pooled", (2, 8), "max"),
    ("map", (3, 3, 8), "avg"),
    ("map", (3, 3, 8), "max"),
    ("map", (3, 3, 8), "flatten"),
    ("map", (8,), "avg"),  # a map that is a vector already (one position)
]
KINDS = {"linear": (), "mlp": (6, 5)}


def saved_head(path, shape, classes, how, storage, hidden=(), activation="relu", temperature=1.7):
    """A head as train_head saves it, with random weights (the same for every seed)."""
    model = head.assemble(
        shape, classes, how, hidden, activation, dropout=0.3, temperature=temperature, storage=storage
    )
    rng = np.random.default_rng(len(path.name))
    model.set_weights([rng.normal(0, 0.7, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(path)
    return path


def rows(shape, n=37, seed=0):
    return np.random.default_rng(seed).normal(1.0, 2.0, (n, *shape)).astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize(("storage", "shape", "how"), POOLINGS)
def test_numpy_gives_the_probabilities_and_logits_of_keras(tmp_path, kind, classes, storage, shape, how):
    import keras

    path = saved_head(tmp_path / "head.h5", shape, classes, how, storage, KINDS[kind])
    x, saved = rows(shape), keras.models.load_model(path, compile=False)
    found = numpy_head.NumpyHead.read(path)
    assert isinstance(numpy_head.load(path), numpy_head.NumpyHead)
    np.testing.assert_allclose(found.probabilities(x), predict_proba(saved, x), rtol=0, atol=1e-6)
    np.testing.assert_allclose(found.logits(x), logits(saved, x), rtol=1e-5, atol=1e-5)
    assert found.probabilities(x).shape == (len(x), classes)


@pytest.mark.parametrize("kind", KINDS)
def test_a_multi_label_head_with_a_temperature_per_label_computes_as_keras(tmp_path, kind):
    import keras

    model = head.assemble(
        (2, 8), 3, "max", KINDS[kind], temperature=[0.7, 1.0, 2.5], storage="pooled", multi_label=True
    )
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.7, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(tmp_path / "head.h5")
    x, found = rows((2, 8)), numpy_head.NumpyHead.read(tmp_path / "head.h5")
    expected = np.asarray(keras.models.load_model(tmp_path / "head.h5", compile=False).predict(x, verbose=0))
    np.testing.assert_allclose(found.probabilities(x), expected, rtol=0, atol=1e-6)  # one sigmoid per label
    assert found.probabilities(x).shape == (len(x), 3)


@pytest.mark.parametrize("activation", sorted(numpy_head.ACTIVATIONS))
def test_every_hidden_activation_computes_as_keras(tmp_path, activation):
    import keras

    path = saved_head(tmp_path / "head.h5", (2, 8), 3, "avg", "pooled", (6,), activation)
    x = rows((2, 8))
    np.testing.assert_allclose(
        numpy_head.NumpyHead.read(path).probabilities(x),
        predict_proba(keras.models.load_model(path, compile=False), x),
        rtol=0,
        atol=1e-6,
    )


def test_a_head_numpy_does_not_compute_is_run_by_keras(tmp_path):
    path = saved_head(tmp_path / "head.h5", (2, 8), 2, "avg", "pooled", (6,), "hard_silu")
    with pytest.raises(numpy_head.Unsupported, match="hard_silu"):
        numpy_head.NumpyHead.read(path)
    assert isinstance(numpy_head.load(path), numpy_head.KerasHead)


def _with_views(folder, originals, labels, n_views):
    """A split as the joins leave it and its test-time views, stored view by view and
    in reverse: (manifest, shards, labels.npy, views (shards, manifest), each view's
    rows in the split's order)."""
    manifest, shards, labels_npy = write_split(folder, "test", originals, labels)
    files = list(pd.read_csv(manifest)["file"])
    stored = rows(originals.shape[1:], len(files) * n_views, seed=1)
    np.save(folder / "views.npy", stored)
    order = [(file, f"v{v}") for v in range(n_views) for file in files[::-1]]
    table = pd.DataFrame(order, columns=["file", "view"]).assign(
        shard=str(folder / "views.npy"), row=range(len(order))
    )
    table.to_csv(folder / "views.csv", index=False)
    by_view = [stored[[order.index((file, f"v{v}")) for file in files]] for v in range(n_views)]
    return manifest, shards, labels_npy, ([folder / "views.npy"], folder / "views.csv"), by_view


@pytest.mark.parametrize("views", [0, 2])
@pytest.mark.parametrize("classes", [2, 3])
def test_the_evaluation_by_numpy_equals_keras_with_and_without_test_time_views(tmp_path, classes, views):
    import keras

    shape, names = (3, 3, 8), ["a", "b", "c"][:classes]
    path = saved_head(tmp_path / "head.h5", shape, classes, "max", "map", (6,))
    originals = rows(shape, 21)
    manifest, shards, labels_npy, view_files, by_view = _with_views(
        tmp_path, originals, np.arange(21) % classes, views
    )
    table, raw = evaluate.predict_split(shards, labels_npy, manifest, path, names)
    sets = [raw]
    if views:
        table, sets, _ = test_time.average(table, raw, numpy_head.load(path), view_files, manifest, names)
    # head.h5 by Keras: each image's probabilities averaged over it and its views.
    saved = keras.models.load_model(path, compile=False)
    expected = np.mean([predict_proba(saved, x) for x in (originals, *by_view)], axis=0)
    np.testing.assert_allclose(table[[f"prob_{c}" for c in names]], expected, atol=1e-6, rtol=0)
    assert len(sets) == 1 + views
    for found, x in zip(sets, (originals, *by_view), strict=True):
        np.testing.assert_allclose(found, logits(saved, x), rtol=1e-5, atol=1e-5)


def test_the_evaluation_job_imports_no_tensorflow(tmp_path):
    shape = (2, 8)
    path = saved_head(tmp_path / "head.h5", shape, 3, "avg", "pooled", (6,))
    manifest, shards, labels_npy = write_split(tmp_path, "test", rows(shape, 12), np.arange(12) % 3)
    backbone = {"id": "b", "image_size": [8, 8], "precision": "float32", "preprocessing": "none"}
    meta = {"classes": ["a", "b", "c"], "backbone": backbone, "head": {"temperature": 1.7}}
    (tmp_path / "head.json").write_text(json.dumps(meta))
    outputs = [str(tmp_path / n) for n in ("p.csv", "m.json", "c.csv", "r.csv")]
    script = (
        "import sys; from tlflow import evaluate; "
        f"evaluate.evaluate({[str(s) for s in shards]!r}, {str(labels_npy)!r}, {str(manifest)!r}, "
        f"{str(path)!r}, {str(tmp_path / 'head.json')!r}, 'test', *{outputs!r}); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(outputs[0])
    assert len(table) == 12 and np.allclose(table[["prob_a", "prob_b", "prob_c"]].sum(axis=1), 1)


def test_a_damaged_head_is_named_with_the_fix(tmp_path):
    from tlflow.readers import DamagedFileError

    path = saved_head(tmp_path / "head.h5", (2, 8), 2, "avg", "pooled")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DamagedFileError, match=r"head\.h5.*Delete it"):
        numpy_head.load(path)
