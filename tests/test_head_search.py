"""The head search at scale: a stratified subsample chooses, the winner is fitted on
every row, and the linear probe never holds a float64 copy of a large matrix."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import yaml

from tlflow import calibration, head, selection

SCHEMA = yaml.safe_load(open("workflow/schemas/config.schema.yaml"))
DEFAULTS = {
    k: v["default"]
    for k, v in SCHEMA["properties"]["head"]["properties"].items()
    if k not in ("threads", "gpus")
}
LINEAR = {**DEFAULTS, "kind": "linear", "pooling": "avg", "l2": [0.01, 1.0]}


def _clusters(rows, n_classes=3, d=16, seed=0):
    """Pooled vectors (rows, d) of overlapping class clusters, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % n_classes
    x = rng.normal(size=(rows, d)).astype(np.float32)
    x[:, :n_classes] += 1.5 * np.eye(n_classes, dtype=np.float32)[labels]
    return x, labels


def _exact_probe(x, y, l2):
    """scikit-learn's probe on every row in float64, as the head search did before."""
    from sklearn.linear_model import LogisticRegression

    x = x.astype(np.float64)
    mean, std = x.mean(0), x.std(0)
    probe = LogisticRegression(C=1 / (l2 * len(x)), max_iter=5000, tol=1e-8).fit((x - mean) / std, y)
    return lambda rows: probe.predict_proba((rows.astype(np.float64) - mean) / std)


def test_the_subsample_is_stratified_keeps_every_class_and_is_fixed_by_the_seed():
    labels = np.array([0] * 9000 + [1] * 990 + [2] * 10)
    rows = selection.search_subsample(labels, 1000, seed=42)
    counts = np.bincount(labels[rows])
    assert list(counts) == [900, 99, 1]  # each class its share, the rare one kept
    assert np.all(np.diff(rows) > 0)  # sorted, no row twice
    assert np.array_equal(rows, selection.search_subsample(labels, 1000, seed=42))
    assert not np.array_equal(rows, selection.search_subsample(labels, 1000, seed=7))
    assert selection.search_subsample(labels, len(labels), seed=42) is None


def test_at_or_below_the_threshold_every_candidate_sees_every_row():
    train, validation = _clusters(600), _clusters(300, seed=1)
    table, winner, state = head.select(train, validation, 3, {**LINEAR, "search_rows": 600}, "map")
    assert len(table) == 2 and [row["train_rows"] for row in table] == [600, 600]
    assert [row["candidate"] for row in table] == [0, 1] and table[winner]["selected"]
    # The winner is the exact probe on all rows, as before the threshold existed.
    kernel, bias = state["weights"]
    expected = _exact_probe(*train, table[winner]["l2"])(validation[0])
    got = calibration.probabilities(validation[0] @ kernel + bias)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_above_the_threshold_the_winner_is_fitted_again_on_every_row():
    train, validation = _clusters(3000), _clusters(600, seed=1)
    table, winner, state = head.select(train, validation, 3, {**LINEAR, "search_rows": 1000}, "map")
    searched, refit = table[:-1], table[-1]
    assert winner == len(table) - 1 and refit["selected"] and not any(r["selected"] for r in searched)
    assert [row["train_rows"] for row in searched] == [999, 999]  # 333 of each class
    best = selection.best(searched, LINEAR["criterion"])
    assert (refit["candidate"], refit["l2"], refit["train_rows"]) == (best, searched[best]["l2"], 3000)
    kernel, bias = state["weights"]
    # Its training accuracy is over every training row, and it is the exact probe on all rows.
    train_proba = calibration.probabilities(train[0] @ kernel + bias)
    assert state["rows"][0]["accuracy"] == pytest.approx(np.mean(train_proba.argmax(1) == train[1]))
    expected = _exact_probe(*train, refit["l2"])(validation[0])
    np.testing.assert_allclose(calibration.probabilities(validation[0] @ kernel + bias), expected, atol=1e-4)
    # Calibrated on validation with the refitted head's own logits.
    assert state["temperature"] == pytest.approx(
        calibration.fit_temperature(state["val_logits"], validation[1])
    )
    assert refit["val_log_loss"] == pytest.approx(
        calibration.log_loss(state["val_logits"], validation[1], state["temperature"])
    )


def test_a_large_pooled_matrix_is_standardised_in_float32_and_held_once(monkeypatch):
    monkeypatch.setattr(head, "FLOAT64_BYTES", 0)  # every matrix counts as large
    monkeypatch.setattr(head, "BLOCK_VALUES", 2**14)  # blocks far smaller than the matrix
    x, _ = _clusters(2000, d=64)
    mine = x.copy()
    standard = head.standardise(mine, owned=True)
    assert standard.z is mine and mine.dtype == np.float32
    np.testing.assert_allclose(standard.z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(standard.z.std(0), 1, atol=1e-4)
    copied = head.standardise(x, owned=False)
    assert copied.z.dtype == np.float32 and not np.shares_memory(copied.z, x)
    np.testing.assert_array_equal(copied.z, standard.z)

    import sklearn.linear_model  # noqa: F401  (its import is not the fit's memory)

    train, validation = _clusters(10000, d=256), _clusters(200, d=256, seed=1)
    tracemalloc.start()
    head.select(train, validation, 3, {**LINEAR, "l2": 0.1}, "map")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Vectors pool to a view of the caller's rows: one float32 copy is standardised
    # and fitted; a float64 copy alone would be twice the matrix.
    assert train[0].nbytes <= peak < 1.5 * train[0].nbytes


def test_the_summary_says_when_the_search_used_a_subsample():
    from tlflow import summary

    chosen = {
        "selected": {"candidate": 1, "kind": "linear", "pooling": "avg", "l2": 0.01},
        "candidates": 8,
        "settings": {"criterion": "accuracy"},
        "temperature": 1.2,
    }
    whole = summary._head_words({**chosen, "search_rows": 900, "train_rows": 900})
    sampled = summary._head_words({**chosen, "search_rows": 50_000, "train_rows": 1_000_000})
    assert "rows" not in whole
    assert "fitted on 50,000 of the 1,000,000 training rows, the winner again on all" in sampled
