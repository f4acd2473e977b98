"""Bookkeeping that does not grow with the images (issue 12).

Images are no job's inputs: each shard's manifest is. So read-only commands write
nothing under results/, resources never rerun a job, the console never lists
images, any file name works, and a job re-reading the workflow (as a cluster job
does) neither walks data_dir nor reads images other than its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    REPO,
    TINY_CONFIG,
    job_stats,
    make_workdir,
    planned_jobs,
    split_features,
    snakemake,
    write_config,
)

from tlflow.manifest import read_listing

AUDIT = REPO / "tests/audit"


def _config(workdir):
    return yaml.safe_load((workdir / "config.yaml").read_text())


def _state(folder):
    """Every file below ``folder`` with its size and mtime: what 'unchanged' means."""
    return {
        p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def _redraw(path, seed=3):
    from tlflow.synthetic import draw

    draw("circle", 32, np.random.default_rng(seed)).save(path)


@pytest.mark.workflow
def test_read_only_commands_write_nothing_and_dry_run_plans_the_real_run(finished_copy, tmp_path):
    _redraw(finished_copy / "data/train/squares/square_00001.jpg")  # an edited image
    before = _state(finished_copy / "results")
    planned = planned_jobs(finished_copy)
    for command in (["--lint"], ["--summary"], ["--report", str(tmp_path / "report.html")]):
        snakemake(finished_copy, *command)
    assert _state(finished_copy / "results") == before
    assert planned["publish_manifest"] == planned["extract_shard"] == 1
    assert planned["train_head"] == 1
    result = snakemake(finished_copy)
    assert job_stats(result.stdout + result.stderr) == planned


@pytest.mark.workflow
@pytest.mark.parametrize(
    "change",
    [
        {"extraction": {"threads": 1}},
        {"extraction": {"mem_mb": 9000}},
        {"extraction": {"gpus": 1}},
        {"head": {"threads": 1}},
        {"head": {"gpus": 1}},
        ["--set-threads", "extract_shard=1", "train_head=1", "predict=1"],
        ["--set-resources", "extract_shard:runtime=999", "train_head:mem_mb=9000"],
        ["--set-resources", "evaluate:runtime=999", "deploy_model:mem_mb=9000"],
    ],
)
def test_resource_settings_rerun_nothing(finished_copy, change):
    if isinstance(change, list):
        assert planned_jobs(finished_copy, *change) == {}
        return
    config = _config(finished_copy)
    for section, values in change.items():
        config[section].update(values)
    write_config(finished_copy, config)
    assert planned_jobs(finished_copy) == {}


# Names a file system allows and a shell or a format string would not.
ODD_NAMES = [
    "photo{1}.jpg",
    "{k}.jpg",
    'it\'s "quoted".jpg',
    "$(touch PWNED_dollar).jpg",
    "`touch PWNED_tick`.jpg",
    "with space, comma.jpg",
    "-leading-dash.jpg",
    "café ü 日本.jpg",
    "new\nline.jpg",
]


def _rename_to_odd(folder):
    """Give the first images below ``folder`` the odd names; return the new paths."""
    images = sorted(p for p in folder.rglob("*.jpg"))
    renamed = []
    for image, name in zip(images, ODD_NAMES):
        target = image.with_name(name)
        image.rename(target)
        renamed.append(target)
    return renamed


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    """A full run on images with odd names in every split and in the folder to predict."""
    from tlflow.synthetic import make_dataset

    workdir = tmp_path_factory.mktemp("odd") / "run"
    config = {**TINY_CONFIG, "predict": {"images": "new"}}
    make_workdir(workdir, config, {"train": 10, "validation": 7, "test": 5})
    for split in ("train", "validation", "test"):
        _rename_to_odd(workdir / "data" / split)
    make_dataset(workdir / "new", {"x": 4}, classes=2, seed=5)
    _rename_to_odd(workdir / "new")
    result = snakemake(workdir)
    return workdir, result.stdout + result.stderr


def _images(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))


@pytest.mark.workflow
def test_any_file_name_is_read_listed_and_predicted(odd_run):
    workdir, _ = odd_run
    features = workdir / "results/vgg16/features"
    for split in ("train", "validation", "test"):
        on_disk = [f"{split}/{f}" for f in _images(workdir / "data" / split)]
        listed = read_listing(features / f"{split}_manifest.csv")
        assert sorted(row["file"] for row in listed) == on_disk
        assert len(split_features(workdir, split)) == len(on_disk)
    odd_listed = {row["file"].rpartition("/")[2] for row in read_listing(features / "train_manifest.csv")}
    assert {"photo{1}.jpg", "new\nline.jpg", "café ü 日本.jpg"} & odd_listed
    predictions = pd.read_csv(workdir / "results/vgg16/predictions/predictions.csv", dtype=str)
    assert sorted(predictions["file"]) == _images(workdir / "new")
    assert set(ODD_NAMES) <= {f.rpartition("/")[2] for f in predictions["file"]}
    assert predictions["error"].isna().all()
    # Nothing in a name was run by a shell.
    assert not [p for p in workdir.rglob("PWNED*")] and not list(REPO.glob("PWNED*"))
    assert planned_jobs(workdir) == {}


@pytest.mark.workflow
def test_images_to_predict_rerun_the_predictions_when_edited_only(odd_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(odd_run[0], workdir, symlinks=True, copy_function=shutil.copy2)
    image = workdir / "new" / _images(workdir / "new")[0]
    os.utime(image, (image.stat().st_atime, image.stat().st_mtime + 60))
    assert planned_jobs(workdir) == {}
    _redraw(image)
    assert planned_jobs(workdir) == {"publish_manifest": 1, "predict": 1}


@pytest.mark.workflow
def test_console_names_no_image(odd_run):
    workdir, console = odd_run
    assert "extract_shard: backbone vgg16, split train, shard 0" in console
    for folder in (workdir / "data", workdir / "new"):
        for image in _images(folder):
            assert image.rpartition("/")[2] not in console, image


@pytest.mark.workflow
def test_failed_job_names_the_bad_file_only(odd_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(odd_run[0], workdir, symlinks=True)
    broken = workdir / "data/validation" / _images(workdir / "data/validation")[-1]
    broken.write_bytes(b"not an image")
    result = snakemake(workdir, "results/vgg16/features/validation_manifest.csv", check=False)
    console = result.stdout + result.stderr
    assert result.returncode != 0
    assert "could not be decoded" in console and broken.name in console
    others = [f for f in _images(workdir / "data") if f.rpartition("/")[2] != broken.name]
    assert not [f for f in others if f.rpartition("/")[2] in console]


def test_a_name_that_is_not_utf8_is_named_with_the_fix(tmp_path):
    from tlflow.images import DatasetError, scan
    from tlflow.synthetic import make_dataset

    make_dataset(tmp_path, {"train": 1, "validation": 1}, classes=2)
    folder = os.fsencode(tmp_path / "train/circles")
    os.rename(os.path.join(folder, b"circle_00000.jpg"), os.path.join(folder, b"caf\xe9.jpg"))
    with pytest.raises(DatasetError, match="not valid UTF-8.*caf\ufffd.jpg.*rename"):
        scan(tmp_path, ["train", "validation"])


def _audit(workdir, *args, log):
    """Run snakemake with the audit hook; return its process id and {(event, pid, path)}.

    Its jobs' scripts run as processes of their own, with other ids.
    """
    # The audit hook, then this checkout's tlflow (conftest.py).
    paths = os.pathsep.join([str(AUDIT), os.environ["PYTHONPATH"]])
    env = {**os.environ, "PYTHONPATH": paths, "TLFLOW_AUDIT": str(log)}
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "1",
        *args,
    ]
    process = subprocess.Popen(
        command, cwd=workdir, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = process.communicate()
    assert process.returncode == 0, output[-5000:]
    events = {tuple(line.split("\t", 2)) for line in log.read_text().splitlines()}
    return str(process.pid), events


def _below(events, folder, event=None):
    prefix = str(folder) + os.sep
    return {path for e, _, path in events if path.startswith(prefix) and event in (None, e)}


@pytest.mark.workflow
def test_run_with_nothing_to_do_opens_no_image(finished_copy, tmp_path):
    # A copy has new inodes: its first run re-hashes the images (as after a
    # touch) and remembers them; from then on, nothing to do reads no image.
    assert planned_jobs(finished_copy) == {}
    _, events = _audit(finished_copy, log=tmp_path / "audit.tsv")
    assert not _below(events, finished_copy / "data", "open")


def _remote_job(workdir, target, log):
    """Run one job as a cluster job does: Snakemake re-reads the workflow for it."""
    rule = target.split(":")[0]
    return _audit(
        workdir,
        "--target-jobs",
        target,
        "--allowed-rules",
        rule,
        "--mode",
        "remote",
        "--force",
        log=log,
    )


@pytest.mark.workflow
def test_a_cluster_job_reads_its_own_images_only(finished_copy, tmp_path):
    """A job re-reading the workflow (what a SLURM job runs) lists no image folder."""
    target = "extract_shard:backbone=vgg16,split=validation,k=1"
    pid, events = _remote_job(finished_copy, target, tmp_path / "audit.tsv")
    data = finished_copy / "data"
    listed = _below(events, data, "os.scandir") | _below(events, data, "os.listdir")
    assert listed <= {str(data / "train")}  # the class names, one directory listing
    snakemake_itself = {e for e in events if e[1] == pid}
    assert not _below(snakemake_itself, data, "open")
    # Its script may read the shard's images (none when all are cached).
    shard = read_listing(finished_copy / "results/manifests/validation/shard-1.csv")
    assert _below(events, data, "open") <= {str(data / row["file"]) for row in shard}


@pytest.mark.workflow
def test_a_cluster_job_does_not_hash_the_backbone_file_again(tmp_path):
    import keras

    config = {**TINY_CONFIG, "backbones": [{"name": "mean.keras", "preprocessing": "none"}]}
    config["extraction"] = {"shards": 1, "threads": 1}
    workdir = make_workdir(tmp_path / "run", config, {"train": 2, "validation": 1, "test": 1})
    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs)).save(workdir / "mean.keras")
    snakemake(workdir, "results/manifests/train/shard-0.csv")  # hashed once, here
    pid, events = _remote_job(workdir, "extract_shard:backbone=mean,split=train,k=0", tmp_path / "audit.tsv")
    model = str(workdir / "mean.keras")
    assert [e for e in events if e[0] == "open" and e[2] == model]  # the job loaded it
    assert not [e for e in events if e[0] == "open" and e[2] == model and e[1] == pid]
