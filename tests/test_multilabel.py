"""Several labels per image: one-vs-rest and sigmoid heads, per-label temperatures and
thresholds chosen on validation, multi-label metrics, and what the deployed model gives."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_split
from tlflow import evaluate, head, multilabel, multilabel_metrics, pooling
from tlflow.probabilities import logits, predict_proba

SCHEMA = yaml.safe_load(open("workflow/schemas/config.schema.yaml"))
DEFAULTS = {
    k: v["default"]
    for k, v in SCHEMA["properties"]["head"]["properties"].items()
    if k not in ("threads", "gpus")
}
LABELS = ["circle", "square", "triangle"]


def _data(rows, seed):
    """(maps (rows, 2, 2, 8), 0/1 labels (rows, 3)): each label lifts its own feature."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((rows, len(LABELS))) < 0.4).astype(np.int64)
    labels[np.arange(len(LABELS)), np.arange(len(LABELS))] = 1  # every label has a positive
    features = rng.normal(size=(rows, 2, 2, 8)).astype(np.float32)
    features[..., : len(LABELS)] += 1.5 * labels[:, None, None, :]
    return features, labels


def _write(folder, split, rows, labels):
    """A multi-label split as the join leaves it: its manifest's class cells name the labels."""
    manifest, shards, labels_npy = write_split(folder, split, rows, np.zeros(len(labels), np.int64))
    np.save(labels_npy, labels)
    table = pd.read_csv(manifest).drop(columns="label")
    table.insert(1, "class", multilabel_metrics.cells(labels, LABELS, "|"))
    table.to_csv(manifest, index=False)
    return manifest, shards, labels_npy


def _fit(tmp_path, settings, train=None, validation=None):
    """Fit a multi-label head on ``_data``; (outputs, train, validation)."""
    train = _data(60, 0) if train is None else train
    validation = _data(40, 1) if validation is None else validation
    paths = {
        split: _write(tmp_path, split, x, y)
        for split, (x, y) in (("train", train), ("validation", validation))
    }
    outputs = SimpleNamespace(
        model=tmp_path / "head.h5",
        history=tmp_path / "history.csv",
        candidates=tmp_path / "candidates.csv",
        meta=tmp_path / "head.json",
    )
    spec = {
        "id": "b",
        "image_size": [8, 8],
        "precision": "float32",
        "preprocessing": "none",
        "features": "map",
    }
    meta = {"classes": LABELS, "backbone": spec, "multi_label": {"separator": "|"}}
    head.train_head(paths, settings, meta, threads=1, outputs=outputs)
    return outputs, train, validation


def test_one_vs_rest_equals_scikit_learns_own_per_label(tmp_path):
    """The linear multi-label head gives scikit-learn's OneVsRestClassifier's probabilities."""
    import keras
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    settings = {
        **DEFAULTS,
        "search": False,
        "kind": "linear",
        "pooling": "avg",
        "l2": 0.01,
        "calibrate": False,
    }
    outputs, (x, y), (val_x, _) = _fit(tmp_path, settings)
    pooled, val_pooled = (pooling.pool(v, "avg", "map").astype(np.float64) for v in (x, val_x))
    mean, std = pooled.mean(0), pooled.std(0)
    # The same solver and tolerance as the head: the same fit, label by label.
    probe = OneVsRestClassifier(LogisticRegression(C=1 / (0.01 * len(x)), max_iter=5000, tol=1e-6))
    probe.fit((pooled - mean) / std, y)
    saved = keras.models.load_model(outputs.model)
    np.testing.assert_allclose(
        predict_proba(saved, val_x), probe.predict_proba((val_pooled - mean) / std), atol=1e-5
    )


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_saved_head_applies_each_labels_temperature_and_records_thresholds(tmp_path, kind):
    settings = {**DEFAULTS, "search": False, "kind": kind, "pooling": "avg", "epochs": 5}
    outputs, _, (val_x, val_y) = _fit(tmp_path, settings)
    import keras

    saved = keras.models.load_model(outputs.model)
    meta = json.loads(outputs.meta.read_text())
    chosen = meta["head"]
    assert meta["multi_label"] == {"separator": "|"}
    assert len(chosen["temperature"]) == len(chosen["thresholds"]) == len(LABELS)
    assert chosen["criterion"] == "mean_average_precision"  # the default 'accuracy' means it here
    raw = logits(saved, val_x)
    proba = predict_proba(saved, val_x)
    np.testing.assert_allclose(proba, multilabel.probabilities(raw, chosen["temperature"]), atol=1e-5)
    assert chosen["thresholds"] == pytest.approx(multilabel.fit_thresholds(proba, val_y), abs=1e-5)
    assert chosen["validation"]["mean_average_precision"] > 0.8
    # The history's accuracy is per label at 0.5 for both kinds (the kept epoch's weights).
    kept = pd.read_csv(outputs.history).iloc[chosen["best_epoch"] - 1]
    assert kept["val_accuracy"] == pytest.approx(np.mean((raw >= 0) == val_y), abs=1e-6)


