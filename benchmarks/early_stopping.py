"""What ``head.min_delta`` changes on real photos: the default head search with and without it.

catsdogs-2k, EfficientNet-Lite0 at 128x128 (pooled rows, as the workflow stores
them), extracted once. As in benchmarks/storage.py, the 800 validation photos are
held out and the 2,000 training photos cut per seed into 1,600 to fit and 400 to
choose and calibrate. For each seed and ``min_delta``, it prints the chosen head's
held-out accuracy and log loss, and each ``mlp`` candidate's epochs, kept epoch,
validation log loss and seconds.

    .venv/bin/python benchmarks/early_stopping.py [--seeds 3] [--min-delta 0 0.001]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np
from extraction import DATA, MODELS, auto_precision, schema_defaults
from scale import cpu_name
from storage import extract, held_out_scores

from tlflow import backbones


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA / "catsdogs-2k")
    parser.add_argument("--model", type=Path, default=MODELS / "efficientnet_lite0_notop.keras")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--min-delta", type=float, nargs="+", default=[0.0, 0.001])
    args = parser.parse_args()
    settings = schema_defaults("head")
    entry = {"name": str(args.model), "id": "efficientnet_lite0", "preprocessing": "none"}
    precision = auto_precision(backbones.resolve(entry, [128, 128], "auto"))[0]
    print(
        f"{args.data.name}, EfficientNet-Lite0 128x128, precision {precision}; CPU: {cpu_name()}", flush=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = extract(args.data, Path(tmp), backbones.resolve(entry, [128, 128], precision))
    print(
        "| min_delta | seed | head | held-out accuracy | held-out log loss "
        "| mlp candidates: epochs run, kept, validation log loss, seconds |"
    )
    print("|---:|---:|---|---:|---:|---|")
    summary = {}
    for min_delta in args.min_delta:
        for seed in range(settings["seed"], settings["seed"] + args.seeds):
            with contextlib.redirect_stdout(sys.stderr):  # Keras's epoch lines
                s = held_out_scores(rows, "pooled", seed, {**settings, "min_delta": min_delta})
            summary.setdefault(min_delta, []).append(s)
            mlps = "; ".join(
                f"{c['pooling']}: {c['epochs']}, {c['best_epoch']}, {c['val_log_loss']:.4f}, {c['fit_seconds']:.1f} s"
                for c in s["candidates"]
                if c["kind"] == "mlp"
            )
            print(
                f"| {min_delta:g} | {seed} | {s['head']} | {s['accuracy']:.2%} | {s['log_loss']:.4f} | {mlps} |",
                flush=True,
            )
    print("\nmean over seeds:")
    for min_delta, scores in summary.items():
        mlp_seconds = sum(c["fit_seconds"] for s in scores for c in s["candidates"] if c["kind"] == "mlp")
        print(
            f"  min_delta {min_delta:g}: accuracy {np.mean([s['accuracy'] for s in scores]):.2%}, "
            f"log loss {np.mean([s['log_loss'] for s in scores]):.4f}, mlp fits {mlp_seconds:.1f} s in all"
        )


if __name__ == "__main__":
    main()
