"""After a change, exactly the stages the change touched rerun (issue: incremental reruns)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    REPO,
    SNAKEMAKE,
    TINY_CONFIG,
    make_workdir,
    planned_jobs,
    run,
    snakemake,
    split_features,
    write_config,
)

# Every test here runs Snakemake (`make unit` leaves them out).
pytestmark = pytest.mark.workflow

FEATURE_RULES = {"extract_shard", "join_split"}


def _config(workdir):
    return yaml.safe_load((workdir / "config.yaml").read_text())


def _add_image(workdir, relpath, seed=11):
    from tlflow.synthetic import draw

    draw("circle", 32, np.random.default_rng(seed)).save(workdir / "data" / relpath)


def test_nothing_changed_nothing_runs(finished_copy):
    assert planned_jobs(finished_copy) == {}


def test_touched_images_rerun_nothing(finished_copy):
    later = time.time() + 60
    for image in (finished_copy / "data").rglob("*.jpg"):
        os.utime(image, (later, later))
    assert planned_jobs(finished_copy) == {}


@pytest.mark.parametrize(
    "change",
    [{"epochs": 4}, {"learning_rate": 0.01}, {"dropout": 0.2}, {"hidden_units": [8, 8]}],
)
def test_head_setting_reruns_the_head_and_what_follows_only(finished_copy, change):
    config = _config(finished_copy)
    config["head"].update(change)
    write_config(finished_copy, config)
    planned = planned_jobs(finished_copy)
    assert planned["train_head"] == 1 and planned["plot_curves"] == 1
    assert not FEATURE_RULES & set(planned)


@pytest.mark.parametrize("edit", ["remove", "replace"])
def test_removed_or_replaced_image_reruns_one_shard_of_one_split(finished_copy, edit):
    image = finished_copy / "data/validation/squares/square_00003.jpg"
    if edit == "remove":
        image.unlink()
    else:
        _add_image(finished_copy, image.relative_to(finished_copy / "data"))
    planned = planned_jobs(finished_copy)
    assert planned["extract_shard"] == 1 and planned["join_split"] == 1
    assert planned["train_head"] == 1  # validation data feed the head's history


def test_added_image_computes_only_that_image(finished_copy):
    features = finished_copy / "results/vgg16/features"
    untouched = {p: p.stat().st_mtime_ns for p in features.glob("validation*")}
    rows_before = len(split_features(finished_copy, "train"))
    _add_image(finished_copy, "train/circles/new_circle.jpg")
    planned = planned_jobs(finished_copy)
    assert planned["extract_shard"] == 1 and planned["join_split"] == 1

    snakemake(finished_copy)
    logs = sorted((finished_copy / "logs/vgg16/extract_shard/train").glob("*.log"))
    newest = max(logs, key=lambda p: p.stat().st_mtime_ns)
    assert "1 to compute" in newest.read_text()
    manifest = pd.read_csv(features / "train_manifest.csv")
    assert len(split_features(finished_copy, "train")) == len(manifest) == rows_before + 1
    assert "train/circles/new_circle.jpg" in set(manifest["file"])
    assert {p: p.stat().st_mtime_ns for p in features.glob("validation*")} == untouched
    assert planned_jobs(finished_copy) == {}


@pytest.fixture(scope="module")
def two_backbones_run(finished_run, tmp_path_factory):
    """The finished run plus a second backbone whose training features are built."""
    workdir = tmp_path_factory.mktemp("two") / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)
    config = _config(workdir)
    config["backbones"].append({"name": "vgg16", "weights": "none", "id": "other"})
    write_config(workdir, config)
    snakemake(workdir, "results/other/features/train_manifest.csv")
    return workdir


@pytest.fixture
def two_backbones(two_backbones_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(two_backbones_run, copy, symlinks=True)
    return copy


@pytest.mark.parametrize(
    # vgg19's preprocessing is vgg16's maths under another recorded name
    "change",
    [{"image_size": [48, 48]}, {"preprocessing": "vgg19"}, {"weights": "w.h5"}],
)
def test_backbone_change_reruns_all_its_features_and_no_other_backbones(two_backbones, change):
    workdir = two_backbones
    if "weights" in change:  # a dry run only checks that the file exists
        shutil.copy(REPO / "Snakefile", workdir / "w.h5")
    config = _config(workdir)
    config["backbones"][0].update(change)
    write_config(workdir, config)
    shards = sum(
        len(list((workdir / f"results/vgg16/features/shards/{split}").glob("*.skipped.csv")))
        for split in ("train", "validation")
    )
    planned = planned_jobs(workdir, "results/vgg16/head/head.h5")
    assert planned["extract_shard"] == shards and planned["join_split"] == 2
    assert planned_jobs(workdir, "results/other/features/train_manifest.csv") == {}


def test_precision_change_reruns_features(finished_copy):
    meta = json.loads((finished_copy / "results/vgg16/head/head.json").read_text())
    used = meta["backbone"]["precision"]
    config = _config(finished_copy)
    config["extraction"]["precision"] = "float32" if used == "bfloat16" else "bfloat16"
    write_config(finished_copy, config)
    assert planned_jobs(finished_copy)["extract_shard"] > 0


def test_run_killed_during_extraction_is_finished_after_the_unlock_it_names(tmp_path):
    workdir = make_workdir(tmp_path / "run", {**TINY_CONFIG, "extraction": {"shards": 1}})
    target = "results/vgg16/features/train_manifest.csv"
    command = [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "1",
        target,
    ]
    process = subprocess.Popen(
        command,
        cwd=workdir,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = workdir / "logs/vgg16/extract_shard/train/shard-0.log"
    deadline = time.monotonic() + 120
    while not (log.exists() and "to compute" in log.read_text()):
        assert process.poll() is None, "the run ended before extraction started"
        assert time.monotonic() < deadline, "extraction never started"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # as a power cut would: no clean-up at all
    process.wait()

    shard = workdir / "results/vgg16/features/shards/train/shard-0.npy"
    assert not shard.exists(), "a killed job left an output that looks complete"
    # Its locks stay (a run on another host would hold them just as well); the next
    # run stops and names the command that removes them.
    stopped = snakemake(workdir, target, check=False)
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0 and "Directory cannot be locked" in output
    unlock = shlex.split(re.search(r"remove them with `([^`]+)`", output)[1])
    assert unlock[0] == "snakemake" and unlock[-1] == "--unlock"
    run([SNAKEMAKE, *unlock[1:]], workdir)
    snakemake(workdir, target)  # the half-done job reruns (rerun-incomplete), no clean-up
    manifest = pd.read_csv(workdir / "results/vgg16/features/train_manifest.csv")
    assert (
        len(split_features(workdir, "train"))
        == len(manifest)
        == len(list((workdir / "data/train").rglob("*.jpg")))
    )
    assert planned_jobs(workdir, target) == {}
