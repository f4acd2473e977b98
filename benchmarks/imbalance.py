"""Benchmark: class weights and selection criteria on an imbalanced cut of real photos.

Extracts every image of DATA_DIR (cats-vs-dogs: train/ and validation/ of 1,000 +
400 per class) once, then for each seed cuts an imbalanced set from the features:
1,000 cats and 1,000 / RATIO dogs for training, 200 cats and 200 / RATIO dogs for
validation (the same cut), and 200 cats and 200 dogs held out, drawn at random by
the seed, which also seeds the head. For each class_weight (none, balanced) it
fits the default head grid once (tlflow.head.search) and takes the winner of each
criterion (tlflow.selection.best), finalised and calibrated as the workflow does,
and scores it on the held-out images: the rare class's (dogs') and the common
class's recall, balanced accuracy, macro F1 and log loss, mean and spread over
the seeds. The held-out images are balanced, so every score weighs both classes
equally.

    PYTHONPATH=workflow .venv/bin/python benchmarks/imbalance.py DATA_DIR
        [--ratios 10 3] [--seeds 42 43 44] [--backbone FILE] [--workdir DIR] [--workflow]

--workflow then runs the workflow itself (defaults) on the first seed's cut at the
first ratio, laid out as train/validation/test folders, and prints its held-out
scores and its summary's warnings beside the in-process ones. Backbone:
../shared/models/efficientnet_lite0_notop.keras at 128x128.

    PYTHONPATH=workflow .venv/bin/python benchmarks/imbalance.py --many-classes 100 [--figure PNG]

instead runs the workflow with the default head grid on generated images of that
many classes (tlflow.synthetic.many_classes: 20 training, 5 validation and 5 test
images per class and up to 2 more, 32x32, VGG16 with random weights) and prints
the head stage's seconds, the test scores and the most confused pairs; --figure
copies the confusion figure there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from augmentation import Extractor, defaults, labels_of
from heads import DEFAULT_BACKBONE, cpu_name, link_data, run
from tlflow import backbones, calibration, head, images, imbalance, metrics, selection, synthetic
from tlflow.manifest import HashCache
from tlflow.probabilities import logits

TRAIN, VALIDATION, HELD_OUT = 1000, 200, 200  # common-class images per part


def cut(y: np.ndarray, ratio: float, seed: int) -> dict:
    """Row indices of train, validation and test: class 0 common, class 1 rare."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "validation": [], "test": []}
    for label in (0, 1):
        rows = rng.permutation(np.flatnonzero(y == label))
        sizes = [TRAIN, VALIDATION] if label == 0 else [round(TRAIN / ratio), round(VALIDATION / ratio)]
        bounds = np.cumsum([*sizes, HELD_OUT])
        for part, (start, stop) in zip(parts, zip([0, *bounds[:-1]], bounds)):
            parts[part].append(rows[start:stop])
    return {part: np.sort(np.concatenate(found)) for part, found in parts.items()}


def held_out(model, temperature, x, y) -> dict:
    """The winner's scores on the held-out rows (the common class is 0, the rare 1)."""
    raw = logits(model, x)
    predicted = calibration.probabilities(raw).argmax(axis=1)
    return {
        "rare recall": float(np.mean(predicted[y == 1] == 1)),
        "common recall": float(np.mean(predicted[y == 0] == 0)),
        **imbalance.class_scores(y, predicted, 2),
        "log loss": calibration.log_loss(raw, y, temperature),
    }


def measure(x, y, ratio: float, seeds, settings: dict, storage: str) -> list[dict]:
    """One row per seed, class_weight and criterion: the winner and its held-out scores."""
    found = []
    for seed in seeds:
        rows = cut(y, ratio, seed)
        train, validation = ((x[rows[p]], y[rows[p]]) for p in ("train", "validation"))
        for weight in ("none", "balanced") if ratio != 1 else ("none",):
            chosen = {**settings, "class_weight": weight, "seed": seed}
            weighting = imbalance.decide(train[1], 2, weight)
            table, states = head.search(train, validation, 2, chosen, storage, weighting)
            for criterion in selection.CRITERIA:
                winner = selection.best(table, criterion)
                candidate = {k: v for k, v in table[winner].items() if k in selection.GRID_KEYS}
                model, temperature, _ = head.finalise(
                    list(x.shape[1:]), 2, chosen, candidate, states[winner], validation[1], storage
                )
                scores = held_out(model, temperature, x[rows["test"]], y[rows["test"]])
                found.append(
                    {
                        "ratio": ratio,
                        "class_weight": weight,
                        "criterion": criterion,
                        "seed": seed,
                        "head": f"{candidate['kind']}/{candidate['pooling']}",
                        **scores,
                    }
                )
                print(f"  {found[-1]}", flush=True)
    return found