def test_a_threshold_maximises_its_labels_validation_f1():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    labels = (rng.random((200, 2)) < 0.3).astype(int)
    proba = np.clip(0.35 * labels + rng.random((200, 2)) * 0.7, 0, 1)
    thresholds = multilabel.fit_thresholds(proba, labels)
    for j, threshold in enumerate(thresholds):
        best = f1_score(labels[:, j], proba[:, j] >= threshold)
        for cut in np.linspace(0, 1, 101):
            assert f1_score(labels[:, j], proba[:, j] >= cut, zero_division=0) <= best + 1e-12
    # A label without a positive validation image keeps the default.
    assert multilabel.fit_thresholds(proba, np.zeros_like(labels)) == [0.5, 0.5]


def test_a_label_without_training_images_is_refused(tmp_path):
    train = _data(60, 0)
    train[1][:, 2] = 0
    with pytest.raises(ValueError, match=r"'triangle' have no training image .*train_labels.npy"):
        _fit(tmp_path, {**DEFAULTS, "search": False, "kind": "linear"}, train=train)


def test_evaluation_scores_with_the_heads_temperatures_and_thresholds(tmp_path):
    from sklearn.metrics import average_precision_score, f1_score

    outputs, _, _ = _fit(tmp_path, {**DEFAULTS, "search": False, "kind": "linear", "pooling": "avg"})
    test_x, test_y = _data(50, 2)
    manifest, shards, labels_npy = _write(tmp_path, "test", test_x, test_y)
    out = {name: tmp_path / f"{name}.csv" for name in ("predictions", "confusion", "reliability")}
    result = evaluate.evaluate(
        shards,
        labels_npy,
        manifest,
        outputs.model,
        outputs.meta,
        "test",
        out["predictions"],
        tmp_path / "metrics.json",
        out["confusion"],
        out["reliability"],
    )
    chosen = json.loads(outputs.meta.read_text())["head"]
    table = pd.read_csv(out["predictions"], keep_default_na=False)
    proba = table[[f"prob_{label}" for label in LABELS]].to_numpy()
    predicted = (proba >= chosen["thresholds"]).astype(int)
    assert list(table["predicted_labels"]) == multilabel_metrics.cells(predicted, LABELS, "|")
    assert list(table["true_labels"]) == multilabel_metrics.cells(test_y, LABELS, "|")
    assert result["macro_f1"] == pytest.approx(f1_score(test_y, predicted, average="macro"))
    assert result["micro"]["f1"] == pytest.approx(f1_score(test_y, predicted, average="micro"))
    assert result["mean_average_precision"] == pytest.approx(average_precision_score(test_y, proba))
    assert [result["per_label"][label]["threshold"] for label in LABELS] == chosen["thresholds"]
    counts = pd.read_csv(out["confusion"], index_col=0)
    assert counts.loc["square", "true_positive"] == int((predicted[:, 1] & test_y[:, 1]).sum())
    assert (counts.sum(axis=1) == 50).all()


def test_a_manifest_naming_an_unknown_label_is_refused(tmp_path):
    outputs, _, _ = _fit(tmp_path, {**DEFAULTS, "search": False, "kind": "linear"})
    manifest, shards, labels_npy = _write(tmp_path, "test", *_data(10, 2))
    table = pd.read_csv(manifest)
    table.loc[0, "class"] = "circle|hexagon"
    table.to_csv(manifest, index=False)
    with pytest.raises(ValueError, match=r"test.csv names label\(s\) 'hexagon'"):
        evaluate.evaluate(
            shards,
            labels_npy,
            manifest,
            outputs.model,
            outputs.meta,
            "test",
            *(tmp_path / name for name in ("p.csv", "m.json", "c.csv", "r.csv")),
        )


