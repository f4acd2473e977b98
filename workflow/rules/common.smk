# Config validation, the dataset found on disk, input functions and targets.
# Everything here runs when Snakemake reads the workflow, so a bad config or a
# bad folder fails at once, before any job starts.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir, "workflow")))

from tlflow import backbones, images, locks, manifest, predict  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")

SPLITS = config["splits"]
for _required in ("train", "validation"):
    if _required not in SPLITS:
        raise WorkflowError(
            f"config 'splits' is {SPLITS} but must include '{_required}'; "
            "'test' is optional."
        )
EVAL_SPLIT = "test" if "test" in SPLITS else "validation"
SHARDS = config["extraction"]["shards"]
MANIFESTS = "results/manifests"

try:
    DATASET = images.scan(config["data_dir"], SPLITS)
    SPECS = {}
    for _entry in config["backbones"]:
        _spec = backbones.resolve(
            _entry, config["image_size"], config["extraction"]["precision"]
        )
        if _spec["id"] in SPECS:
            raise backbones.BackboneError(
                f"two backbones have the id '{_spec['id']}'; give one an 'id:' of its own."
            )
        SPECS[_spec["id"]] = _spec
except (images.DatasetError, backbones.BackboneError) as _error:
    raise WorkflowError(str(_error)) from None

CLASSES = DATASET.classes

if workflow.is_main_process:
    # A run killed without clean-up (kill -9, power cut) must not block the next one.
    _cleared = locks.clear_stale_locks()
    if _cleared:
        logger.warning(f"Removed the locks of a killed run: {_cleared}")
    if DATASET.ignored:
        logger.warning(
            f"Ignoring {len(DATASET.ignored)} file(s) that are not images: "
            + ", ".join(DATASET.ignored)
        )
    # Manifests carry content hashes: an edited image reruns its shard, a merely
    # touched one does not (its image inputs are marked ancient below).
    manifest.write_shard_manifests(DATASET, SHARDS, MANIFESTS)


wildcard_constraints:
    backbone=r"[A-Za-z0-9_.-]+",
    split=r"[A-Za-z0-9_.-]+",
    k=r"\d+",


def shard_numbers(split):
    """Shards of a split that hold at least one image."""
    return sorted(
        {
            manifest.shard_of(f, SHARDS)
            for files in DATASET.images[split].values()
            for f in files
        }
    )


def shard_images(wildcards):
    """The shard's image files; their timestamps are ignored, their hashes are not."""
    rows = manifest.shard_rows(DATASET, wildcards.split, SHARDS, int(wildcards.k))
    return [ancient(str(Path(config["data_dir"], row["file"]))) for row in rows]


def shard_outputs(wildcards):
    """Every shard's (features, manifest, skipped) of one backbone and split."""
    prefix = f"results/{wildcards.backbone}/features/shards/{wildcards.split}"
    return [
        f"{prefix}/shard-{k}{suffix}"
        for k in shard_numbers(wildcards.split)
        for suffix in (".npy", ".csv", ".skipped.csv")
    ]


def shard_image_count(wildcards):
    return len(manifest.shard_rows(DATASET, wildcards.split, SHARDS, int(wildcards.k)))


def backbone_spec(wildcards):
    return SPECS[wildcards.backbone]


def head_settings():
    """The head's settings without its resources: a thread count changes no result."""
    return {k: v for k, v in config["head"].items() if k not in ("threads", "gpus")}


def head_meta(wildcards):
    """Recorded beside the head: what prediction needs to rebuild the features."""
    return {"classes": CLASSES, "backbone": SPECS[wildcards.backbone]}


def gpu_request(section):
    """``{"gpu": n}`` when config[section]["gpus"] asks for GPUs, else nothing.

    Spread into a rule's resources (``**gpu_request("head")``), so a CPU-only
    config submits no GPU request at all (no --gpus for SLURM, no gpu for --resources).
    """
    gpus = config[section]["gpus"]
    return {"gpu": gpus} if gpus else {}


# New images to classify (config 'predict: images:'), listed now so that a wrong
# folder fails before any job starts.
PREDICT_DIR = config["predict"]["images"]
try:
    PREDICT_IMAGES = predict.list_images(PREDICT_DIR) if PREDICT_DIR else []
except predict.PredictError as _error:
    raise WorkflowError(str(_error)) from None


def predict_images(wildcards):
    if not PREDICT_DIR:
        raise WorkflowError(
            "predictions were asked for, but the config names no images: set "
            "'predict: images: <folder>' in the config."
        )
    return [str(Path(PREDICT_DIR, name)) for name in PREDICT_IMAGES]


def final_targets():
    comparison = ["results/comparison.csv", "results/comparison.png"]
    return (comparison if len(SPECS) > 1 else []) + [
        f"results/{backbone}/{path}"
        for backbone in SPECS
        for path in (
            "head/head.h5",
            "head/history.csv",
            "head/candidates.csv",
            "plots/loss.png",
            "plots/accuracy.png",
            "evaluation/summary.html",
            "evaluation/confusion_matrix.png",
            "evaluation/mistakes.png",
            "evaluation/reliability.png",
            "model.keras",
            *(["predictions/predictions.csv"] if PREDICT_DIR else []),
            *(
                [
                    "audit/audit.json",
                    "audit/label_suspects.png",
                    "audit/cross_split_pairs.png",
                    "audit/embedding.png",
                ]
                if config["audit"]["enabled"]
                else []
            ),
        )
    ]
