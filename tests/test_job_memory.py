"""Each data job's memory request (tlflow.job_memory) against its peak, at two sizes.

The jobs' own code runs in a fresh process on stored rows of a real width (2 x 1,280,
as EfficientNet-Lite0's pooled features), at a small and a ten times larger size; its
peak resident memory must stay under the request computed from the same files, and
the request must not be far above it (a cluster packs jobs by what they ask).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tlflow import job_memory

CHANNELS = 1280
SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1}

# Runs one job's code on the files of ``folder`` and prints its peak (MB of 1e6 bytes).
JOB = """
import json, sys
from types import SimpleNamespace
from tlflow.logs import peak_mb
job, folder = sys.argv[1], sys.argv[2]
splits = json.loads(sys.argv[3])
files = {s: (f"{folder}/{s}_manifest.csv", [f"{folder}/{s}.npy"], f"{folder}/{s}_labels.npy") for s in splits}
if job == "train_head":
    from tlflow import head
    settings = json.loads(sys.argv[4])
    out = SimpleNamespace(**{k: f"{folder}/out.{k}" for k in ("model", "history", "candidates", "meta")})
    out.model += ".h5"
    spec = {"id": "b", "image_size": [8, 8], "precision": "float32", "preprocessing": "none", "features": "pooled"}
    head.train_head({s: files[s] for s in ("train", "validation")}, settings,
                        {"classes": ["a", "b"], "backbone": spec}, threads=2, outputs=out)
elif job == "evaluate":
    from tlflow import evaluate
    manifest, shards, labels = files["test"]
    model = f"{folder}/out.model.h5"
    evaluate.predict_split(shards, labels, manifest, model, ["a", "b"])
elif job == "join_split":
    from tlflow import features
    shard = [f"{folder}/shard.{k}" for k in ("npy", "csv", "skipped.csv")]
    features.join_split([shard], f"{folder}/labels.csv", *(f"{folder}/joined.{k}" for k in ("npy", "csv", "skipped.csv")))
else:
    from tlflow import audit
    audit.audit({s: (f[1], f[2], f[0]) for s, f in files.items()}, ["a", "b"],
                *(f"{folder}/out.{k}" for k in ("suspects", "duplicates", "embedding", "summary")),
                storage="pooled", threads=2, probe_rows=int(sys.argv[4]))
print(peak_mb())
"""


def _write_splits(folder: Path, images: int, seed: int = 0) -> None:
    """Pooled (2, CHANNELS) rows of two classes that a probe can tell apart, per split."""
    rng = np.random.default_rng(seed)
    for split, share in SPLITS.items():
        n = int(images * share)
        labels = np.arange(n) % 2
        rows = rng.normal(size=(n, 2, CHANNELS)).astype(np.float32)
        rows[:, :, :8] += labels[:, None, None]
        np.save(folder / f"{split}.npy", rows)
        np.save(folder / f"{split}_labels.npy", labels)
        pd.DataFrame(
            {
                "file": [f"{split}/{i}.jpg" for i in range(n)],
                "label": labels,
                "class": np.array(["a", "b"])[labels],
                "sha256": [f"{split}{i}" for i in range(n)],
                "shard": str(folder / f"{split}.npy"),
                "row": range(n),
            }
        ).to_csv(folder / f"{split}_manifest.csv", index=False)


# Below the larger size's training and validation images: its probes fit a subsample.
AUDIT_PROBE_ROWS = 10_000


def _peak(job: str, folder: Path, *extra: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", JOB, job, str(folder), json.dumps(list(SPLITS)), *extra],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return float(result.stdout.split()[-1])


@pytest.mark.parametrize("images", [2_000, 20_000])
def test_each_job_peaks_under_its_request(tmp_path, images):
    from test_head import DEFAULTS

    _write_splits(tmp_path, images)
    npy = {split: [tmp_path / f"{split}.npy"] for split in SPLITS}
    # The default grid, its mlp kept short: the linear probe's matrices are what grow.
    settings = {**DEFAULTS, "epochs": 2, "search_rows": 50_000}
    asked = {
        "train_head": job_memory.train_head(
            npy["train"], npy["validation"], settings["pooling"], "pooled", 2
        ),
        "audit": job_memory.audit([path for files in npy.values() for path in files], AUDIT_PROBE_ROWS),
    }
    peaks = {"train_head": _peak("train_head", tmp_path, json.dumps(settings))}
    asked["evaluate"] = job_memory.evaluate(npy["test"], tmp_path / "out.model.h5")  # the head just trained
    peaks["evaluate"] = _peak("evaluate", tmp_path)
    peaks["audit"] = _peak("audit", tmp_path, str(AUDIT_PROBE_ROWS))
    print({job: (round(peak), asked[job]) for job, peak in peaks.items()})
    for job, peak in peaks.items():
        assert peak < asked[job], (job, images, peak, asked[job])
        assert asked[job] < 2 * peak + 800, (job, images, peak, asked[job])


def _write_shard(folder: Path, images: int) -> list[Path]:
    """One extracted shard of ``images`` (tiny rows: its tables are what grows) and
    its split's labels listing; the tables the join reads."""
    from tlflow import features

    rows = np.random.default_rng(0).normal(size=(images, 4)).astype(np.float32)
    np.save(folder / "shard.npy", rows)
    files = [f"train/class_{i % 2}/photo_{i:07d}.jpg" for i in range(images)]
    listing = pd.DataFrame({"file": files, "sha256": [f"{i:064x}" for i in range(images)]})
    listing[features.CHECKSUM] = [features._row_checksum(row) for row in rows]
    listing.to_csv(folder / "shard.csv", index=False)
    pd.DataFrame(columns=["file", "error"]).to_csv(folder / "shard.skipped.csv", index=False)
    labels = pd.DataFrame({"file": files, "class": [f"class_{i % 2}" for i in range(images)]})
    labels.assign(label=np.arange(images) % 2).to_csv(folder / "labels.csv", index=False)
    return [folder / name for name in ("shard.csv", "shard.skipped.csv", "labels.csv")]


@pytest.mark.parametrize("images", [20_000, 200_000])
def test_the_join_peaks_under_its_request(tmp_path, images):
    tables = _write_shard(tmp_path, images)
    asked = job_memory.tables(tables, job_memory.JOIN_BYTES)
    peak = _peak("join_split", tmp_path)
    print(images, round(peak), asked)
    assert peak < asked < 2 * peak + 800, (images, peak, asked)


def test_row_files_read_the_headers(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 2, 5), np.float16))
    np.save(tmp_path / "b.npy", np.zeros((4, 2, 5), np.float16))
    files = job_memory.row_files([tmp_path / "a.npy", tmp_path / "b.npy"])
    assert files == (7, (2, 5), 2) and files.row_bytes == 20
    assert files.vector_width(["avg", "max"], "pooled") == 5
    np.save(tmp_path / "m.npy", np.zeros((2, 3, 3, 5), np.float32))
    assert job_memory.row_files([tmp_path / "m.npy"]).vector_width(["avg", "flatten"], "map") == 45


def test_the_evaluation_waits_for_its_head_and_asks_keras_memory_for_a_damaged_one(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 2, 5), np.float32))
    head = tmp_path / "head.h5"
    with pytest.raises(FileNotFoundError):  # Snakemake asks again once train_head wrote it
        job_memory.evaluate([tmp_path / "a.npy"], head)
    head.write_bytes(b"garbage")  # as a dry run sees a damaged head it does not move
    assert job_memory.evaluate([tmp_path / "a.npy"], head) >= job_memory.KERAS_MB
