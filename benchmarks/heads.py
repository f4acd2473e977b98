"""Benchmark: the head chosen on validation against the 2016 tutorial's head.

Runs the workflow on real photos with one backbone, first with the defaults (every
candidate head fitted on train and scored on validation, the best calibrated), then
with config/tutorial.yaml added (the tutorial's head, the same cached features),
and prints both side by side with the candidates' own scores and the head stage's
time (the candidates' fit seconds summed, TensorFlow's import excluded).

    .venv/bin/python benchmarks/heads.py DATA_DIR [--holdout 0.5] [--workdir DIR]

DATA_DIR holds train/ and validation/ (and test/ if it has one). --holdout moves
that share of each validation class into a test split (by sorted name, through
symbolic links), so that the test figures come from images that neither choosing
nor calibrating saw. Backbone: ../shared/models/efficientnet_lite0_notop.keras at
128x128 unless --backbone names another .keras file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from snakemake_command import workflow_command

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BACKBONE = REPO.parent / "shared/models/efficientnet_lite0_notop.keras"


def link_data(source: Path, target: Path, holdout: float) -> list[str]:
    """Mirror ``source`` with symbolic links; ``holdout`` of validation becomes test."""
    splits = sorted(p.name for p in source.iterdir() if p.is_dir())
    for split in splits:
        for cls in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            files = sorted(cls.iterdir())
            cut = round(len(files) * holdout) if split == "validation" and holdout else 0
            for part, names in (("test", files[:cut]), (split, files[cut:])):
                if not names:
                    continue
                folder = target / part / cls.name
                folder.mkdir(parents=True, exist_ok=True)
                for f in names:
                    os.symlink(f.resolve(), folder / f.name)
    return sorted(p.name for p in target.iterdir())


def run(workdir: Path, *configs: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        workflow_command(workdir, "--cores", "2", configs=configs),
        check=True,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def figures(results: Path) -> dict:
    head = json.loads((results / "head/head.json").read_text())["head"]
    candidates = pd.read_csv(results / "head/candidates.csv")
    metrics = json.loads((results / "evaluation/metrics.json").read_text())
    return {
        "head": f"{head['selected']['kind']} ({head['selected']['pooling']})",
        "candidates": head["candidates"],
        "val accuracy": head["validation"]["accuracy"],
        "val log loss": head["validation"]["log_loss"],
        "val log loss uncal.": head["validation"]["log_loss_before_calibration"],
        "val ECE": head["validation"]["ece"],
        "val ECE uncal.": head["validation"]["ece_before_calibration"],
        "temperature": head["temperature"],
        f"{metrics['split']} accuracy": metrics["accuracy"],
        f"{metrics['split']} log loss": metrics["log_loss"],
        f"{metrics['split']} ECE": metrics["ece"],
        "head seconds": float(candidates["fit_seconds"].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--holdout", type=float, default=0.0)
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tlflow-heads-"))
    shutil.rmtree(workdir / "data", ignore_errors=True)
    splits = link_data(args.data_dir.resolve(), workdir / "data", args.holdout)
    config = {
        "data_dir": "data",
        "splits": ["train", "validation", *(["test"] if "test" in splits else [])],
        "image_size": [128, 128],
        "backbones": [{"name": str(args.backbone.resolve()), "preprocessing": "none", "id": "backbone"}],
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"workdir {workdir}; splits {config['splits']}; CPU: {cpu_name()}")
    results = workdir / "results/backbone"
    rows = {}
    wall = run(workdir, workdir / "config.yaml")
    rows["default (chosen on validation)"] = figures(results)
    candidates = pd.read_csv(results / "head/candidates.csv")
    print(f"first run (extraction included): {wall:.1f} s wall")
    run(workdir, workdir / "config.yaml", REPO / "config/tutorial.yaml")
    rows["tutorial preset"] = figures(results)
    table = pd.DataFrame(rows)
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 200):
        print(candidates.drop(columns=["selected"]).to_string(index=False))
        print(table.to_string())
    best = candidates["val_accuracy"].max()
    chosen = rows["default (chosen on validation)"]
    print(
        f"default val accuracy {chosen['val accuracy']:.4f} vs best single candidate {best:.4f}: "
        f"{'met' if chosen['val accuracy'] >= best - 0.005 else 'NOT met'} (goal: >= best - 0.5 pt)"
    )
    print(
        f"default val log loss {chosen['val log loss']:.4f} (goal <= 0.15), "
        f"ECE {chosen['val ECE']:.4f} (goal <= 0.03), head stage {chosen['head seconds']:.1f} s (goal <= 15 s)"
    )


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            flags = Path("/proc/cpuinfo").read_text()
            bf16 = "amx_bf16" in flags or "avx512_bf16" in flags
            return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores, bf16 {'yes' if bf16 else 'no'})"
    return "unknown"


if __name__ == "__main__":
    main()
