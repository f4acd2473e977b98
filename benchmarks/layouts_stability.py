"""Benchmark: adding 10% more images to one folder of class folders (no split folders).

Puts 90% of the real cats-vs-dogs photos (catsdogs-2k, train and validation
together: 2,800) into one folder of class folders, `data/<class>/<image>`, and
builds the features of every split with EfficientNet-Lite0 at 128x128 (the
workflow splits the folder by content hash, 80/10/10 by default). Then it adds
the other 10% and builds them again. It prints the images per split and class of
each run, how many images were already there and changed split (the goal: none),
and how many images each run computed features for (the goal: the new ones only),
counted from the extraction logs.

    .venv/bin/python benchmarks/layouts_stability.py [--data ../shared/data/catsdogs-2k]
        [--model ../shared/models/efficientnet_lite0_notop.keras] [--workdir DIR]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from extraction import photos_parser  # benchmarks/ is the script's folder
from incremental import computed_since
from snakemake_command import workflow_command

REPO = Path(__file__).resolve().parents[1]
SPLITS = ["train", "validation", "test"]
BACKBONE = "efficientnet_lite0"


def run(workdir: Path) -> None:
    targets = [f"results/{BACKBONE}/features/{split}_manifest.csv" for split in SPLITS]
    subprocess.run(
        workflow_command(workdir, "--cores", "2", *targets),
        check=True,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def splits_of(workdir: Path) -> dict[str, str]:
    """Each image's split, from the joined manifests."""
    import pandas as pd

    return {
        file: split
        for split in SPLITS
        for file in pd.read_csv(workdir / f"results/{BACKBONE}/features/{split}_manifest.csv")["file"]
    }


def counts(where: dict[str, str]) -> str:
    return ", ".join(
        f"{split} {sum(s == split for s in where.values())} ("
        + ", ".join(
            f"{cls} {sum(s == split and f.startswith(cls + '/') for f, s in where.items())}"
            for cls in ("cats", "dogs")
        )
        + ")"
        for split in SPLITS
    )


def main() -> None:
    args = photos_parser(__doc__.splitlines()[0]).parse_args()
    source = Path(args.data)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tlflow-layouts-"))
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    photos = sorted(p for p in source.glob("*/*/*.jpg"))
    later = set(photos[::10])  # every tenth photo, added in the second run
    for photo in photos:
        if photo not in later:
            target = workdir / "data" / photo.parent.name / f"{photo.parent.parent.name}-{photo.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(photo.resolve())
    config = {
        "data_dir": "data",
        "image_size": [128, 128],
        "backbones": [{"name": str(Path(args.model).resolve()), "id": BACKBONE, "preprocessing": "none"}],
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    started = time.time()
    run(workdir)
    before = splits_of(workdir)
    first = computed_since(workdir, started)
    print(f"first run: {len(before)} images, {first} computed; {counts(before)}")
    for photo in later:
        target = workdir / "data" / photo.parent.name / f"{photo.parent.parent.name}-{photo.name}"
        target.symlink_to(photo.resolve())
    started = time.time()
    run(workdir)
    after = splits_of(workdir)
    moved = sum(after[file] != split for file, split in before.items())
    second = computed_since(workdir, started)
    print(
        f"after adding {len(later)} images: {len(after)} images, {second} computed, "
        f"{moved} of the {len(before)} earlier images changed split; {counts(after)}"
    )


if __name__ == "__main__":
    main()