def run_defaults(workdir: Path, backbone: dict, size: int, label: str) -> tuple[Path, dict, dict]:
    """The workflow with its defaults on ``workdir``'s data (train, validation, test):
    (results folder, metrics.json, head.json's head)."""
    config = {
        "data_dir": "data",
        "splits": ["train", "validation", "test"],
        "image_size": [size, size],
        "backbones": [{**backbone, "id": "backbone"}],
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    print(f"workflow run {label}: {run(workdir, workdir / 'config.yaml'):.1f} s")
    result = workdir / "results/backbone"
    found = json.loads((result / "evaluation/metrics.json").read_text())
    return result, found, json.loads((result / "head/head.json").read_text())["head"]


def workflow_check(args, workdir: Path, dataset, y, ratio: float, seed: int) -> None:
    """The workflow with its defaults on one cut; its held-out scores and warnings."""
    # Relative paths in the pool's order: <split>/<class>/<name>, unique as flat names.
    files = [f for split in dataset.images for cls in dataset.classes for f in dataset.images[split][cls]]
    run_dir = workdir / "workflow"
    for part, rows in cut(y, ratio, seed).items():
        for row in rows:
            target = run_dir / "data" / part / dataset.classes[y[row]] / files[row].replace("/", "_")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_symlink():
                os.symlink((dataset.data_dir / files[row]).resolve(), target)
    backbone = {"name": str(args.backbone), "preprocessing": "none"}
    result, found, chosen = run_defaults(
        run_dir, backbone, 128, f"(defaults) on the seed {seed} cut at {ratio}:1"
    )
    print(f"  class weights {chosen['class_weight']}; selected {chosen['selected']}")
    print(
        f"  test: {', '.join(f'{k} {found[k]:.4f}' for k in ('balanced_accuracy', 'macro_f1', 'log_loss'))}, "
        f"recall { ({c: round(v['recall'], 4) for c, v in found['per_class'].items()}) }"
    )
    page = (result / "evaluation/summary.html").read_text()
    for warning in re.findall(r"<strong>Warning:</strong> (.*?)</p>", page):
        print(f"  summary warns: {warning}")


def many_classes(classes: int, workdir: Path, figure: Path | None) -> None:
    """The workflow's defaults on ``classes`` generated classes: head seconds, scores, figure."""
    synthetic.many_classes(workdir / "data", classes, {"train": 20, "validation": 5, "test": 5})
    result, found, chosen = run_defaults(
        workdir, {"name": "vgg16", "weights": "none"}, 32, f"on {classes} classes"
    )
    job = pd.read_csv(workdir / "logs/backbone/train_head.benchmark.tsv", sep="\t")["s"].sum()
    stage = re.search(r"head stage: ([\d.]+) s", (workdir / "logs/backbone/train_head.log").read_text())
    print(
        f"  head: {chosen['candidates']} candidates, selected {chosen['selected']}; head stage "
        f"{stage.group(1)} s (train_head job {job:.1f} s, TensorFlow's start included)"
    )
    print(
        f"  test ({found['images']} images): "
        + ", ".join(
            f"{k} {found[k]:.4f}" for k in ("accuracy", "top_5_accuracy", "balanced_accuracy", "macro_f1")
        )
    )
    confusion = pd.read_csv(result / "evaluation/confusion_matrix.csv", index_col=0)
    print(metrics.confused_pairs(confusion).head(10).to_string(index=False))
    if figure:
        shutil.copyfile(result / "evaluation/confusion_matrix.png", figure)
        print(f"  figure: {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, nargs="?")
    parser.add_argument("--ratios", type=float, nargs="+", default=[10, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--workflow", action="store_true")
    parser.add_argument("--many-classes", type=int)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    args.backbone = args.backbone.resolve()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tlflow-imbalance-"))
    if args.many_classes:
        print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
        print(f"workdir {workdir}; CPU: {cpu_name()}; load average {os.getloadavg()}")
        return many_classes(args.many_classes, workdir, args.figure and args.figure.resolve())
    if not (workdir / "data").exists():
        link_data(args.data_dir.resolve(), workdir / "data", 0.0)
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"workdir {workdir}; CPU: {cpu_name()}; load average {os.getloadavg()}")
    dataset = images.scan(workdir / "data", ["train", "validation"])
    spec = backbones.resolve({"name": str(args.backbone), "preprocessing": "none"}, [128, 128], "float32")
    extract = Extractor(workdir, spec, dataset, HashCache(workdir / "hashes.json"))
    # Every image once, as one pool; the common class is cats (label 0).
    x = np.concatenate([np.asarray(extract(split, split)[0]) for split in dataset.images])
    y = np.concatenate([labels_of(dataset, split) for split in dataset.images])
    settings = defaults()["head"]
    rows = [
        row for ratio in args.ratios for row in measure(x, y, ratio, args.seeds, settings, spec["features"])
    ]
    table = pd.DataFrame(rows)
    table.to_csv(workdir / "imbalance.csv", index=False)
    scores = ["rare recall", "common recall", "balanced_accuracy", "macro_f1", "log loss"]
    grouped = table.groupby(["ratio", "class_weight", "criterion"], sort=False)[scores]
    mean, spread = grouped.mean(), grouped.std(ddof=0)
    shown = pd.DataFrame(
        {c: [f"{m:.4f} ± {d:.4f}" for m, d in zip(mean[c], spread[c])] for c in scores}, index=mean.index
    )
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(shown.to_string())
        print(
            table.groupby(["ratio", "class_weight", "criterion"], sort=False)["head"]
            .agg(" ".join)
            .to_string()
        )
    if args.workflow:
        workflow_check(args, workdir, dataset, y, args.ratios[0], args.seeds[0])
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
