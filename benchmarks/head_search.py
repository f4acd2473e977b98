"""The head search at scale: every linear candidate on every row (exact) against the
search on a stratified subsample with the winner refitted on every row.

Synthetic pooled features stand in for a backbone's: class clusters in a
low-rank subspace of ``--features`` ReLU'd dimensions, plus noise, with a share of
the labels drawn at random (so no candidate is perfect and lbfgs needs its usual
hundred-odd iterations). Each search runs in its own process, through the
workflow's own ``tlflow.head.select`` with the schema's head defaults (linear
kind), and reports its wall seconds and its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the generated features included,
their size printed beside it).

    .venv/bin/python benchmarks/head_search.py                      # 20,000 and 100,000 rows
    .venv/bin/python benchmarks/head_search.py --rows 1000000 --exact-up-to 0
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

RANK, NOISY_LABELS, BLOCK = 64, 0.1, 65536


def features(rows: int, d: int, n_classes: int, seed: int, split: int):
    """(rows, d) float32 features and labels of one split, made block by block."""
    model = np.random.default_rng(seed)  # the same clusters in every split
    mixing = model.standard_normal((RANK, d), dtype=np.float32)
    centres = 0.5 * model.standard_normal((n_classes, RANK), dtype=np.float32)
    rng = np.random.default_rng([seed, split])
    labels = rng.integers(0, n_classes, rows)
    x = np.empty((rows, d), dtype=np.float32)
    for start in range(0, rows, BLOCK):
        y = labels[start : start + BLOCK]
        latent = rng.standard_normal((len(y), RANK), dtype=np.float32) + centres[y]
        x[start : start + len(y)] = np.maximum(
            latent @ mixing + rng.standard_normal((len(y), d), dtype=np.float32), 0
        )
    noisy = rng.uniform(size=rows) < NOISY_LABELS
    labels[noisy] = rng.integers(0, n_classes, noisy.sum())
    return x, labels


def one(rows: int, search_rows: int, args) -> dict:
    """One search in this process: its figures as a dict."""
    from tlflow import head

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    settings = {k: v["default"] for k, v in schema["properties"]["head"]["properties"].items()}
    settings.update(kind="linear", search_rows=search_rows)
    train = features(rows, args.features, args.classes, args.seed, 0)
    validation = features(max(2000, rows // 10), args.features, args.classes, args.seed, 1)
    started = time.perf_counter()
    table, winner, _ = head.select(train, validation, args.classes, settings, "map")  # vectors
    seconds = time.perf_counter() - started
    row = table[winner]
    return {
        "seconds": round(seconds, 1),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "data_mb": (train[0].nbytes + validation[0].nbytes) // 2**20,
        "chosen": f"{row['pooling']} l2 {row['l2']}",
        "search_rows": table[0]["train_rows"],
        "val_accuracy": round(row["val_accuracy"], 4),
        "val_log_loss": round(row["val_log_loss"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument(
        "--search-rows",
        type=int,
        nargs="+",
        default=[5_000, 50_000],
        help="subsample sizes to try (those below a size's rows)",
    )
    parser.add_argument(
        "--exact-up-to", type=int, default=100_000, help="run the exact search only up to this many rows"
    )
    parser.add_argument("--features", type=int, default=1280)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--one", type=int, nargs=2, help=argparse.SUPPRESS)  # rows, search_rows
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args)))
        return
    cpu = next(
        line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
    )
    print(f"CPU: {cpu}; {args.features} features, {args.classes} classes; peak = ru_maxrss of each run")
    header = (
        f"{'rows':>9} {'search':>13} {'seconds':>8} {'peak MB':>8} {'data MB':>8} "
        f"{'chosen':>14} {'val acc':>8} {'log loss':>9} {'x faster':>9}"
    )
    print(header)
    for rows in args.rows:
        runs = [rows] if rows <= args.exact_up_to else []
        runs += [s for s in args.search_rows if s < rows]
        exact = None
        for search_rows in runs:
            child = [
                sys.executable,
                __file__,
                "--one",
                str(rows),
                str(search_rows),
                "--features",
                str(args.features),
                "--classes",
                str(args.classes),
                "--seed",
                str(args.seed),
            ]
            result = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
            exact = exact or (result if search_rows == rows else None)
            label = "exact" if search_rows == rows else f"{search_rows:,} rows"
            ratio = f"{exact['seconds'] / result['seconds']:.1f}" if exact else "-"
            print(
                f"{rows:>9,} {label:>13} {result['seconds']:>8} {result['peak_mb']:>8} {result['data_mb']:>8} "
                f"{result['chosen']:>14} {result['val_accuracy']:>8} {result['val_log_loss']:>9} {ratio:>9}",
                flush=True,
            )


if __name__ == "__main__":
    main()
