"""Imbalanced and many classes: class weights, the criteria that serve every class,
top-5 accuracy and a confusion figure that stays readable at 100 classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from tlflow import calibration, head, imbalance, metrics, plots, selection, summary

SCHEMA = yaml.safe_load(open("workflow/schemas/config.schema.yaml"))
DEFAULTS = {
    k: v["default"]
    for k, v in SCHEMA["properties"]["head"]["properties"].items()
    if k not in ("threads", "gpus")
}
LINEAR = {**DEFAULTS, "search": False, "kind": "linear", "pooling": "avg", "l2": 0.01, "calibrate": False}


def _imbalanced(common, rare, seed=0, d=8):
    """Two overlapping clusters of pooled vectors: ``common`` of class 0, ``rare`` of 1."""
    rng = np.random.default_rng(seed)
    labels = np.array([0] * common + [1] * rare)
    x = rng.normal(size=(len(labels), d)).astype(np.float32)
    x[:, 0] += 1.5 * labels  # the classes overlap: the prior decides the close calls
    return x, labels


def _recall(state, x, y, label):
    kernel, bias = state["weights"]
    predicted = calibration.probabilities(x @ kernel + bias).argmax(axis=1)
    return float(np.mean(predicted[y == label] == label))


def test_auto_weighs_the_classes_above_the_ratio_and_balanced_gives_each_class_equal_weight():
    skewed = np.array([0] * 90 + [1] * 10)
    decision = imbalance.decide(skewed, 2, "auto")
    assert decision["applied"] == "balanced" and decision["ratio"] == 9.0 and decision["counts"] == [90, 10]
    assert decision["weights"] == pytest.approx([100 / (2 * 90), 100 / (2 * 10)])
    # Each class's weights sum to the same total: n / k.
    assert [n * w for n, w in zip(decision["counts"], decision["weights"])] == pytest.approx([50, 50])
    even = np.array([0] * 60 + [1] * 40)  # 1.5:1, under the ratio
    assert imbalance.decide(even, 2, "auto")["applied"] == "none"
    assert imbalance.decide(even, 2, "none")["weights"] is None
    assert imbalance.decide(even, 2, "balanced")["applied"] == "balanced"
    with pytest.raises(ValueError, match="unknown head.class_weight 'equal'"):
        imbalance.decide(even, 2, "equal")


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_class_weights_make_the_head_recall_the_rare_class(kind):
    train, validation = _imbalanced(400, 20), _imbalanced(200, 200, seed=1)
    settings = {**LINEAR, "kind": kind, "hidden_units": [8], "epochs": 40, "patience": 0, "batch_size": 32}
    recall = {}
    for weight in ("none", "balanced"):
        table, winner, state = head.select(train, validation, 2, {**settings, "class_weight": weight}, "map")
        assert table[winner]["class_weight"] == weight and state["class_weight"]["applied"] == weight
        recall[weight] = table[winner]["val_balanced_accuracy"], state
    (unweighted, plain), (weighted, balanced) = recall["none"], recall["balanced"]
    assert weighted > unweighted + 0.05, recall  # validation is balanced: mean recall rises
    if kind == "linear":
        rare = {w: _recall(s, *validation, 1) for w, s in (("none", plain), ("balanced", balanced))}
        assert rare["balanced"] > rare["none"] + 0.2, rare


def test_a_searched_subsample_is_weighted_by_the_whole_training_splits_counts(monkeypatch):
    train, validation = _imbalanced(3000, 100), _imbalanced(100, 100, seed=1)
    seen = []
    fit = head.fit_linear

    def recording(standard, y, l2, seed, class_weight=None):
        seen.append((len(y), class_weight))
        return fit(standard, y, l2, seed, class_weight)

    monkeypatch.setattr(head, "fit_linear", recording)
    settings = {**LINEAR, "search": True, "l2": [0.01, 1.0], "search_rows": 1000, "class_weight": "auto"}
    table, winner, state = head.select(train, validation, 2, settings, "map")
    expected = {0: 3100 / (2 * 3000), 1: 3100 / (2 * 100)}
    assert [rows for rows, _ in seen] == [1000, 1000, 3100]  # two searched on the subsample, one refit
    for _, weights in seen:
        assert weights == pytest.approx(expected)
    assert state["class_weight"]["counts"] == [3000, 100] and table[winner]["train_rows"] == 3100


def test_each_criterion_picks_its_own_winner_on_a_constructed_table():
    table = [
        {"val_accuracy": 0.95, "val_balanced_accuracy": 0.60, "val_macro_f1": 0.62, "val_log_loss": 0.20},
        {"val_accuracy": 0.90, "val_balanced_accuracy": 0.85, "val_macro_f1": 0.70, "val_log_loss": 0.30},
        {"val_accuracy": 0.92, "val_balanced_accuracy": 0.80, "val_macro_f1": 0.75, "val_log_loss": 0.25},
        {"val_accuracy": 0.90, "val_balanced_accuracy": 0.85, "val_macro_f1": 0.70, "val_log_loss": 0.28},
    ]
    picked = {criterion: selection.best(table, criterion) for criterion in selection.CRITERIA}
    # balanced_accuracy: 0.85 twice, the lower log loss wins.
    assert picked == {"log_loss": 0, "accuracy": 0, "balanced_accuracy": 3, "macro_f1": 2}
    with pytest.raises(ValueError, match="use one of log_loss, accuracy, balanced_accuracy, macro_f1"):
        selection.best(table, "recall")


def test_a_head_that_never_predicts_the_rare_class_loses_on_the_class_criteria():
    labels = np.array([0] * 9 + [1])
    always_common = np.zeros(10, dtype=int)
    finds_it = np.array([0] * 8 + [1, 1])  # one common image wrong, the rare one right
    lazy, careful = (imbalance.class_scores(labels, p, 2) for p in (always_common, finds_it))
    assert lazy == {"balanced_accuracy": 0.5, "macro_f1": pytest.approx(0.9 / 1.9)}
    assert careful["balanced_accuracy"] == pytest.approx((8 / 9 + 1) / 2)
    assert careful["macro_f1"] > lazy["macro_f1"]  # while the accuracy is 0.9 both


def test_top_5_accuracy_of_a_known_case():
    classes = [f"c{i}" for i in range(7)]
    proba = np.full((3, 7), 0.01)
    proba[0, [3, 0, 1, 2, 4]] = [0.5, 0.2, 0.1, 0.1, 0.05]  # true 0: second -> in the top 5
    proba[1, [0, 1, 2, 3, 4]] = [0.3, 0.2, 0.2, 0.1, 0.1]  # true 6: not in the top 5
    proba[2, [5]] = 0.9  # true 5: first
    proba /= proba.sum(axis=1, keepdims=True)
    table = metrics.predictions_table(["a", "b", "c"], [0, 6, 5], proba, classes)
    found = metrics.metrics(table, classes)
    assert found["accuracy"] == pytest.approx(1 / 3) and found["top_5_accuracy"] == pytest.approx(2 / 3)
    assert found["balanced_accuracy"] == pytest.approx(1 / 3)  # recall 0, 0, 1 of the classes present
    five = metrics.predictions_table(["a"], [0], np.full((1, 5), 0.2), classes[:5])
    assert "top_5_accuracy" not in metrics.metrics(five, classes[:5])  # always 1 with 5 classes


def _hundred_class_confusion():
    classes = [f"class {i:03d}" for i in range(100)]
    counts = np.diag(np.full(100, 20))
    counts[7, 7], counts[7, 8] = 8, 12  # 'class 007' is mostly taken for 'class 008'
    counts[50, 50], counts[50, 3] = 15, 5
    counts[99, 99], counts[99, 0] = 15, 5  # ties: by class name
    return pd.DataFrame(counts, index=pd.Index(classes, name="true \\ predicted"), columns=classes)


def test_the_most_confused_pairs_come_sorted_with_their_share():
    pairs = metrics.confused_pairs(_hundred_class_confusion())
    assert pairs[["true_class", "predicted_class", "images"]].values.tolist() == [
        ["class 007", "class 008", 12],
        ["class 050", "class 003", 5],
        ["class 099", "class 000", 5],
    ]
    assert pairs["share_of_true_class"].tolist() == pytest.approx([0.6, 0.25, 0.25])


def test_the_confusion_figure_of_100_classes_lists_the_pairs_at_a_readable_size(tmp_path, monkeypatch):
    from PIL import Image

    csv = tmp_path / "confusion_matrix.csv"
    _hundred_class_confusion().to_csv(csv)
    drawn, save = [], plots.save
    monkeypatch.setattr(plots, "save", lambda figure, out: (drawn.append(figure), save(figure, out)))
    plots.confusion(csv, tmp_path / "confusion.png", "run: confusion matrix on test")
    (axes,) = drawn[0].axes
    labels = [tick.get_text() for tick in axes.get_yticklabels()]
    assert labels == [
        "class 007 \u2192 class 008",
        "class 050 \u2192 class 003",
        "class 099 \u2192 class 000",
    ]
    assert "100 classes: the 3 most confused pairs, 22 of 22 mistakes" in axes.get_title()
    with Image.open(tmp_path / "confusion.png") as image:
        assert image.size[0] <= 1000 and image.size[1] <= 600  # not 100 cells a side
    small = tmp_path / "small.csv"
    _hundred_class_confusion().iloc[:3, :3].to_csv(small)
    plots.confusion(small, tmp_path / "small.png", "three classes")  # still the heat map
    with Image.open(tmp_path / "small.png") as image:
        assert image.size == (500, 400)


def test_the_summary_warns_of_a_rare_class_with_the_counts():
    counts = {"cats": 1000, "dogs": 100, "foxes": 400}
    weighted = imbalance.decide(np.repeat([0, 1, 2], [1000, 100, 400]), 3, "auto")
    (warning,) = imbalance.rare_warnings(counts, weighted)
    assert warning.startswith("1 rare class(es) in train: 'dogs' with 100 images, against 1,000 of 'cats'")
    assert "balanced class weights" in warning
    (unweighted,) = imbalance.rare_warnings(counts, imbalance.decide(np.zeros(3, int), 3, "none"))
    assert "set 'head: class_weight: balanced'" in unweighted
    assert imbalance.rare_warnings({"cats": 300, "dogs": 101}, weighted) == []
    chosen = {
        "selected": {"candidate": 1, "kind": "linear", "pooling": "avg", "l2": 0.01},
        "candidates": 8,
        "settings": {"criterion": "balanced_accuracy"},
        "temperature": 1.2,
        "class_weight": weighted,
    }
    assert summary._head_words(chosen).endswith(
        "(balanced_accuracy); temperature 1.200; class weights balanced (auto: largest/smallest class 10.0)"
    )


def test_many_generated_classes_are_distinct_folders_with_their_counts(tmp_path):
    from tlflow import synthetic

    names = synthetic.many_classes(tmp_path, 12, {"train": 2, "test": 1}, size=8)
    assert len(set(names)) == 12 and names[:6] == [
        "circles-00",
        "squares-00",
        "triangles-00",
        "crosss-00",
        "rings-00",
        "circles-01",
    ]
    found = {p.name: len(list(p.iterdir())) for p in (tmp_path / "train").iterdir()}
    assert found == {name: 2 + i % 3 for i, name in enumerate(names)}
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == sorted(names)
