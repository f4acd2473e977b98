"""Backbones ranked side by side: validation and evaluation scores, and their cost."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .atomic import atomic_path
from .metadata import Meta
from .readers import read_json

COLUMNS = [
    "rank",
    "backbone",
    "head",
    "validation_accuracy",
    "validation_balanced_accuracy",
    "validation_macro_f1",
    "validation_log_loss",
    "validation_ece",
    "evaluation_split",
    "evaluation_accuracy",
    "evaluation_log_loss",
    "evaluation_ece",
    "extraction_seconds",
    "head_seconds",
]
# With fine-tuning on: the fine-tuned model's scores beside the frozen one's.
FINE_TUNED_COLUMNS = [
    "fine_tuned_validation_accuracy",
    "fine_tuned_validation_log_loss",
    "fine_tuned_validation_ece",
    "fine_tuned_evaluation_accuracy",
    "fine_tuned_evaluation_log_loss",
    "fine_tuned_evaluation_ece",
    "fine_tune_seconds",
]


def job_seconds(benchmark_files) -> float | None:
    """Wall seconds summed over Snakemake benchmark files (None if there are none)."""
    found = [Path(f) for f in benchmark_files if Path(f).is_file()]
    return float(sum(pd.read_csv(f, sep="\t")["s"].sum() for f in found)) if found else None


def _scores(meta_json, metrics_json, prefix: str = "", classwise=()) -> dict:
    """Validation scores (from the metadata) and evaluation scores of one model;
    ``classwise`` names the validation scores of tlflow.imbalance to add."""
    head = Meta.read(meta_json).head
    scores = read_json(metrics_json)
    return {
        **{
            f"{prefix}validation_{k}": head["validation"][k]
            for k in ("accuracy", *classwise, "log_loss", "ece")
        },
        **{f"{prefix}evaluation_{k}": scores[k] for k in ("accuracy", "log_loss", "ece")},
    }


def row(
    backbone: str, head_meta, metrics_json, extraction_benchmarks, head_benchmarks, fine_tuned=None
) -> dict:
    """One backbone's row; ``fine_tuned``: (model.json, metrics.json, benchmark files) if on."""
    selected = Meta.read(head_meta).head["selected"]
    result = {
        "backbone": backbone,
        "head": f"{selected['kind']} ({selected['pooling']})",
        **_scores(head_meta, metrics_json, classwise=("balanced_accuracy", "macro_f1")),
        "evaluation_split": read_json(metrics_json)["split"],
        "extraction_seconds": job_seconds(extraction_benchmarks),
        "head_seconds": job_seconds(head_benchmarks),
    }
    if fine_tuned:
        model_meta, tuned_metrics, benchmarks = fine_tuned
        result.update(
            _scores(model_meta, tuned_metrics, "fine_tuned_"), fine_tune_seconds=job_seconds(benchmarks)
        )
    return result


def compare_backbones(rows: list[dict], criterion: str, out_csv) -> pd.DataFrame:
    """Rank by the validation ``criterion`` (the one heads are chosen by), then by name."""
    table = pd.DataFrame(rows)
    if criterion == "log_loss":
        order, ascending = ["validation_log_loss", "backbone"], [True, True]
    else:  # higher wins, then the lower log loss (tlflow.selection.best)
        order = [f"validation_{criterion}", "validation_log_loss", "backbone"]
        ascending = [False, True, True]
    table = table.sort_values(order, ascending=ascending, ignore_index=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    with atomic_path(out_csv) as tmp:
        table[COLUMNS + [c for c in FINE_TUNED_COLUMNS if c in table]].to_csv(tmp, index=False)
    return table
