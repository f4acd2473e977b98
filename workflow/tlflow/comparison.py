"""Backbones ranked side by side: validation and evaluation scores, and their cost."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .atomic import atomic_path
from .metadata import Meta

COLUMNS = [
    "rank", "backbone", "head", "validation_accuracy", "validation_log_loss", "validation_ece",
    "evaluation_split", "evaluation_accuracy", "evaluation_log_loss", "evaluation_ece",
    "extraction_seconds", "head_seconds",
]  # fmt: skip


def job_seconds(benchmark_files) -> float | None:
    """Wall seconds summed over Snakemake benchmark files (None if there are none)."""
    found = [Path(f) for f in benchmark_files if Path(f).is_file()]
    return float(sum(pd.read_csv(f, sep="\t")["s"].sum() for f in found)) if found else None


def row(backbone: str, head_meta, metrics_json, extraction_benchmarks, head_benchmarks) -> dict:
    head = Meta.read(head_meta).head
    scores = json.loads(Path(metrics_json).read_text())
    selected = head["selected"]
    return {
        "backbone": backbone,
        "head": f"{selected['kind']} ({selected['pooling']})",
        **{f"validation_{k}": head["validation"][k] for k in ("accuracy", "log_loss", "ece")},
        "evaluation_split": scores["split"],
        **{f"evaluation_{k}": scores[k] for k in ("accuracy", "log_loss", "ece")},
        "extraction_seconds": job_seconds(extraction_benchmarks),
        "head_seconds": job_seconds(head_benchmarks),
    }


def compare(rows: list[dict], criterion: str, out_csv) -> pd.DataFrame:
    """Rank by the validation ``criterion`` (the one heads are chosen by), then by name."""
    table = pd.DataFrame(rows)
    if criterion == "accuracy":
        order = ["validation_accuracy", "validation_log_loss", "backbone"]
        ascending = [False, True, True]
    else:
        order, ascending = ["validation_log_loss", "backbone"], [True, True]
    table = table.sort_values(order, ascending=ascending, ignore_index=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    with atomic_path(out_csv) as tmp:
        table[COLUMNS].to_csv(tmp, index=False)
    return table
