"""What the stored features cost in accuracy: whole maps, pooled rows, pooled rows in float16.

Real photos (catsdogs-2k: 2,000 train, 800 validation photos), EfficientNet-Lite0 at
128x128, extracted once per storage by the workflow's own ``features.extract_shard``
(``--precision``, by default as ``auto`` resolves it on this machine). The 800 validation photos are
held out as the test set; the 2,000 training photos are split, per seed, into 1,600
to fit the head and 400 to choose and calibrate it (stratified), so the figures show
how much the splits move them. For each seed and storage, the schema's default head
(``tlflow.head.select`` then ``finalise``) is scored on the held-out photos.

- ``map float32``: the whole 4x4x1280 map per image, pooled by the head;
- ``pooled float32``: the stored (2, 1280) average and maximum (the default);
- ``pooled float16``: those rows rounded to float16 and read back as float32.

    .venv/bin/python benchmarks/storage.py [--data ../shared/data/catsdogs-2k]
        [--model ../shared/models/efficientnet_lite0_notop.keras] [--seeds 3]
        [--precision auto|float32|bfloat16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from extraction import DATA, MODELS, auto_precision, cpus, schema_defaults
from scale import cpu_name

from tlflow import backbones, calibration, features, head, selection
from tlflow.manifest import file_sha256, manifest_text
from tlflow.probabilities import logits


def extract(data: Path, work: Path, spec: dict) -> dict:
    """{split: (rows, labels)} of ``data``'s train and validation photos, stored as ``spec`` says."""
    out = {}
    for split in ("train", "validation"):
        classes = sorted(p.name for p in (data / split).iterdir() if p.is_dir())
        rows = [
            {"file": f"{split}/{c}/{f.name}", "class": c, "label": label, "sha256": file_sha256(f)}
            for label, c in enumerate(classes)
            for f in sorted((data / split / c).iterdir())
        ]
        listing = work / f"{split}.csv"
        listing.write_text(manifest_text(rows))
        files = [work / f"{spec['features']}-{split}{s}" for s in (".npy", ".csv", ".skipped.csv")]
        features.extract_shard(listing, data, spec, *files, work / "cache", threads=cpus())
        out[split] = (np.load(files[0]), np.array([r["label"] for r in rows]))
    return out


def held_out_scores(rows, storage: str, seed: int, settings: dict) -> dict:
    """The default head fitted and chosen on a seeded 1,600/400 cut of train, scored on validation."""
    from sklearn.model_selection import train_test_split

    x, y = rows["train"]
    fit, choose = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
    train, validation = (x[fit], y[fit]), (x[choose], y[choose])
    settings = {**settings, "seed": seed}
    table, winner, state = head.select(train, validation, 2, settings, storage)
    candidate = {k: v for k, v in table[winner].items() if k in selection.GRID_KEYS}
    model, temperature, _ = head.finalise(
        list(x.shape[1:]), 2, settings, candidate, state, validation[1], storage
    )
    test_x, test_y = rows["validation"]
    z = logits(model, test_x)
    proba = calibration.probabilities(z, temperature)
    # The same head on the held-out rows rounded to float16: what evaluation would
    # score if it read float16 rows while model.keras computes in float32.
    rounded = calibration.probabilities(
        logits(model, test_x.astype(np.float16).astype(np.float32)), temperature
    )
    return {
        "accuracy": float(np.mean(proba.argmax(axis=1) == test_y)),
        "log_loss": calibration.log_loss(z, test_y, temperature),
        "head": f"{candidate['kind']}/{candidate['pooling']}",
        "rounding": float(np.abs(rounded - proba).max()),
        "candidates": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA / "catsdogs-2k")
    parser.add_argument("--model", type=Path, default=MODELS / "efficientnet_lite0_notop.keras")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    args = parser.parse_args()
    settings = schema_defaults("head")
    entry = {"name": str(args.model), "id": "efficientnet_lite0", "preprocessing": "none"}
    spec = backbones.resolve(entry, [128, 128], args.precision)
    chosen = auto_precision(spec)[0] if args.precision == "auto" else args.precision
    print(f"{args.data.name}, EfficientNet-Lite0 128x128, precision {chosen}; CPU: {cpu_name()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stored = {
            storage: extract(
                args.data, Path(tmp), backbones.resolve(entry, [128, 128], chosen, features=storage)
            )
            for storage in ("map", "pooled")
        }
        half = {
            split: (x.astype(np.float16).astype(np.float32), y) for split, (x, y) in stored["pooled"].items()
        }
        cases = {
            "map float32": (stored["map"], "map", 4),
            "pooled float32": (stored["pooled"], "pooled", 4),
            "pooled float16": (half, "pooled", 2),
        }
        print(
            "| stored | bytes per image | seed | head | held-out accuracy | held-out log loss "
            "| probability change, held-out rows rounded to float16 |"
        )
        print("|---|---:|---:|---|---:|---:|---:|")
        summary = {}
        for name, (rows, storage, itemsize) in cases.items():
            per_image = int(np.prod(rows["train"][0].shape[1:])) * itemsize
            for seed in range(settings["seed"], settings["seed"] + args.seeds):
                s = held_out_scores(rows, storage, seed, settings)
                summary.setdefault(name, []).append(s)
                print(
                    f"| {name} | {per_image:,} | {seed} | {s['head']} | {s['accuracy']:.2%} | {s['log_loss']:.4f} "
                    f"| {s['rounding']:.1e} |",
                    flush=True,
                )
        print("\nmean over seeds (difference from pooled float32, seed by seed):")
        base = summary["pooled float32"]
        for name, scores in summary.items():
            acc = np.mean([s["accuracy"] for s in scores])
            loss = np.mean([s["log_loss"] for s in scores])
            d_acc = max(abs(s["accuracy"] - b["accuracy"]) for s, b in zip(scores, base))
            d_loss = max(abs(s["log_loss"] - b["log_loss"]) for s, b in zip(scores, base))
            print(
                f"  {name}: accuracy {acc:.2%}, log loss {loss:.4f}; largest change "
                f"{d_acc * 100:.2f} points, {d_loss:.4f} log loss"
            )


if __name__ == "__main__":
    main()
