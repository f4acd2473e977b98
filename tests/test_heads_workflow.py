"""End to end: the head chosen on validation, calibrated, pinned, the tutorial preset,
backbones compared; the test split never read to choose; resources rerun nothing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY_CONFIG, make_workdir, planned_jobs, snakemake, split_features, write_config

# Every test here runs Snakemake (`make unit` leaves them out).
pytestmark = pytest.mark.workflow

RESULTS = "results/vgg16"


def _config(workdir):
    return yaml.safe_load((workdir / "config.yaml").read_text())


def _weights(path) -> list[np.ndarray]:
    import keras

    return keras.models.load_model(path, compile=False).get_weights()


def test_default_run_keeps_the_best_validated_head_calibrated(finished_run):
    table = pd.read_csv(finished_run / RESULTS / "head/candidates.csv")
    meta = json.loads((finished_run / RESULTS / "head/head.json").read_text())["head"]
    assert set(table["kind"]) == {"linear", "mlp"} and table["selected"].sum() == 1
    winner = table[table["selected"]].iloc[0]
    most_right = table[table["val_accuracy"] == table["val_accuracy"].max()]
    assert winner["val_log_loss"] == most_right["val_log_loss"].min()  # criterion: accuracy
    assert meta["selected"]["candidate"] == winner["candidate"] and meta["candidates"] == len(table)
    assert (
        meta["temperature"] > 0
        and meta["validation"]["log_loss"] <= meta["validation"]["log_loss_before_calibration"] + 1e-9
    )
    metrics = json.loads((finished_run / RESULTS / "evaluation/metrics.json").read_text())
    assert metrics["calibration"]["temperature"] == meta["temperature"]
    assert {"ece_before", "ece_after", "log_loss_before", "log_loss_after"} <= set(metrics["calibration"])
    assert metrics["log_loss"] == pytest.approx(metrics["calibration"]["log_loss_after"], abs=1e-6)
    bins = pd.read_csv(finished_run / RESULTS / "evaluation/reliability.csv")
    assert set(bins["probabilities"]) == {"before calibration", "after calibration"}
    assert bins.groupby("probabilities")["images"].sum().tolist() == [metrics["images"]] * 2
    assert (finished_run / RESULTS / "evaluation/reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_test_split_is_never_read_to_fit_choose_or_calibrate(finished_copy):
    before = _weights(finished_copy / RESULTS / "head/head.h5")
    chosen = pd.read_csv(finished_copy / RESULTS / "head/candidates.csv").drop(columns="fit_seconds")
    for test in (finished_copy / RESULTS / "features/shards/test").glob("shard-*.npy"):
        features = np.load(test)
        np.save(test, np.random.default_rng(0).normal(size=features.shape).astype(np.float32) * 1e3)
    # --until: the head alone (the model group would take the evaluation along).
    snakemake(finished_copy, "--forcerun", "train_head", "--until", "train_head")
    after = _weights(finished_copy / RESULTS / "head/head.h5")
    assert len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))
    again = pd.read_csv(finished_copy / RESULTS / "head/candidates.csv").drop(columns="fit_seconds")
    pd.testing.assert_frame_equal(chosen, again)


@pytest.mark.parametrize(
    "resource",
    [
        ("head", "threads", 1),
        ("evaluation", "threads", 1),
        ("extraction", "threads", 1),
        ("extraction", "mem_mb", 999),
        ("head", "gpus", 1),
        ("predict", "threads", 1),
    ],
)
def test_a_changed_resource_plans_no_job(finished_copy, resource):
    section, key, value = resource
    config = _config(finished_copy)
    config.setdefault(section, {})[key] = value
    write_config(finished_copy, config)
    assert planned_jobs(finished_copy) == {}


def test_search_off_and_the_tutorial_preset_fit_one_head_on_the_maps(finished_copy):
    preset = yaml.safe_load((REPO / "config/tutorial.yaml").read_text())
    config = _config(finished_copy)
    config["head"] = {**config["head"], **preset["head"], "epochs": 3}
    write_config(finished_copy, config)
    planned = planned_jobs(finished_copy)
    # Stored pooled until now: flatten needs the maps, of every shard of every split.
    assert planned["train_head"] == 1 and planned["extract_shard"] == 3 * 2
    assert split_features(finished_copy, "train").shape[1:] == (2, 512)
    snakemake(finished_copy)
    assert split_features(finished_copy, "train").shape[1:] == (1, 1, 512)
    table = pd.read_csv(finished_copy / RESULTS / "head/candidates.csv")
    meta = json.loads((finished_copy / RESULTS / "head/head.json").read_text())["head"]
    assert len(table) == 1 and table["kind"][0] == "mlp" and table["pooling"][0] == "flatten"
    assert meta["temperature"] == 1.0 and meta["best_epoch"] == meta["epochs_run"] == 3
    history = pd.read_csv(finished_copy / RESULTS / "head/history.csv")
    assert len(history) == 3  # no early stopping: every epoch, the last one kept


def test_pooled_storage_gives_the_head_of_the_stored_maps(tmp_path):
    """VGG16 at 64x64 (2x2x512 maps): linear heads fitted on pooled rows and on the
    whole maps, pooled as they are read, score and predict alike (float tolerance)."""
    import keras

    from tlflow.probabilities import predict_proba

    config = {
        **TINY_CONFIG,
        "image_size": [64, 64],
        "splits": ["train", "validation"],
        "extraction": {**TINY_CONFIG["extraction"], "shards": 1, "precision": "float32"},
        "head": {**TINY_CONFIG["head"], "kind": "linear", "criterion": "log_loss"},
    }
    workdir = make_workdir(tmp_path / "run", config, {"train": 13, "validation": 7})
    target, found = f"{RESULTS}/head/head.json", {}
    for storage in ("auto", "map"):
        write_config(workdir, {**config, "extraction": {**config["extraction"], "features": storage}})
        if storage == "map":  # a change of what is stored: the features are computed again
            assert planned_jobs(workdir, target) == {"extract_shard": 2, "join_split": 2, "train_head": 1}
        snakemake(workdir, target)
        validation = split_features(workdir, "validation")
        head = keras.models.load_model(workdir / RESULTS / "head/head.h5", compile=False)
        table = pd.read_csv(workdir / RESULTS / "head/candidates.csv")
        found[storage] = validation.shape[1:], table, predict_proba(head, validation)
    (pooled_shape, pooled, pooled_proba), (map_shape, maps, map_proba) = found["auto"], found["map"]
    assert pooled_shape == (2, 512) and map_shape == (2, 2, 512)
    assert len(pooled) == 2 * 4 and pooled["selected"].tolist() == maps["selected"].tolist()
    np.testing.assert_allclose(pooled["val_log_loss"], maps["val_log_loss"], atol=1e-5)
    np.testing.assert_allclose(pooled_proba, map_proba, atol=1e-5)


def test_two_backbones_are_ranked_in_one_table(finished_copy):
    config = _config(finished_copy)
    config["backbones"].append({"name": "vgg16", "weights": "none", "id": "second", "image_size": [48, 48]})
    write_config(finished_copy, config)
    snakemake(finished_copy)
    table = pd.read_csv(finished_copy / "results/comparison.csv")
    assert sorted(table["backbone"]) == ["second", "vgg16"] and list(table["rank"]) == [1, 2]
    # Ranked as heads are chosen (criterion accuracy): most right first, then lower log loss.
    keys = list(zip(-table["validation_accuracy"], table["validation_log_loss"]))
    assert keys == sorted(keys)
    assert (table["evaluation_split"] == "test").all() and (table["extraction_seconds"] > 0).all()
    assert (table["head_seconds"] > 0).all()
    for row in table.itertuples():
        meta = json.loads((finished_copy / f"results/{row.backbone}/head/head.json").read_text())
        assert row.validation_log_loss == pytest.approx(meta["head"]["validation"]["log_loss"])
    assert (finished_copy / "results/comparison.png").read_bytes()[:4] == b"\x89PNG"