def _table(text):
    import io

    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def test_label_cells_from_a_separated_column_or_from_0_1_columns():
    from tlflow import label_sets

    joined = _table("file,label\na.jpg,dog|cat\nb.jpg,cat\nc.jpg, dog | dog \n")
    assert label_sets.cells(joined, "t.csv", "label", [], "|") == ["cat|dog", "cat", "dog"]
    assert label_sets.cells(_table("file,label\na.jpg,dog\nb.jpg,cat\n"), "t.csv", "label", [], "|") is None
    columns = _table("file,dog,cat\na.jpg,1,1\nb.jpg,0,0\nc.jpg,1,0\n")
    # A row of zeros is an image without any of the labels.
    assert label_sets.cells(columns, "t.csv", "label", ["dog", "cat"], "|") == ["cat|dog", "", "dog"]


@pytest.mark.parametrize(
    ("text", "label_columns", "message"),
    [
        ("file,label\na.jpg,cat||dog\n", [], r"row\(s\) 1 have an empty label between two '\|'"),
        ("file,cat\na.jpg,1\n", ["cat", "bird"], r"no column\(s\) \['bird'\]"),
        (
            "file,cat,dog\na.jpg,1,yes\nb.jpg,2,0\n",
            ["cat", "dog"],
            "column 'cat' rows 2; column 'dog' rows 1",
        ),
        ("file,a|b,c\nx.jpg,1,0\n", ["a|b", "c"], r"\['a\|b'\] .* contain '\|'"),
    ],
    ids=["empty-label", "unknown-label-column", "not-0-or-1", "separator-in-name"],
)
def test_a_bad_multi_label_table_is_refused_naming_the_rows(text, label_columns, message):
    from tlflow import label_sets
    from tlflow.images import DatasetError

    with pytest.raises(DatasetError, match=message):
        label_sets.cells(_table(text), "t.csv", "label", label_columns, "|")


def test_a_label_without_a_training_image_is_refused_at_planning():
    from tlflow import label_sets
    from tlflow.images import DatasetError

    with pytest.raises(DatasetError, match=r"label\(s\) \['bird'\] have no training image"):
        label_sets.check_training(["cat|dog", "dog", ""], ["bird", "cat", "dog"], "|", "t.csv")


