"""Heads: each kind and pooling, selection on validation, early stopping, calibration."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_split

from tlflow import blas, calibration, comparison, head, pooling, selection
from tlflow.metadata import Meta
from tlflow.probabilities import logits, predict_proba

SCHEMA = yaml.safe_load(open("workflow/schemas/config.schema.yaml"))
DEFAULTS = {
    k: v["default"]
    for k, v in SCHEMA["properties"]["head"]["properties"].items()
    if k not in ("threads", "gpus")
}
TUTORIAL = {**DEFAULTS, **yaml.safe_load(open("config/tutorial.yaml"))["head"]}


def _data(n_classes, rows=40, seed=0, shape=(2, 2, 8)):
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % n_classes
    features = rng.normal(size=(rows, *shape)).astype(np.float32)
    features[:, 0, 0, :n_classes] += 2.0 * np.eye(n_classes)[labels]  # one corner carries the class
    return features, labels


def _stored(data, storage):
    """``_data``'s maps as extraction stores them for ``storage``."""
    maps, labels = data
    return (pooling.summarise(maps) if storage == "pooled" else maps), labels


def _fit(tmp_path, settings, n_classes=2, rows=40, storage="map"):
    """Fit on ``_data``'s maps stored as ``storage``; (outputs, train, validation) as stored."""
    train = _stored(_data(n_classes, rows), storage)
    validation = _stored(_data(n_classes, rows // 2, seed=1), storage)
    paths = {
        split: write_split(tmp_path, split, x, y)
        for split, (x, y) in (("train", train), ("validation", validation))
    }
    outputs = SimpleNamespace(
        **{name: tmp_path / name for name in ("head.h5", "history.csv", "candidates.csv", "head.json")}
    )
    outputs.model, outputs.history = outputs.__dict__.pop("head.h5"), outputs.__dict__.pop("history.csv")
    outputs.candidates, outputs.meta = (
        outputs.__dict__.pop("candidates.csv"),
        outputs.__dict__.pop("head.json"),
    )
    spec = {
        "id": "b",
        "image_size": [8, 8],
        "precision": "float32",
        "preprocessing": "none",
        "features": storage,
    }
    meta = {"classes": [f"c{i}" for i in range(n_classes)], "backbone": spec}
    head.train_head(paths, settings, meta, threads=1, outputs=outputs)
    return outputs, train, validation


SHAPES = pytest.mark.parametrize("shape", [(3, 2, 5), (6, 5), (5,)], ids=["map", "sequence", "vector"])


@pytest.mark.parametrize("how", pooling.POOLINGS)
@SHAPES
def test_numpy_pooling_equals_the_keras_layer(how, shape):
    import keras

    x = np.random.default_rng(0).normal(size=(7, *shape)).astype(np.float32)
    model = keras.Sequential([keras.Input(shape), *pooling.layers(how, shape, "map")])
    np.testing.assert_allclose(pooling.pool(x, how, "map"), model.predict(x, verbose=0), rtol=1e-6)
    assert pooling.pool(x, how, "map").shape == (7, int(np.prod(shape)) if how == "flatten" else 5)


@pytest.mark.parametrize("how", ["avg", "max"])
@SHAPES
def test_pooled_rows_give_the_vectors_of_pooling_the_map(how, shape):
    """Stored pooled, a row is (average, maximum): the head's layers and numpy pick
    from it the vector that pooling the whole map gives."""
    import keras

    x = np.random.default_rng(0).normal(size=(7, *shape)).astype(np.float32)
    rows = pooling.summarise(x)
    assert rows.shape == (7, 2, 5) and rows.dtype == np.float32
    expected = pooling.pool(x, how, "map")
    np.testing.assert_allclose(pooling.pool(rows, how, "pooled"), expected, rtol=1e-6)
    model = keras.Sequential([keras.Input((2, 5)), *pooling.layers(how, (2, 5), "pooled")])
    np.testing.assert_array_equal(model.predict(rows, verbose=0), pooling.pool(rows, how, "pooled"))
    # What model.keras computes from the backbone's output: the rows extraction stores.
    inputs = keras.Input(shape)
    summary = keras.Model(inputs, pooling.summary(shape)(inputs))
    np.testing.assert_allclose(summary.predict(x, verbose=0), rows, rtol=1e-6, atol=1e-7)


def test_pooled_rows_hold_no_map_to_flatten():
    rows = pooling.summarise(np.ones((2, 3, 3, 4)))
    for attempt in (
        lambda: pooling.pool(rows, "flatten", "pooled"),
        lambda: pooling.layers("flatten", (2, 4), "pooled"),
    ):
        with pytest.raises(ValueError, match="stored pooled.*flatten.*features: map"):
            attempt()


def test_flatten_or_the_setting_stores_the_map():
    assert pooling.storage(["avg", "max"]) == "pooled"
    assert pooling.storage(["avg", "flatten"]) == "map" and pooling.storage(["max"], "map") == "map"
    assert pooling.stored({"id": "b"}) == "map"  # metadata written before pooled storage


def test_a_one_by_one_map_is_pooled_one_way_only():
    rng = np.random.default_rng(0)
    one, four, vector = (rng.normal(size=(3, *shape)) for shape in ((1, 1, 512), (4, 4, 512), (512,)))
    assert pooling.distinct_poolings(one, ["avg", "flatten", "max"], "map") == ["avg"]
    assert pooling.distinct_poolings(four, ["avg", "flatten", "avg"], "map") == ["avg", "flatten"]
    assert pooling.distinct_poolings(vector, ["max", "avg"], "map") == ["max"]
    # Pooled rows do not show the map: equal averages and maxima do.
    assert pooling.distinct_poolings(pooling.summarise(one), ["avg", "max"], "pooled", block=2) == ["avg"]
    assert pooling.distinct_poolings(pooling.summarise(vector), ["max", "avg"], "pooled") == ["max"]
    assert pooling.distinct_poolings(pooling.summarise(four), ["avg", "max"], "pooled") == ["avg", "max"]


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize(
    "how, storage", [("flatten", "map"), ("avg", "map"), ("max", "map"), ("avg", "pooled"), ("max", "pooled")]
)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_saved_head_gives_the_fitted_probabilities(tmp_path, kind, how, storage, n_classes):
    import keras

    settings = {
        **DEFAULTS,
        "search": False,
        "kind": kind,
        "pooling": how,
        "epochs": 3,
        "hidden_units": [8],
        "batch_size": 8,
    }
    outputs, _, (val_x, val_y) = _fit(tmp_path, settings, n_classes, storage=storage)
    meta = Meta.read(outputs.meta)
    assert meta.feature_shape == list(val_x.shape[1:]) and meta.backbone.storage == storage
    meta = meta.head
    saved = keras.models.load_model(outputs.model)
    assert meta["selected"]["kind"] == kind and meta["selected"]["pooling"] == how
    first = {"flatten": ["Flatten"], "avg": ["GlobalAveragePooling2D"], "max": ["GlobalMaxPooling2D"]}
    if storage == "pooled":
        first = {"avg": ["Cropping1D", "Flatten"], "max": ["Cropping1D", "Flatten"]}
    assert [layer.__class__.__name__ for layer in saved.layers[: len(first[how])]] == first[how]
    proba = predict_proba(saved, val_x)
    assert proba.shape == (len(val_x), n_classes)
    # The head's own probabilities are its logits through the recorded temperature.
    expected = calibration.probabilities(logits(saved, val_x), meta["temperature"])
    np.testing.assert_allclose(proba, expected, atol=1e-5)
    assert meta["validation"]["log_loss"] == pytest.approx(
        calibration.log_loss(logits(saved, val_x), val_y, meta["temperature"]), abs=1e-5
    )


def test_linear_head_equals_scikit_learns_probe(tmp_path):
    """The Keras head of the linear kind gives scikit-learn's own probabilities."""
    from sklearn.linear_model import LogisticRegression
    import keras

    settings = {
        **DEFAULTS,
        "search": False,
        "kind": "linear",
        "pooling": "avg",
        "l2": 0.01,
        "calibrate": False,
    }
    outputs, (x, y), (val_x, _) = _fit(tmp_path, settings, n_classes=3)
    pooled, val_pooled = pooling.pool(x, "avg", "map"), pooling.pool(val_x, "avg", "map")
    mean, std = pooled.mean(0), pooled.std(0)
    probe = LogisticRegression(C=1 / (0.01 * len(x)), max_iter=5000, tol=1e-8)
    probe.fit((pooled - mean) / std, y)
    saved = keras.models.load_model(outputs.model)
    np.testing.assert_allclose(
        predict_proba(saved, val_x), probe.predict_proba((val_pooled - mean) / std), atol=1e-4
    )


@pytest.mark.parametrize("one_thread_bytes, blas_threads", [(2**28, 1), (0, 2)])
def test_a_small_linear_fit_runs_on_one_blas_thread_with_the_same_result(
    monkeypatch, blas_threads_of_fits, one_thread_bytes, blas_threads
):
    """Below blas.ONE_THREAD_BYTES lbfgs runs on one BLAS thread, above on the job's; the
    fitted weights are the same bits either way."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 64)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    standard = head.standardise(x, owned=False)
    monkeypatch.setattr(blas, "ONE_THREAD_BYTES", one_thread_bytes)
    with threadpool_limits(2):  # the job's threads
        kernel, bias, train_logits = head.fit_linear(standard, y, 0.01, 0)
    assert blas_threads_of_fits == [{blas_threads}]
    for threads in (1, 2):
        with threadpool_limits(threads):
            again = head.fit_linear(standard, y, 0.01, 0)
        for mine, theirs in zip((kernel, bias, train_logits), again):
            np.testing.assert_array_equal(mine, theirs)


def test_pooled_storage_gives_the_head_of_pooling_the_map(tmp_path):
    """The same maps stored whole and stored pooled: the same candidates, scores,
    winner and probabilities (to float tolerance)."""
    import keras

    settings = {**DEFAULTS, "kind": "linear", "criterion": "log_loss"}
    found = {}
    for storage in ("map", "pooled"):
        (tmp_path / storage).mkdir()
        outputs, _, (val_x, _) = _fit(tmp_path / storage, settings, n_classes=3, storage=storage)
        saved = keras.models.load_model(outputs.model)
        found[storage] = pd.read_csv(outputs.candidates), predict_proba(saved, val_x)
    (maps, maps_proba), (pooled, pooled_proba) = found["map"], found["pooled"]
    assert len(maps) == 2 * 4 and maps["selected"].tolist() == pooled["selected"].tolist()
    assert maps[["pooling", "l2"]].equals(pooled[["pooling", "l2"]])
    np.testing.assert_allclose(pooled["val_log_loss"], maps["val_log_loss"], atol=1e-5)
    np.testing.assert_allclose(pooled_proba, maps_proba, atol=1e-5)


def test_the_winner_has_the_best_validation_score_and_ties_go_to_the_earlier():
    scores = [
        {"val_log_loss": 0.30, "val_accuracy": 0.90},
        {"val_log_loss": 0.20, "val_accuracy": 0.85},
        {"val_log_loss": 0.20, "val_accuracy": 0.85},
        {"val_log_loss": 0.25, "val_accuracy": 0.90},
    ]
    assert selection.best(scores, "log_loss") == 1
    assert selection.best(scores, "accuracy") == 3  # 0.90 twice: the lower log loss
    assert selection.best(scores[:1] * 3, "accuracy") == 0


def test_grid_spans_each_kinds_own_hyper_parameters_and_search_off_pins_the_first():
    settings = {
        **DEFAULTS,
        "kind": ["linear", "mlp"],
        "l2": [0.1, 1.0],
        "dropout": [0.5],
        "learning_rate": [0.001, 0.01],
    }
    found = selection.candidates(settings, ["avg", "flatten"])
    assert len(found) == 2 * 2 + 2 * 1 * 2
    assert found[0] == {"kind": "linear", "pooling": "avg", "l2": 0.1}
    assert {"kind": "mlp", "pooling": "flatten", "dropout": 0.5, "learning_rate": 0.01} in found
    pinned = selection.candidates({**settings, "search": False}, ["avg", "flatten"])
    assert pinned == [{"kind": "linear", "pooling": "avg", "l2": 0.1}]


def test_search_writes_every_candidate_and_keeps_the_best(tmp_path):
    settings = {**DEFAULTS, "epochs": 4, "hidden_units": [8], "batch_size": 8}
    outputs, _, _ = _fit(tmp_path, settings, storage="pooled")  # the default storage
    table = pd.read_csv(outputs.candidates)
    assert len(table) == 2 * 4 + 2 * 1  # 2 poolings x (4 L2 strengths + 1 learning rate)
    assert table["selected"].sum() == 1
    winner = table[table["selected"]].iloc[0]
    most_right = table[table["val_accuracy"] == table["val_accuracy"].max()]
    assert winner["val_log_loss"] == most_right["val_log_loss"].min()  # criterion: accuracy
    by_loss, _, _ = _fit(tmp_path, {**settings, "criterion": "log_loss"})
    table = pd.read_csv(by_loss.candidates)
    assert table[table["selected"]].iloc[0]["val_log_loss"] == table["val_log_loss"].min()
    assert Meta.read(outputs.meta).head["selected"]["candidate"] == winner["candidate"]
    assert (table["fit_seconds"] > 0).all()


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    """Validation labels are noise, so validation loss rises soon: training stops and
    the head of the lowest validation loss is kept, not the last epoch's."""
    import keras

    settings = {
        **DEFAULTS,
        "search": False,
        "kind": "mlp",
        "pooling": "flatten",
        "learning_rate": 0.01,
        "epochs": 60,
        "patience": 3,
        "hidden_units": [32],
        "dropout": 0.0,
        "batch_size": 8,
        "calibrate": False,
    }
    train = _data(2, rows=40)
    rng = np.random.default_rng(5)
    noise = (rng.normal(size=(20, 2, 2, 8)).astype(np.float32), rng.integers(0, 2, 20))
    candidate = head.selection.candidates(settings, ["flatten"])[0]
    model, rows, best = head.fit_mlp(train, noise, 2, candidate, settings, "map")
    losses = [r["val_loss"] for r in rows]
    assert len(rows) < 60, "training did not stop early"
    assert losses[best - 1] <= min(losses) + settings["min_delta"] and best <= len(rows) - 3
    kept = keras.losses.binary_crossentropy(
        noise[1][:, None].astype(np.float32), model.predict(noise[0], verbose=0)
    )
    assert float(np.mean(kept)) == pytest.approx(losses[best - 1], rel=1e-3)


def test_falls_of_the_validation_loss_under_min_delta_do_not_keep_training(tmp_path):
    """Validation separated from the first epochs on: its loss keeps falling by
    less and less. With min_delta those falls end training; without, it runs on."""
    settings = {
        **DEFAULTS,
        "kind": "mlp",
        "learning_rate": 0.01,
        "epochs": 40,
        "patience": 2,
        "hidden_units": [16],
        "dropout": 0.0,
        "batch_size": 8,
    }
    rng = np.random.default_rng(0)
    labels = np.arange(120) % 2
    rows_ = rng.normal(scale=0.5, size=(120, 1, 1, 2)).astype(np.float32)
    rows_[:, 0, 0, 0] += 8.0 * labels  # far apart: separable
    train, validation = (rows_[:80], labels[:80]), (rows_[80:], labels[80:])
    candidate = head.selection.candidates(settings, ["avg"])[0]
    _, rows, best = head.fit_mlp(train, validation, 2, candidate, settings, "map")
    _, every, _ = head.fit_mlp(train, validation, 2, candidate, {**settings, "min_delta": 0.0}, "map")
    losses = [r["val_loss"] for r in rows]
    assert len(rows) < len(every) and len(rows) == best + settings["patience"]
    later = losses[best:]  # no later epoch beat the kept one by min_delta
    assert min(later) > losses[best - 1] - settings["min_delta"]
    assert min(r["val_loss"] for r in every) < losses[best - 1]  # what the small falls were worth


def test_temperature_scaling_repairs_an_over_confident_head():
    rng = np.random.default_rng(0)
    honest = rng.normal(scale=2.0, size=(4000, 3))  # labels drawn from these very odds
    cumulative = calibration.probabilities(honest).cumsum(axis=1)
    labels = (rng.uniform(size=(4000, 1)) > cumulative).sum(axis=1)
    over_sure = 8.0 * honest  # same predictions, far too sure
    before = calibration.expected_calibration_error(calibration.probabilities(over_sure), labels)
    t = calibration.fit_temperature(over_sure, labels)
    after = calibration.expected_calibration_error(calibration.probabilities(over_sure, t), labels)
    assert t == pytest.approx(8.0, rel=0.15)
    assert after < before / 3 and after < 0.03
    assert calibration.log_loss(over_sure, labels, t) < calibration.log_loss(over_sure, labels)
    np.testing.assert_array_equal(calibration.probabilities(over_sure, t).argmax(1), over_sure.argmax(1))


def test_expected_calibration_error_of_a_known_case():
    proba = np.array([[0.9, 0.1]] * 10 + [[0.4, 0.6]] * 10)
    labels = np.array([0] * 9 + [1] + [1] * 3 + [0] * 7)
    # bin of 0.9: accuracy 0.9, gap 0; bin of 0.6: accuracy 0.3, gap 0.3; half the images each
    assert calibration.expected_calibration_error(proba, labels) == pytest.approx(0.15)
    bins = [b for b in calibration.reliability(proba, labels) if b["images"]]
    assert [(b["images"], b["accuracy"]) for b in bins] == [(10, 0.3), (10, 0.9)]


def test_binary_logit_log_loss_matches_scikit_learn():
    from sklearn.metrics import log_loss

    z = np.array([[2.0], [-1.0], [0.5], [3.0]])
    y = np.array([1, 0, 0, 0])
    assert calibration.log_loss(z, y) == pytest.approx(log_loss(y, calibration.probabilities(z)))
    # Sure and wrong: the exact loss (the logit itself), where log(probability) gives inf.
    assert calibration.log_loss(np.array([[800.0]]), np.array([0])) == pytest.approx(800.0)


def test_tutorial_preset_builds_the_tutorials_head():
    model = head.assemble(
        (4, 4, 512),
        2,
        TUTORIAL["pooling"],
        TUTORIAL["hidden_units"],
        TUTORIAL["activation"],
        TUTORIAL["dropout"],
        storage="map",
    )
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == ["Flatten", "Dense", "Dropout", "Dense", "Rescaling", "Activation"]
    assert model.layers[1].units == 256 and model.layers[2].rate == 0.5
    assert model.layers[3].units == 1 and model.layers[4].scale == 1.0
    assert (TUTORIAL["search"], TUTORIAL["kind"], TUTORIAL["patience"], TUTORIAL["calibrate"]) == (
        False,
        "mlp",
        0,
        False,
    )
    assert (TUTORIAL["optimizer"], TUTORIAL["learning_rate"], TUTORIAL["epochs"], TUTORIAL["batch_size"]) == (
        "rmsprop",
        0.001,
        20,
        32,
    )


def test_same_seed_same_head_other_seed_other_head():
    x, y = _data(2)
    settings = {**TUTORIAL, "epochs": 3, "hidden_units": [8], "batch_size": 5}
    candidate = selection.candidates(settings, ["flatten"])[0]
    first = head.fit_mlp((x, y), (x, y), 2, candidate, settings, "map")[1]
    again = head.fit_mlp((x, y), (x, y), 2, candidate, settings, "map")[1]
    other = head.fit_mlp((x, y), (x, y), 2, candidate, {**settings, "seed": 7}, "map")[1]
    assert first == again and first != other


def test_comparison_ranks_by_the_validation_criterion(tmp_path):
    rows = [
        {
            "backbone": "b",
            "head": "linear (avg)",
            "validation_accuracy": 0.9,
            "validation_log_loss": 0.2,
            "validation_balanced_accuracy": 0.85,
            "validation_macro_f1": 0.8,
            "validation_ece": 0.02,
            "evaluation_split": "test",
            "evaluation_accuracy": 0.88,
            "evaluation_log_loss": 0.3,
            "evaluation_ece": 0.03,
            "extraction_seconds": 10.0,
            "head_seconds": 1.0,
        },
        {
            "backbone": "a",
            "head": "mlp (flatten)",
            "validation_accuracy": 0.95,
            "validation_log_loss": 0.25,
            "validation_balanced_accuracy": 0.7,
            "validation_macro_f1": 0.9,
            "validation_ece": 0.04,
            "evaluation_split": "test",
            "evaluation_accuracy": 0.9,
            "evaluation_log_loss": 0.28,
            "evaluation_ece": 0.05,
            "extraction_seconds": None,
            "head_seconds": 2.0,
        },
    ]
    by_loss = comparison.compare_backbones(rows, "log_loss", tmp_path / "c.csv")
    assert list(by_loss["backbone"]) == ["b", "a"] and list(by_loss["rank"]) == [1, 2]
    written = pd.read_csv(tmp_path / "c.csv")
    assert list(written.columns) == comparison.COLUMNS and written["extraction_seconds"].isna()[1]
    ranked = {
        criterion: list(comparison.compare_backbones(rows, criterion, tmp_path / "c.csv")["backbone"])
        for criterion in ("accuracy", "balanced_accuracy", "macro_f1")
    }
    assert ranked == {"accuracy": ["a", "b"], "balanced_accuracy": ["b", "a"], "macro_f1": ["a", "b"]}
