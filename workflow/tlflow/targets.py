"""What a run leaves, by config: the targets of rule all and the export's files.

Pure functions of the validated config, so that the Snakefile only names them
and a test can check them without Snakemake.
"""

from __future__ import annotations

CURVES = ["plots/loss.png", "plots/accuracy.png"]
FIGURES = [f"evaluation/{n}.png" for n in ("confusion_matrix", "mistakes", "reliability")]
AUDIT = [
    "audit/audit.json",
    *(f"audit/{n}.png" for n in ("label_suspects", "cross_split_pairs", "embedding")),
]


def exports(config: dict) -> bool:
    """Whether the run exports its models (a format, or the int8 LiteRT model)."""
    return bool(config["export"]["formats"] or config["export"]["int8"])


def export_files(config: dict, folder: str) -> dict[str, str]:
    """The files export_model writes in ``folder``: the formats of 'export: formats:',
    the int8 LiteRT model (if on), the class names and the check of them all."""
    from .export import FORMATS, INT8

    files = {fmt: f"{folder}/{FORMATS[fmt][0]}" for fmt in config["export"]["formats"]}
    if config["export"]["int8"]:
        files["int8"] = f"{folder}/{INT8}"
    return {**files, "meta": f"{folder}/model.json", "check": f"{folder}/check.json"}


def final(config: dict, backbones: list[str], multi_label: bool = False) -> list[str]:
    """Each backbone's results, and the comparison of several. Multi-label data
    (tlflow.multilabel) gets precision-recall curves, and no audit."""
    paths = ["head/head.h5", "head/history.csv", "head/candidates.csv", "model.keras"]
    paths += ["evaluation/summary.html", *CURVES, *FIGURES]
    if config["predict"]["images"]:
        paths.append("predictions/predictions.csv")
    if exports(config):
        paths.append("export/check.json")
    if config["fine_tune"]["enabled"]:
        paths += [f"fine_tuned/{path}" for path in ("model.keras", *CURVES, *FIGURES)]
        paths += ["fine_tuned/export/check.json"] if exports(config) else []
    if multi_label:
        paths.append("evaluation/precision_recall.png")
    if config["audit"]["enabled"] and not multi_label:
        paths += [*AUDIT, "audit/review.html"]
    several = len(backbones) > 1
    comparison = ["results/comparison.csv", "results/comparison.png"] if several else []
    return comparison + [f"results/{b}/{path}" for b in backbones for path in paths]
