"""Benchmark: the frozen model against the fine-tuned one, over several seeds.

Runs the workflow on real photos with one backbone and fine-tuning on, once per
seed (the head's and fine-tuning's seed; the cached features are shared), and
prints, per seed and as the mean, the frozen head's and the fine-tuned model's
validation accuracy and log loss (each calibrated on validation), the evaluation
split's when there is a test split, and fine-tuning's seconds per epoch (from its
log; the first epoch, which traces the model, apart) with the load average.

    .venv/bin/python benchmarks/fine_tune.py DATA_DIR [--seeds 1 2 3] [--epochs 5]
        [--learning-rate 1e-5] [--unfreeze 3] [--holdout 0.5] [--workdir DIR]

Backbone: ../shared/models/efficientnet_lite0_notop.keras at 128x128 unless
--backbone names another .keras file; everything not named here is the default.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
from pathlib import Path

import yaml
from heads import DEFAULT_BACKBONE, link_data, run


def scores(results: Path) -> dict:
    frozen = json.loads((results / "head/head.json").read_text())["head"]
    tuned = json.loads((results / "fine_tuned/model.json").read_text())["head"]
    split = json.loads((results / "evaluation/metrics.json").read_text())["split"]
    row = {
        "frozen head": f"{frozen['selected']['kind']} ({frozen['selected']['pooling']})",
        "frozen val acc": frozen["validation"]["accuracy"],
        "tuned val acc": tuned["validation"]["accuracy"],
        "frozen val log loss": frozen["validation"]["log_loss"],
        "tuned val log loss": tuned["validation"]["log_loss"],
    }
    if split == "test":
        for name, folder in (("frozen", "evaluation"), ("tuned", "fine_tuned/evaluation")):
            metrics = json.loads((results / folder / "metrics.json").read_text())
            row[f"{name} test acc"], row[f"{name} test log loss"] = metrics["accuracy"], metrics["log_loss"]
    row["best epoch / run"] = f"{tuned['fine_tune']['best_epoch']} / {tuned['fine_tune']['epochs_run']}"
    return row


def epoch_seconds(log: Path) -> list[float]:
    return [float(s) for s in re.findall(r"epoch \d+: ([\d.]+) s", log.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the schema's")
    parser.add_argument("--unfreeze", default=None, help="a number of layers or a name prefix")
    parser.add_argument("--holdout", type=float, default=0.0)
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fine_tune_bench_"))
    if not (workdir / "data").exists():
        link_data(args.data_dir.resolve(), workdir / "data", args.holdout)
    splits = sorted(p.name for p in (workdir / "data").iterdir())
    backbone_id = args.backbone.stem
    fine_tune = {"enabled": True, "epochs": args.epochs, "threads": args.threads}
    if args.learning_rate:
        fine_tune["learning_rate"] = args.learning_rate
    if args.unfreeze:
        fine_tune["unfreeze"] = int(args.unfreeze) if args.unfreeze.isdigit() else args.unfreeze
    rows = []
    for seed in args.seeds:
        config = {
            "data_dir": "data",
            "splits": splits,
            "image_size": [args.image_size] * 2,
            "backbones": [{"name": str(args.backbone.resolve()), "preprocessing": "none"}],
            "audit": {"enabled": False},
            "head": {"seed": seed, "threads": args.threads},
            "evaluation": {"threads": args.threads},
            "extraction": {"threads": args.threads},
            "fine_tune": {**fine_tune, "seed": seed},
        }
        path = workdir / f"seed-{seed}.yaml"
        path.write_text(yaml.safe_dump(config))
        load_before = os.getloadavg()[0]
        wall = run(workdir, path)
        seconds = epoch_seconds(workdir / f"logs/{backbone_id}/fine_tune.log")
        rows.append(
            {
                "seed": seed,
                **scores(workdir / "results" / backbone_id),
                "s/epoch (first)": seconds[0],
                "s/epoch (rest, mean)": statistics.mean(seconds[1:]) if len(seconds) > 1 else float("nan"),
                "run s": wall,
                "load avg before/after": f"{load_before:.2f} / {os.getloadavg()[0]:.2f}",
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    import pandas as pd

    table = pd.DataFrame(rows).set_index("seed")
    means = table.select_dtypes("number").mean()
    print(
        f"\n{args.data_dir} with {args.backbone.name} at {args.image_size}x{args.image_size}, "
        f"fine-tuning {fine_tune}, workdir {workdir}"
    )
    print(table.to_string(float_format="{:.3f}".format))
    print("\nmean of seeds:\n" + means.to_string(float_format="{:.3f}".format))


if __name__ == "__main__":
    main()
