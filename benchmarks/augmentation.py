"""Benchmark: cached augmented views and test-time augmentation on real photos.

Extracts the originals once, then K = 2, 4, 8 augmented views of each training image
through the feature cache (K = 4 computes views 2 and 3 only, and so on), so the
extraction seconds of each K are the sum of its steps. Then fits the default head
(every candidate, chosen and calibrated on validation originals) with each head
seed on the originals plus K views, and scores it on validation without and with
test-time augmentation (the mirror image averaged in), and on the held-out test
split if --holdout makes one. Also the largest K with its views stored as float16.

    .venv/bin/python benchmarks/augmentation.py DATA_DIR [--views 0 2 4 8]
        [--seeds 42 43 44] [--holdout 0.5] [--workdir DIR] [--rerun]

--rerun instead runs the workflow with 'augmentation: views: 4', adds 1% new
training images (mirrored and rotated copies: new content) and reruns, counting
from the extraction logs the rows computed in the rerun. Backbone:
../shared/models/efficientnet_lite0_notop.keras at 128x128.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from heads import DEFAULT_BACKBONE, REPO, cpu_name, link_data, run
from tlflow import backbones, features, head, images, selection, test_time, views
from tlflow.manifest import HashCache, label_rows, manifest_text, shard_rows
from tlflow.probabilities import logits


def defaults() -> dict:
    """The config with every default of the schema filled in."""
    from snakemake.utils import validate

    config = {"data_dir": "data"}
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    return config


class Extractor:
    """One split's manifest, extracted (originals or a view set) into ``workdir``."""

    def __init__(self, workdir: Path, spec: dict, dataset, hashes: HashCache):
        self.workdir, self.spec, self.dataset, self.hashes = workdir, spec, dataset, hashes

    def __call__(self, split: str, name: str, view_set=None):
        manifest = self.workdir / f"{split}.manifest.csv"
        manifest.write_text(manifest_text(shard_rows(self.dataset, split, 1, 0, self.hashes)))
        out = [self.workdir / "out" / f"{name}{s}" for s in (".npy", ".csv", ".skipped.csv")]
        out[0].parent.mkdir(exist_ok=True)
        started = time.perf_counter()
        counts = features.extract_shard(
            manifest,
            self.workdir / "data",
            self.spec,
            *out,
            self.workdir / "cache",
            threads=os.cpu_count(),
            views=view_set,
        )
        seconds = time.perf_counter() - started
        print(f"  {name}: {counts}, {seconds:.1f} s, load average {os.getloadavg()[0]:.1f}", flush=True)
        return np.load(out[0], mmap_mode="r"), seconds, out[0].stat().st_size


def labels_of(dataset, split: str, repeat: int = 1) -> np.ndarray:
    """Labels in the order of the split's shard rows (by file), each ``repeat`` times."""
    label = {file: label for file, _, label in label_rows(dataset, split)}
    return np.repeat([label[row["file"]] for row in shard_rows(dataset, split, 1, 0)], repeat)


def fit(train, validation, settings: dict, seed: int, storage: str):
    """The default head on ``train``: (model, temperature, validation scores, seconds)."""
    started = time.perf_counter()
    settings = {**settings, "seed": seed}
    table, winner, state = head.select(train, validation, 2, settings, storage)
    candidate = {k: v for k, v in table[winner].items() if k in selection.GRID_KEYS}
    model, temperature, scores = head.finalise(
        list(train[0].shape[1:]), 2, settings, candidate, state, validation[1], storage
    )
    return (
        model,
        temperature,
        scores,
        time.perf_counter() - started,
        f"{candidate['kind']}/{candidate['pooling']}",
    )


def score(model, temperature, sets, y) -> dict:
    """Accuracy and log loss of the mean probabilities over the feature arrays ``sets``."""
    z = [logits(model, np.asarray(x)) for x in sets]
    proba = test_time.probabilities(z, temperature)
    return {
        "accuracy": float(np.mean(proba.argmax(axis=1) == y)),
        "log_loss": test_time.log_loss(z, y, temperature),
    }