@pytest.mark.workflow
def test_a_multi_label_run_end_to_end(tmp_path):
    """Generated images with one to three shapes each: per-label thresholds from
    validation, applied alike by evaluation, model.keras, its ONNX export and predict;
    the test split takes no part in the head."""
    from conftest import TINY_CONFIG, planned_jobs, snakemake, write_config

    from tlflow import predict, synthetic

    workdir = tmp_path / "run"
    table = synthetic.multi_label(workdir / "data", {"train": 36, "validation": 15, "test": 12}, size=32)
    # float32 features: the ONNX export computes in float32 (tlflow.export).
    config = {
        **TINY_CONFIG,
        "labels": str(table.relative_to(workdir)),
        "export": {"formats": ["onnx"]},
        "predict": {"images": "data/images"},
        "extraction": {**TINY_CONFIG["extraction"], "precision": "float32"},
    }
    write_config(workdir, config)
    snakemake(workdir)
    results = workdir / "results/vgg16"
    meta = json.loads((results / "model.json").read_text())
    thresholds = meta["head"]["thresholds"]
    assert meta["classes"] == LABELS and meta["multi_label"] == {"separator": "|"}
    metrics = json.loads((results / "evaluation/metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["images"] == 12
    assert [metrics["per_label"][label]["threshold"] for label in LABELS] == thresholds
    assert {"mean_average_precision", "macro_f1", "micro_f1", "exact_match", "ece"} <= set(metrics)
    assert (results / "evaluation/precision_recall.png").stat().st_size > 0
    assert "mean average precision" in (results / "evaluation/summary.html").read_text()
    assert not (results / "audit").exists()  # single-label data only
    # The deployed model and its export give the evaluation's probabilities and labels.
    evaluated = pd.read_csv(results / "evaluation/predictions.csv", keep_default_na=False).set_index("file")
    columns = [f"prob_{label}" for label in LABELS]
    deployed = pd.read_csv(results / "predictions/predictions.csv", keep_default_na=False)
    deployed["file"] = "images/" + deployed["file"]
    deployed = deployed.set_index("file").loc[evaluated.index]
    np.testing.assert_allclose(deployed[columns], evaluated[columns], atol=1e-4)
    assert list(deployed["predicted_labels"]) == list(evaluated["predicted_labels"])
    predict.predict(results / "export/model.onnx", workdir / "data/images", tmp_path / "onnx.csv")
    exported = pd.read_csv(tmp_path / "onnx.csv", keep_default_na=False)
    np.testing.assert_allclose(
        exported[columns], pd.read_csv(results / "predictions/predictions.csv")[columns], atol=1e-4
    )
    # Corrupting the test split's features reruns its evaluation, never the head.
    for shard in (results / "features/shards/test").glob("*.npy"):
        shard.write_bytes(shard.read_bytes()[:-64] + bytes(64))
    jobs = planned_jobs(workdir)
    assert "train_head" not in jobs and jobs["evaluate"] == 1


def _multi_label_data(tmp_path, header, rows):
    """Generated images under tmp_path/data (train, validation, test) and a table of ``rows``."""
    from tlflow import synthetic

    synthetic.multi_label(tmp_path / "data", {"train": 6, "validation": 3, "test": 3}, size=16)
    files = sorted(p.name for p in (tmp_path / "data/images").iterdir())
    table = tmp_path / "labels.csv"
    table.write_text(
        header + "\n" + "".join(row(f"images/{f}", f.split("-")[0]) + "\n" for f, row in zip(files, rows))
    )
    return table


def test_a_table_of_0_1_columns_plans_labels_with_all_zero_rows_as_images(tmp_path):
    from tlflow import layouts, manifest

    rows = [
        lambda f, s, bits=bits: f"{f},{s},{bits}"
        for bits in ["1,0", "0,1", "1,1", "0,0", "1,0", "0,1", "1,1", "0,0", "1,0", "0,1", "1,1", "0,0"]
    ]
    table = _multi_label_data(tmp_path, "file,split,dog,cat", rows)
    dataset = layouts.scan(
        tmp_path / "data",
        ["train", "validation", "test"],
        manifest.HashCache(tmp_path / "h.json"),
        labels=str(table),
        columns={"labels": ["dog", "cat"]},
    )
    assert dataset.names == ["cat", "dog"] and dataset.separator == "|"
    # Rows go to the files in sorted order: test, then train (0,0 1,0 0,1 1,1 0,0 1,0).
    assert dataset.label_counts("train") == {"cat": 2, "dog": 3}
    assert dataset.count("train") == 6  # the two images without a label are kept
    assert ("images/train-00000.jpg", "", -1) in manifest.label_rows(dataset, "train")


def test_a_label_only_outside_train_is_refused_when_planned(tmp_path):
    from tlflow import layouts, manifest
    from tlflow.images import DatasetError

    labels = ["bird|cat"] * 3 + ["cat|dog", "cat", "dog"] * 2 + ["bird|cat"] * 3  # test, train, validation
    table = _multi_label_data(
        tmp_path, "file,split,label", [lambda f, s, c=c: f"{f},{s},{c}" for c in labels]
    )
    with pytest.raises(DatasetError, match=r"label\(s\) \['bird'\] have no training image"):
        layouts.scan(
            tmp_path / "data",
            ["train", "validation", "test"],
            manifest.HashCache(tmp_path / "h.json"),
            labels=str(table),
        )


def test_a_large_training_split_is_searched_on_a_subsample_by_label_combination(tmp_path):
    settings = {**DEFAULTS, "kind": "linear", "pooling": "avg", "l2": [0.01, 1.0], "search_rows": 30}
    outputs, (_, y), _ = _fit(tmp_path, settings)
    table = pd.read_csv(outputs.candidates)
    assert list(table.columns) == head.MULTI_LABEL_CANDIDATE_COLUMNS
    searched = table[~table["selected"]]["train_rows"]
    assert (searched < len(y)).all() and table[table["selected"]]["train_rows"].item() == len(y)
    meta = json.loads(outputs.meta.read_text())["head"]
    assert meta["search_rows"] < meta["train_rows"] == len(y)


def test_settings_multi_label_data_cannot_have_yet_are_refused_with_the_fix():
    from tlflow.plan import PlanError
    from tlflow.plan.make import _multi_label_supported

    config = {
        "labels": "labels.csv",
        "fine_tune": {"enabled": True},
        "augmentation": {"test_time": ["flip"]},
        "backbones": [{"name": "vgg16"}],
    }
    with pytest.raises(
        PlanError, match="fine_tune: enabled: true and augmentation: test_time: do not support"
    ):
        _multi_label_supported(config)
    _multi_label_supported({**config, "fine_tune": {"enabled": False}, "augmentation": {"test_time": []}})
