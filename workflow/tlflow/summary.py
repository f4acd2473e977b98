"""``summary.html``: what was run on which images, and the metrics it reached.

The page is the template ``templates/summary.html``; this module only gathers the
values and the tables it shows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import __version__, imbalance
from .atomic import atomic_path
from .metadata import Meta
from .readers import read_json, read_table
from .splits import SELECTION

TEMPLATE = Path(__file__).with_name("templates") / "summary.html"


def _class_counts(manifest_csv, separator: str | None) -> dict:
    """Images per class, or per label (an image counts once for each of its labels)."""
    cells = read_table(manifest_csv)["class"]
    if separator is not None:
        cells = cells.fillna("").str.split(separator).explode()
    return cells.value_counts().to_dict()


def split_sizes(manifests: dict, skipped: dict, classes, separator: str | None = None) -> pd.DataFrame:
    """Images per class (per label with the ``separator`` of multi-label data), used
    and skipped, per split (rows)."""
    sizes = pd.DataFrame(
        {
            split: {
                **_class_counts(manifests[split], separator),
                "skipped (unreadable)": len(read_table(skipped[split])),
            }
            for split in manifests
        }
    ).T
    sizes = sizes.reindex(columns=[*classes, "skipped (unreadable)"]).fillna(0).astype(int)
    if separator is None:
        sizes.insert(len(classes), "images used", sizes[list(classes)].sum(axis=1))
    else:  # labels overlap: the images are counted from the manifest
        sizes.insert(
            len(classes), "images used", [len(read_table(manifests[split])) for split in sizes.index]
        )
    return sizes


def _head_words(head: dict) -> str:
    """The chosen head in one line, e.g. 'linear, avg pooling, l2 0.01 (best of 14 on validation)'."""
    selected = head["selected"]
    extra = ", ".join(f"{k} {v}" for k, v in selected.items() if k not in ("candidate", "kind", "pooling"))
    searched = head.get("search_rows", 0) < head.get("train_rows", 0)
    return (
        f"{selected['kind']}, {selected['pooling']} pooling, {extra}; best of "
        f"{head['candidates']} on {SELECTION} ({head.get('criterion', head['settings']['criterion'])})"
        + (
            f", fitted on {head['search_rows']:,} of the {head['train_rows']:,} training rows, "
            "the winner again on all"
            if searched
            else ""
        )
        + (
            f"; temperature {head['temperature']:.3f}"
            if "thresholds" not in head
            else "; a temperature and a threshold per label"
        )
        + _weights_words(head.get("class_weight"))
    )


def _weights_words(decision: dict | None) -> str:
    """The class weights in words, e.g. '; class weights balanced (auto: largest/smallest 10.0)'."""
    if decision is None:  # metadata from before class weights
        return ""
    if "ratio" not in decision:  # multi-label data: never weighted
        return f"; class weights {decision['applied']}"
    why = f" ({decision['setting']}: largest/smallest class {decision['ratio']:.1f})"
    return f"; class weights {decision['applied']}" + (why if decision["setting"] == "auto" else "")


def selection_warnings(split: str) -> list[str]:
    """A sentence saying the scores are optimistic when ``split`` also chose the head."""
    if split != SELECTION:
        return []
    return [
        f"The scores below are on {SELECTION}, the split that also chose and calibrated "
        "the head: they are optimistic. For scores the choice never saw, add a test split "
        "(data_dir/test/<class>/) or set 'evaluation: split:' to a held-out split."
    ]


def leak_warnings(audit_json) -> list[str]:
    """Sentences warning of validation or test images with a copy in train (from the audit)."""
    if audit_json is None:
        return []
    copies = read_json(audit_json)["copies_in_train"]
    return [
        f"{count} {split} image(s) have an exact or near copy in train "
        f"(results/<backbone>/audit/duplicates.csv): scores on {split} overstate how "
        "the model does on new images. Remove the copies or move them to one split."
        for split, count in copies.items()
        if count
    ]


def _overall(result: dict) -> dict:
    """The headline scores of one metrics.json."""
    return {
        "accuracy": result["accuracy"],
        # Absent from metrics of models evaluated before these scores existed.
        **{
            name: result[key]
            for name, key in (
                ("balanced accuracy (mean recall)", "balanced_accuracy"),
                ("macro F1", "macro_f1"),
                ("top-5 accuracy", "top_5_accuracy"),
            )
            if key in result
        },
        "log loss": result["log_loss"],
        "log loss before calibration": result["calibration"]["log_loss_before"],
        "expected calibration error (ECE)": result["ece"],
        "ECE before calibration": result["calibration"]["ece_before"],
        **({"ROC AUC": result["roc_auc"]} if "roc_auc" in result else {}),
    }


def _overall_multi_label(result: dict) -> dict:
    """The headline scores of a multi-label metrics.json."""
    return {
        "mean average precision": result["mean_average_precision"],
        "macro F1 (at each label's threshold)": result["macro_f1"],
        "micro F1": result["micro_f1"],
        "exact match (every label right)": result["exact_match"],
        "log loss (per label)": result["log_loss"],
        "log loss before calibration": result["calibration"]["log_loss_before"],
        "expected calibration error (ECE, mean of the labels')": result["ece"],
        "ECE before calibration": result["calibration"]["ece_before"],
    }


def _fine_tuned(model_meta, metrics_json):
    """(how it was fine-tuned in words, its scores) or (None, None) without fine-tuning."""
    if model_meta is None:
        return None, None
    tuned = Meta.read(model_meta).head["fine_tune"]
    settings = tuned["settings"]
    words = (
        f"{len(tuned['trained_layers'])} backbone layers ({tuned['trained_layers'][0]} ... "
        f"{tuned['trained_layers'][-1]}) and the head, {settings['optimizer']} at learning rate "
        f"{settings['learning_rate']:g}; best epoch {tuned['best_epoch']} of {tuned['epochs_run']}"
    )
    return words, _overall(read_json(metrics_json))


def summarise_run(
    head_meta,
    manifests: dict,
    skipped: dict,
    metrics_json,
    out_html,
    audit_json=None,
    fine_tuned_meta=None,
    fine_tuned_metrics=None,
    corrections=None,
    corrections_csv=None,
) -> None:
    """Write the page; ``manifests`` and ``skipped`` map each split to its joined files.
    ``corrections`` counts what the table ``corrections_csv`` changed (tlflow.corrections).

    With a fine-tuned model (its model.json and metrics.json), its scores are shown
    beside the frozen model's.
    """
    import jinja2

    meta = Meta.read(head_meta)
    result = read_json(metrics_json)
    spec = meta.backbone
    source, weights = spec.describe()
    setup = {
        "workflow": f"tlflow {__version__}",
        "backbone": f"{spec.id} ({source})",
        "weights": weights,
        "preprocessing": spec.preprocessing,
        "image size (height x width)": " x ".join(map(str, spec.image_size)),
        "precision": spec.precision,
        "feature shape": " x ".join(map(str, meta.feature_shape))
        + (" (average and maximum of each channel)" if spec.storage == "pooled" else ""),
        "classes": ", ".join(meta.classes),
        "head": _head_words(meta.head),
        "split scored": result["split"],
        "split that chose and calibrated the head": SELECTION,
        # With augmentation only, so a run without it shows the page it showed before.
        **(
            {
                "augmented views": f"{meta.augmentation['views']} per training image, seed "
                f"{meta.augmentation['seed']}"
            }
            if "views" in meta.augmentation
            else {}
        ),
        **(
            {"test-time views": ", ".join(result["test_time_views"]) + ", averaged with the original"}
            if "test_time_views" in result
            else {}
        ),
    }
    if corrections_csv:
        setup["label corrections"] = (
            f"{corrections['relabelled']} relabelled, {corrections['excluded']} excluded by {corrections_csv}"
        )
    tuning, tuned_scores = _fine_tuned(fine_tuned_meta, fine_tuned_metrics)
    if tuning:
        setup["fine-tuned"] = tuning
    multi_label = bool(meta.multi_label)
    sizes = split_sizes(manifests, skipped, meta.classes, meta.multi_label.get("separator"))
    per_class = pd.DataFrame(result["per_label" if multi_label else "per_class"]).T
    per_class.loc["macro average"] = {
        **result["macro"],
        "support": result["images"],
        # Of multi-label data: mean average precision and the labels' mean ECE.
        **(
            {"average_precision": result["mean_average_precision"], "ece": result["ece"]}
            if multi_label
            else {}
        ),
    }
    per_class["support"] = per_class["support"].astype(int)
    overall = _overall_multi_label(result) if multi_label else _overall(result)
    rare = (
        []
        if multi_label
        else imbalance.rare_warnings(
            sizes.loc["train", list(meta.classes)].to_dict(), meta.head.get("class_weight")
        )
    )
    side_by_side = (
        pd.DataFrame({"frozen": overall, "fine-tuned": tuned_scores}).to_html(
            float_format="{:.4f}".format, na_rep="n/a"
        )
        if tuned_scores
        else None
    )
    environment = jinja2.Environment(autoescape=True, keep_trailing_newline=True)
    page = environment.from_string(TEMPLATE.read_text()).render(
        backbone=spec.id,
        warnings=selection_warnings(result["split"]) + leak_warnings(audit_json) + rare,
        setup=setup,
        sizes=sizes.to_html(),
        split=result["split"],
        images=result["images"],
        overall={k: "n/a" if v is None else f"{v:.4f}" for k, v in overall.items()},
        per_class=per_class.to_html(float_format="{:.4f}".format),
        side_by_side=side_by_side,
    )
    with atomic_path(out_html) as tmp:
        tmp.write_text(page)