def compare(args, workdir: Path) -> None:
    config = defaults()
    dataset = images.scan(
        workdir / "data", [s for s in ("train", "validation", "test") if (workdir / "data" / s).is_dir()]
    )
    spec = backbones.resolve({"name": str(args.backbone), "preprocessing": "none"}, [128, 128], "float32")
    extract = Extractor(workdir, spec, dataset, HashCache(workdir / "hashes.json"))
    splits = list(dataset.images)
    print("extraction (threads: all cores):")
    originals = {split: extract(split, split) for split in splits}
    y = {split: labels_of(dataset, split) for split in splits}
    flips = {
        split: extract(split, f"{split}-flip", views.test_time_views({"test_time": ["flip"]}))
        for split in splits
        if split != "train"
    }
    view_features, spent = {}, 0.0
    for k in sorted(set(args.views) - {0}):
        section = {**config["augmentation"], "views": k, "dtype": "float32"}  # float16: cast below
        array, seconds, size = extract("train", f"train-views-{k}", views.training_views(section))
        spent += seconds
        view_features[k] = (array, spent, size)
    n_train = len(y["train"])
    validation = (originals["validation"][0], y["validation"])
    rows = []
    cases = [(k, "float32") for k in sorted(set(args.views))] + [(max(args.views), "float16")]
    for k, stored in cases:
        x = originals["train"][0]
        if k:
            extra = np.asarray(view_features[k][0])
            extra = extra.astype(np.float16).astype(np.float32) if stored == "float16" else extra
            x = np.concatenate([np.asarray(x), extra])
        train = (x, np.concatenate([y["train"], labels_of(dataset, "train", k)]) if k else y["train"])
        found = []
        for seed in args.seeds:
            model, temperature, scores, seconds, chosen = fit(
                train, validation, config["head"], seed, spec["features"]
            )
            result = {"val acc": scores["accuracy"], "val log loss": scores["log_loss"], "head s": seconds}
            for split in flips:
                tta = score(model, temperature, [originals[split][0], flips[split][0]], y[split])
                result[f"{split} acc TTA"], result[f"{split} log loss TTA"] = tta["accuracy"], tta["log_loss"]
                if split == "test":
                    plain = score(model, temperature, [originals[split][0]], y[split])
                    result["test acc"], result["test log loss"] = plain["accuracy"], plain["log_loss"]
            print(f"  K={k} {stored} seed {seed}: {chosen} {result}", flush=True)
            found.append(result)
        size = view_features[k][2] // (2 if stored == "float16" else 1) if k else 0
        rows.append(
            {
                "K": k,
                "views stored": stored,
                "extraction s (views)": view_features[k][1] if k else 0.0,
                "views MiB": size / 2**20,
                "bytes/view": size / (k * n_train) if k else 0,
                **{
                    key: f"{np.mean([r[key] for r in found]):.4f} ± {np.std([r[key] for r in found]):.4f}"
                    for key in found[0]
                },
            }
        )
    import pandas as pd

    seconds = {split: f"{originals[split][1]:.1f}" for split in splits}
    print(
        f"originals: extraction s {seconds}; flip views s "
        f"{ {split: round(flips[split][1], 1) for split in flips} }"
    )
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(pd.DataFrame(rows).to_string(index=False))


def rerun(args, workdir: Path) -> None:
    """Run with 4 views, add 1% new training images, rerun; rows computed from the logs."""
    config = {
        "data_dir": "data",
        "splits": ["train", "validation"],
        "image_size": [128, 128],
        "backbones": [{"name": str(args.backbone), "preprocessing": "none", "id": "backbone"}],
        "augmentation": {"views": 4},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    print(f"first run: {run(workdir, workdir / 'config.yaml'):.1f} s")
    from PIL import Image

    folder = workdir / "data/train" / sorted(p.name for p in (workdir / "data/train").iterdir())[0]
    existing = sorted(folder.iterdir())
    new = max(1, round(0.01 * len(list((workdir / "data/train").rglob("*.*")))))
    for source in existing[:new]:
        with Image.open(source) as image:
            image.transpose(Image.Transpose.ROTATE_90).save(folder / f"new {source.name}")
    since = time.time()
    print(f"added {new} images; rerun: {run(workdir, workdir / 'config.yaml'):.1f} s")
    for rule in ("extract_shard", "extract_views"):
        for log in sorted((workdir / "logs/backbone" / rule).rglob("*.log")):
            if log.stat().st_mtime >= since:
                line = re.search(r".*to compute", log.read_text()).group(0)
                print(f"  {log.relative_to(workdir)}: {line.split(': ', 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--views", type=int, nargs="+", default=[0, 2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--holdout", type=float, default=0.0)
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--rerun", action="store_true")
    args = parser.parse_args()
    args.backbone = args.backbone.resolve()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tlflow-augmentation-"))
    link_data(args.data_dir.resolve(), workdir / "data", args.holdout)
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"workdir {workdir}; CPU: {cpu_name()}; load average {os.getloadavg()}")
    (rerun if args.rerun else compare)(args, workdir)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
