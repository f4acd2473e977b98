"""Benchmark: what a rerun costs after adding 1% new images to one training class.

Builds a generated dataset, runs the whole workflow, adds 1% new images to one
class of the training split, reruns, and prints how many images had their
features computed in each run and the rerun's wall time as a fraction of the
first run's. Goals (issue 3): at most 5% of the images, at most 15% of the time.

    .venv/bin/python benchmarks/incremental.py [--images 2000] [--image-size 150]
        [--photo-size 64] [--backbone vgg16 | efficientnet_lite0] [--workdir DIR]

Uses VGG16 with random weights (no download), or with --backbone
efficientnet_lite0 the offline EfficientNet-Lite0 of ../shared/models (ImageNet
weights), and every other setting at its default, so it measures the workflow as a
user gets it. --image-size sets the config's image_size (a smaller one makes large
image counts affordable), --photo-size the generated images' side.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from extraction import BACKBONES
from snakemake_command import workflow_command
from tlflow.synthetic import draw, make_dataset

REPO = Path(__file__).resolve().parents[1]


def run_workflow(workdir: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        workflow_command(workdir),
        check=True,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def computed_since(workdir: Path, since: float) -> int:
    """Images whose features were computed by extraction jobs that ran after ``since``."""
    total = 0
    for log in (workdir / "logs").rglob("extract_shard/**/*.log"):
        if log.stat().st_mtime >= since:
            match = re.search(r"(\d+) to compute", log.read_text())
            total += int(match.group(1)) if match else 0
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="dataset size (all splits)")
    parser.add_argument("--image-size", type=int, default=150, help="config image_size (square)")
    parser.add_argument("--photo-size", type=int, default=64, help="side of the generated images")
    parser.add_argument("--backbone", choices=["vgg16", "efficientnet_lite0"], default="vgg16")
    parser.add_argument("--workdir", help="folder to work in (default: a temporary one)")
    args = parser.parse_args()
    backbone = {"name": "vgg16", "weights": "none"} if args.backbone == "vgg16" else BACKBONES[args.backbone]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tlflow-incremental-"))
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"working in {workdir}")

    per_class = args.images // 2 // 10  # 2 classes; train 80%, validation 10%, test 10%
    counts = {"train": 8 * per_class, "validation": per_class, "test": per_class}
    written = make_dataset(workdir / "data", counts, classes=2, size=args.photo_size)
    total = sum(sum(c.values()) for c in written.values())
    (workdir / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "data_dir": "data",
                "image_size": [args.image_size, args.image_size],
                "backbones": [backbone],
            }
        )
    )

    start = time.time()
    first = run_workflow(workdir)
    first_computed = computed_since(workdir, start)

    added = max(1, round(total / 100))
    rng = np.random.default_rng(99)
    for n in range(added):
        draw("circle", args.photo_size, rng).save(workdir / "data/train/circles" / f"added_{n:04d}.jpg")
    start = time.time()
    rerun = run_workflow(workdir)
    rerun_computed = computed_since(workdir, start)

    print(f"images: {total} in the first run, {added} added to train/circles (1%)")
    print("run     wall s   features computed")
    print(f"first   {first:7.1f}   {first_computed}")
    print(f"rerun   {rerun:7.1f}   {rerun_computed}")
    share = rerun_computed / (total + added)
    print(
        f"rerun computed {100 * share:.2f}% of the images (goal <= 5%): "
        f"{'met' if share <= 0.05 else 'NOT met'}"
    )
    print(
        f"rerun took {100 * rerun / first:.1f}% of the first run's time (goal <= 15%): "
        f"{'met' if rerun / first <= 0.15 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
