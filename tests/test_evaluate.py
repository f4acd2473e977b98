"""Evaluation, the deployed model and prediction, end to end on tiny generated images.

One two-class run in float32 without a test split (so evaluation is on validation)
serves most tests; the shared three-class run of conftest covers the test split.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, TINY_CONFIG, snakemake, split_features, write_config
from PIL import Image

from tlflow import metrics, plots
from tlflow.synthetic import make_dataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BINARY_CONFIG = {
    **TINY_CONFIG,
    "splits": ["train", "validation"],
    "extraction": {"shards": 1, "batch_size": 8, "threads": 2, "precision": "float32"},
    "predict": {"images": "new"},
}
NEW_SIZE = 48  # new images larger than the model's 32x32: the model must resize them


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("binary") / "run"
    workdir.mkdir()
    make_dataset(workdir / "data", {"train": 13, "validation": 7}, classes=2, size=32)
    make_dataset(workdir / "new_source", {"new": 2}, classes=2, size=NEW_SIZE, seed=1)
    new = workdir / "new"
    shutil.copytree(workdir / "new_source/new/circles", new)
    shutil.copytree(workdir / "new_source/new/squares", new / "more")
    (new / "broken.jpg").write_bytes(b"not a jpeg")
    (new / "notes.txt").write_text("not an image, not listed")
    write_config(workdir, BINARY_CONFIG)
    snakemake(workdir)
    return workdir


def results(run, path):
    return run / "results/vgg16" / path


@pytest.mark.workflow
def test_metrics_agree_with_the_predictions_table(binary_run):
    from sklearn import metrics as skm

    table = pd.read_csv(results(binary_run, "evaluation/predictions.csv"))
    found = json.loads(results(binary_run, "evaluation/metrics.json").read_text())
    manifest = pd.read_csv(results(binary_run, "features/validation_manifest.csv"))
    # No test split in the config: validation is evaluated, every image once, in order.
    assert found["split"] == "validation" and found["images"] == len(manifest) == 15
    assert list(table["file"]) == list(manifest["file"])
    assert list(table["true_class"]) == list(manifest["class"])
    proba = table[["prob_circles", "prob_squares"]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert list(table["predicted_class"]) == [["circles", "squares"][i] for i in proba.argmax(1)]
    y_true, y_pred = table["true_class"], table["predicted_class"]
    assert found["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert found["log_loss"] == pytest.approx(skm.log_loss(y_true == "squares", proba[:, 1]), rel=1e-5)
    assert found["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true == "squares", proba[:, 1]))
    f1 = skm.f1_score(y_true, y_pred, labels=["circles", "squares"], average=None, zero_division=0)
    assert [found["per_class"][c]["f1"] for c in ("circles", "squares")] == pytest.approx(f1)
    assert found["macro"]["f1"] == pytest.approx(f1.mean()) == pytest.approx(found["macro_f1"])
    assert found["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert "top_5_accuracy" not in found  # two classes
    assert [found["per_class"][c]["support"] for c in ("circles", "squares")] == [7, 8]
    confusion = pd.read_csv(results(binary_run, "evaluation/confusion_matrix.csv"), index_col=0)
    expected = pd.crosstab(y_true, y_pred).reindex(
        index=["circles", "squares"], columns=["circles", "squares"], fill_value=0
    )
    np.testing.assert_array_equal(confusion.to_numpy(), expected.to_numpy())


@pytest.mark.workflow
def test_figures_and_summary_are_written(binary_run):
    for name in ("confusion_matrix.png", "mistakes.png"):
        assert results(binary_run, f"evaluation/{name}").read_bytes()[:8] == PNG_SIGNATURE
    summary = results(binary_run, "evaluation/summary.html").read_text()
    for text in (
        "circles, squares",
        "float32",
        "validation",
        "<th>train</th>",
        ">27<",
        "<th>balanced accuracy (mean recall)</th>",
        "<th>macro F1</th>",
        "class weights none (auto: largest/smallest class 1.1)",
    ):
        assert text in summary  # 13 + 14 training images used
    # No test split: the scores are on the split that chose the head, and the page says so.
    assert "<th>split scored</th><td>validation</td>" in summary
    assert "also chose and calibrated the head: they are optimistic" in summary


@pytest.mark.workflow
def test_evaluation_uses_the_test_split_when_configured(finished_run):
    found = json.loads((finished_run / "results/vgg16/evaluation/metrics.json").read_text())
    table = pd.read_csv(finished_run / "results/vgg16/evaluation/predictions.csv")
    assert found["split"] == "test" and found["images"] == 5 + 6 + 7
    assert table["file"].str.startswith("test/").all()
    assert len(found["per_class"]) == 3 and "roc_auc" not in found  # AUC: two classes only
    summary = (finished_run / "results/vgg16/evaluation/summary.html").read_text()
    assert "<th>split scored</th><td>test</td>" in summary and "optimistic" not in summary


@pytest.mark.workflow
def test_deployed_model_gives_the_probabilities_of_features_then_head(binary_run):
    """Same 32x32 images: the model's resize is then a no-op, so both paths do the same
    float32 arithmetic; observed difference 0, asserted to 1e-5."""
    import keras

    from tlflow import images, probabilities

    model = keras.models.load_model(results(binary_run, "model.keras"))  # safe mode on
    manifest = pd.read_csv(results(binary_run, "features/validation_manifest.csv"))
    raw = np.stack([images.load_rgb(binary_run / "data" / f, (32, 32)) for f in manifest.file])
    deployed = model.predict(raw, verbose=0)
    trained = probabilities.predict_proba(
        keras.models.load_model(results(binary_run, "head/head.h5"), compile=False),
        split_features(binary_run, "validation"),
    )
    assert deployed.shape == trained.shape == (15, 2)
    np.testing.assert_allclose(deployed, trained, atol=1e-5)


@pytest.mark.workflow
def test_deployed_model_resizes_raw_images_as_training_did(binary_run):
    """48x48 images fed whole vs shrunk by PIL first (as features are made): the model's
    antialiased bilinear resize differs from PIL's by under one grey level (PIL rounds
    to uint8), so probabilities agree to 1e-3 here (observed about 5e-5)."""
    import keras

    model = keras.models.load_model(results(binary_run, "model.keras"))
    table = pd.read_csv(results(binary_run, "predictions/predictions.csv")).dropna(subset=["predicted_class"])
    raw = [np.asarray(Image.open(binary_run / "new" / f).convert("RGB")) for f in table.file]
    assert all(image.shape == (NEW_SIZE, NEW_SIZE, 3) for image in raw)
    deployed = model.predict(np.stack(raw).astype(np.uint8), verbose=0)
    np.testing.assert_allclose(deployed, table[["prob_circles", "prob_squares"]], atol=1e-3)


@pytest.mark.workflow
def test_predict_lists_every_image_and_unreadable_ones_with_their_error(binary_run):
    table = pd.read_csv(results(binary_run, "predictions/predictions.csv"), dtype={"error": str})
    assert list(table.columns) == [
        "file",
        "predicted_class",
        "prob_circles",
        "prob_squares",
        "error",
    ]
    assert sorted(table.file) == sorted(
        [
            "broken.jpg",
            "circle_00000.jpg",
            "circle_00001.jpg",
            "more/square_00000.jpg",
            "more/square_00001.jpg",
            "more/square_00002.jpg",
        ]
    )
    broken = table.set_index("file").loc["broken.jpg"]
    assert "broken.jpg" in broken.error and pd.isna(broken.prob_circles)
    good = table[table.file != "broken.jpg"]
    assert good.error.isna().all()
    np.testing.assert_allclose(good.prob_circles + good.prob_squares, 1, rtol=1e-6)
    assert "6/6 images (100%)" in (binary_run / "logs/vgg16/predict.log").read_text()


@pytest.mark.workflow
def test_command_line_writes_the_same_table(binary_run, tmp_path):
    out = tmp_path / "out.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    command = [
        sys.executable,
        "-m",
        "tlflow.predict",
        str(results(binary_run, "model.keras")),
        str(binary_run / "new"),
        str(out),
        "--threads",
        "2",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'unreadable': 1" in done.stdout
    mine, workflow = (pd.read_csv(p) for p in (out, results(binary_run, "predictions/predictions.csv")))
    # Error messages name the file by the path given (absolute here, relative there).
    assert mine.pop("error").notna().sum() == workflow.pop("error").notna().sum() == 1
    pd.testing.assert_frame_equal(mine, workflow)


@pytest.mark.workflow
def test_missing_predict_folder_fails_before_any_job(binary_run):
    result = snakemake(binary_run, "--dry-run", "--config", "predict={images: nowhere}", check=False)
    assert result.returncode != 0
    assert "image folder 'nowhere' does not exist" in result.stdout + result.stderr


def test_metrics_of_a_known_table():
    classes = ["a", "b"]
    table = metrics.predictions_table(
        ["1", "2", "3", "4"],
        [0, 0, 1, 1],
        np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]]),
        classes,
    )
    found = metrics.metrics(table, classes)
    assert found["accuracy"] == 0.75
    assert found["per_class"]["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    assert found["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert found["roc_auc"] == 1.0  # every b scores above every a
    expected_loss = -np.mean(np.log([0.9, 0.4, 0.8, 0.7]))
    assert found["log_loss"] == pytest.approx(expected_loss)
    one_class = metrics.metrics(table[table.true_class == "a"], classes)
    assert one_class["roc_auc"] is None  # undefined, not a crash


def test_mistakes_are_ranked_by_confidence_and_an_empty_grid_still_draws(tmp_path):
    classes = ["a", "b", "c"]
    proba = np.array([[0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05], [0.3, 0.6, 0.1]])
    table = metrics.predictions_table(["w1", "w2", "right", "w3"], [0, 1, 0, 2], proba, classes)
    ranked = metrics.confident_mistakes(table, classes, most=2)
    assert list(ranked.file) == ["w2", "w1"]
    right = table[table.file == "right"]
    right.to_csv(tmp_path / "p.csv", index=False)
    shown = plots.mistakes(tmp_path / "p.csv", tmp_path, tmp_path / "m.png", "t")
    assert shown == 0 and (tmp_path / "m.png").read_bytes()[:8] == PNG_SIGNATURE
