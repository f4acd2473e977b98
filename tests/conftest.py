"""Shared fixtures: generated image folders and Snakemake runs in temporary folders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from tlflow import precision
from tlflow.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# The Snakemake runs the tests start (and their jobs) import this checkout's
# tlflow even where the venv's editable install is another checkout's (a venv
# shared by git worktrees); in a plain clone the two are the same.
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(REPO / "workflow"), os.environ.get("PYTHONPATH")])
)

# Small and fast: 32x32 images, random weights, a few epochs, two shards per split.
# Class counts are uneven and not multiples of the batch size (see synthetic.py).
COUNTS = {"train": 13, "validation": 7, "test": 5}
TINY_CONFIG = {
    "data_dir": "data",
    "image_size": [32, 32],
    "backbones": [{"name": "vgg16", "weights": "none"}],
    "extraction": {"shards": 2, "batch_size": 8, "threads": 2},
    "head": {"epochs": 3, "batch_size": 8, "hidden_units": [16], "threads": 2},
    "export": {"formats": []},  # tests/test_export.py turns them on
}


def split_features(run: Path, split: str, backbone: str = "vgg16", views: bool = False):
    """A split's feature rows as the rules read them: from its shards, through its manifest."""
    import contextlib

    from tlflow import split_rows
    from tlflow.readers import read_table

    folder = Path("results", backbone, "features", *(["views"] if views else []))
    with contextlib.chdir(run):  # the manifest names the shard files from the run's folder
        manifest = folder / f"{split}_manifest.csv"
        return split_rows.Rows([(manifest, sorted(set(read_table(manifest)["shard"])))]).read()


def write_split(folder: Path, split: str, rows, labels) -> tuple:
    """A split as the join leaves it: (manifest.csv, [shard .npy], labels.npy), one shard."""
    import numpy as np
    import pandas as pd

    shard, labels_npy, manifest = (folder / f"{split}{s}" for s in (".npy", "_labels.npy", ".csv"))
    np.save(shard, rows)
    np.save(labels_npy, labels)
    pd.DataFrame(
        {
            "file": [f"{split}/{i}.jpg" for i in range(len(rows))],
            "label": labels,
            "shard": str(shard),
            "row": range(len(rows)),
        }
    ).to_csv(manifest, index=False)
    return manifest, [shard], labels_npy


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` with its config.yaml; output captured as text."""
    command = [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        *args,
    ]
    return run(command, workdir, check)


# The test being set up or run: a test that runs Snakemake must say so.
_CURRENT: list = [None]


def pytest_runtest_setup(item):
    _CURRENT[0] = item


def run(command: list, cwd: Path, check: bool = True, env=None) -> subprocess.CompletedProcess:
    """Run ``command`` in ``cwd`` (with ``env``, else this environment), output captured
    as text; its tail shown if it fails."""
    item = _CURRENT[0]
    if item is not None and not item.get_closest_marker("workflow"):
        raise AssertionError(
            f"{item.nodeid} runs {Path(command[0]).name}: mark it @pytest.mark.workflow, "
            "so that `make unit` leaves it out"
        )
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
            f"{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
        )
    return result


def planned_jobs(workdir: Path, *args: str) -> Counter:
    """Jobs a dry run would run, by rule (the 'all' target left out)."""
    result = snakemake(workdir, "--dry-run", *args)
    return job_stats(result.stdout + result.stderr)


def job_stats(text: str) -> Counter:
    """Jobs by rule from Snakemake's 'Job stats' table (the 'all' target left out)."""
    if "Nothing to be done" in text:
        return Counter()
    table = text.split("Job stats:", 1)[1]
    counts = Counter()
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) not in ("all", "total"):
            counts[match.group(1)] = int(match.group(2))
    return counts


def make_workdir(path: Path, config: dict | None = None, counts=None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    make_dataset(path / "data", counts or COUNTS, classes=3, size=32)
    write_config(path, config or TINY_CONFIG)
    return path


@pytest.fixture
def blas_threads_of_fits(monkeypatch) -> list:
    """The BLAS thread counts each scikit-learn LogisticRegression fit runs under,
    one set per fit, as the test's fits happen."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info

    seen, fit = [], LogisticRegression.fit

    def recording(model, *args, **kwargs):
        seen.append({info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"})
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", recording)
    return seen


@pytest.fixture(scope="session", autouse=True)
def precision_cache(tmp_path_factory) -> Path:
    """One cache of `precision: auto`'s decisions for every run of the session
    (tlflow.precision): each tiny backbone spec is timed once, not in every folder."""
    path = tmp_path_factory.mktemp("precision") / "precision.json"
    os.environ[precision.CACHE_ENV] = str(path)
    return path


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """One complete run of the tiny workflow, shared read-only by many tests."""
    workdir = make_workdir(tmp_path_factory.mktemp("finished") / "run")
    snakemake(workdir)
    return workdir


@pytest.fixture
def finished_copy(finished_run, tmp_path) -> Path:
    """A private copy of the finished run (timestamps kept) for tests that change it."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, symlinks=True, copy_function=shutil.copy2)
    return copy


@pytest.fixture
def workdir(tmp_path) -> Path:
    return make_workdir(tmp_path / "run")
