"""Benchmark: the audit's suspects on planted label noise, against cleanlab, and the review loop.

Real cats-vs-dogs photos (catsdogs-2k: 2,000 train; its 800 validation photos
split in two, 400 validation and 400 test, by sorted name), linked into a
temporary data folder and labelled through a label table, so no file moves;
EfficientNet-Lite0 at 128x128, every other setting at its default.

1. Ranking: the features are built once; then for 1%, 2% and 5% of the training
   labels flipped (seeds 0, 1, 2) it scores the training and validation images
   as the audit does (out-of-fold probe, calibrated) and prints precision@k and
   recall@2k (k = flipped) of the audit's suspects and of cleanlab's
   find_label_issues on the same out-of-fold probabilities, and the expected
   calibration error (ECE) against the true labels of the probabilities as the
   probe gives them (none), after a temperature fitted on the given labels
   (given), and after the audit's temperature fitted with a noise rate (noise),
   out-of-fold and on the test split, which fits nothing.
2. The loop: the whole workflow on the clean labels, then with 2% flipped (seed
   0); a reviewer who confirms only true flips accepts the page's suggestion
   (relabel as the likely class) for each of the top k suspects that is one;
   the corrections table is applied and the workflow rerun. It prints test
   accuracy and log loss of each run and the features computed by each rerun
   (counted from the extraction logs).

    .venv/bin/python benchmarks/audit.py --data ../shared/data/catsdogs-2k
        [--model ../shared/models/efficientnet_lite0_notop.keras] [--workdir DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from cleanlab.filter import find_label_issues
from extraction import photos_parser  # benchmarks/ is the script's folder
from incremental import computed_since
from snakemake_command import workflow_command
from tlflow import audit
from tlflow.calibration import expected_calibration_error, fit_temperature, probabilities

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "efficientnet_lite0"
RATES = (0.01, 0.02, 0.05)
SEEDS = (0, 1, 2)
CLASSES = ["cats", "dogs"]


def run(workdir: Path, *targets: str) -> None:
    subprocess.run(
        workflow_command(workdir, "--cores", "2", *targets),
        check=True,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def link_photos(source: Path, workdir: Path) -> pd.DataFrame:
    """Links of the photos under workdir/data; the label table of their true labels."""
    rows = []
    for photo in sorted(source.glob("*/*/*.jpg")):
        split, cls = photo.parent.parent.name, photo.parent.name
        file = f"{split}/{cls}/{photo.name}"
        link = workdir / "data" / file
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():  # a --workdir used before keeps its links
            link.symlink_to(photo.resolve())
        rows.append((file, cls, split))
    table = pd.DataFrame(rows, columns=["file", "label", "split"])
    held = table.index[table.split == "validation"]
    table.loc[held[1::2], "split"] = "test"  # every other validation photo
    return table


def flipped(table: pd.DataFrame, rate: float, seed: int) -> tuple[pd.DataFrame, set[str]]:
    """The table with ``rate`` of its training labels swapped, and the files flipped."""
    train = table.index[table.split == "train"]
    chosen = np.random.default_rng(seed).choice(train, round(rate * len(train)), replace=False)
    noisy = table.copy()
    noisy.loc[chosen, "label"] = noisy.loc[chosen, "label"].map({"cats": "dogs", "dogs": "cats"})
    return noisy, set(table.file[chosen])


def features() -> tuple[pd.DataFrame, np.ndarray]:
    """Manifest rows (with split) and pooled features of every split, as the audit reads them."""
    root = Path("results", BACKBONE, "features")  # as the split's manifest names its shards
    splits = {
        split: (
            sorted(map(str, (root / "shards" / split).glob("shard-*.npy"))),
            root / f"{split}_labels.npy",
            root / f"{split}_manifest.csv",
        )
        for split in ("train", "validation", "test")
    }
    return audit.load_splits(splits, "pooled")


def at_k(ranked: list[str], planted: set[str], k: int) -> float:
    return len(set(ranked[:k]) & planted) / len(planted)


def ranking(workdir: Path, truth: pd.DataFrame) -> list[dict]:
    table, vectors = features()
    true = table.file.map(dict(zip(truth.file, truth.label))).map(CLASSES.index).to_numpy()
    known = table.split.isin(audit.TRAINING_SPLITS).to_numpy()
    results = []
    for rate in RATES:
        for seed in SEEDS:
            noisy, planted = flipped(truth, rate, seed)
            given = table.file.map(dict(zip(noisy.file, noisy.label)))
            frame = table.assign(**{"class": given, "label": given.map(CLASSES.index)})
            labels = frame.label.to_numpy()
            raw = np.zeros((len(frame), 2))
            fit = np.flatnonzero(known)
            raw[known] = audit.out_of_fold(vectors, fit, labels[known], 2, 5, 0)
            raw[~known] = audit._fit_predict(vectors, fit, labels[known], np.flatnonzero(~known), 2, 0)
            proba, temperature, noise = audit.calibrate(raw, labels, known)
            logits = np.log(np.clip(raw, 1e-12, 1.0))
            given_t = fit_temperature(logits[known], labels[known])  # noise not modelled
            shown = {"none": raw, "given": probabilities(logits, given_t), "noise": proba}
            ours = audit.suspects_table(frame[known].reset_index(drop=True), proba[known], CLASSES)
            order = find_label_issues(labels[known], proba[known], return_indices_ranked_by="self_confidence")
            theirs = list(frame.file[known].to_numpy()[order])
            k = len(planted)
            ece = {
                f"ece_{where}_{how}": expected_calibration_error(p[rows], true[rows])
                for where, rows in (("oof", known), ("test", ~known))
                for how, p in shown.items()
            }
            results.append(
                {
                    "rate": rate,
                    "seed": seed,
                    "flipped": k,
                    "T_given": given_t,
                    "T_noise": temperature,
                    "noise": noise,
                    "audit_suspects": len(ours),
                    "audit_p@k": at_k(list(ours.file), planted, k),
                    "audit_r@2k": at_k(list(ours.file), planted, 2 * k),
                    "cleanlab_issues": len(theirs),
                    "cleanlab_p@k": at_k(theirs, planted, k),
                    "cleanlab_r@2k": at_k(theirs, planted, 2 * k),
                    **ece,
                }
            )
            print(json.dumps(results[-1]), flush=True)
    return results


def scores(workdir: Path) -> dict:
    metrics = json.loads((workdir / f"results/{BACKBONE}/evaluation/metrics.json").read_text())
    return {"accuracy": metrics["accuracy"], "log_loss": metrics["log_loss"]}


def loop(workdir: Path, truth: pd.DataFrame, config: dict) -> None:
    clean = scores(workdir)
    noisy, planted = flipped(truth, 0.02, 0)
    noisy.to_csv(workdir / "labels.csv", index=False)
    started = time.time()
    run(workdir)
    with_noise, noise_computed = scores(workdir), computed_since(workdir, started)
    suspects = pd.read_csv(workdir / f"results/{BACKBONE}/audit/label_suspects.csv", dtype=str)
    top = suspects.head(len(planted))
    confirmed = top[top.file.isin(planted)]
    pd.DataFrame({"file": confirmed.file, "action": "relabel", "class": confirmed.likely_class}).to_csv(
        workdir / "corrections.csv", index=False
    )
    (workdir / "config.yaml").write_text(yaml.safe_dump({**config, "corrections": "corrections.csv"}))
    started = time.time()
    run(workdir)
    corrected, corrected_computed = scores(workdir), computed_since(workdir, started)
    print(
        json.dumps(
            {
                "clean": clean,
                "flipped_2pct": {**with_noise, "features_computed": noise_computed},
                "suspects": len(suspects),
                "flips": len(planted),
                "confirmed_in_top_k": len(confirmed),
                "corrected": {**corrected, "features_computed": corrected_computed},
            }
        )
    )


def main() -> None:
    args = photos_parser(__doc__.splitlines()[0]).parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tlflow-noise-")).resolve()
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    truth = link_photos(Path(args.data).resolve(), workdir)
    os.chdir(workdir)
    truth.to_csv(workdir / "labels.csv", index=False)
    config = {
        "data_dir": "data",
        "labels": "labels.csv",
        "image_size": [128, 128],
        "backbones": [{"name": str(Path(args.model).resolve()), "id": BACKBONE, "preprocessing": "none"}],
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    started = time.time()
    run(workdir)
    print(f"clean run: {computed_since(workdir, started)} features computed, {scores(workdir)}", flush=True)
    results = pd.DataFrame(ranking(workdir, truth))
    print(results.groupby("rate").mean(numeric_only=True).drop(columns="seed").to_string(float_format="%.3f"))
    loop(workdir, truth, config)


if __name__ == "__main__":
    main()
