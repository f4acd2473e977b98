# Config validation, the dataset found on disk, input functions and targets.
# Everything here runs when Snakemake reads the workflow, so a bad config or a
# bad folder fails at once, before any job starts. Only the main process lists
# and hashes the images; a job that re-reads this file (a cluster job) takes
# what it needs from the manifests, so it never walks data_dir.
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
FINE_TUNE = config["fine_tune"]["enabled"]
if config["predict"]["model"] == "fine_tuned" and not FINE_TUNE:
    raise WorkflowError(
        "config 'predict: model: fine_tuned' needs a fine-tuned model: set "
        "'fine_tune: enabled: true', or 'predict: model: frozen'."
    )
SHARDS = config["extraction"]["shards"]
PREDICT_DIR = config["predict"]["images"]
MANIFESTS = "results/manifests"
# Bookkeeping, not results: hash caches and the listings staged for the manifest
# rule. Written when the workflow is read, also by `snakemake -n`.
STATE = ".snakemake/tlflow"
STAGED = f"{STATE}/staged"
MAIN = workflow.is_main_process

# Weights files and saved models are hashed once; later reads of the workflow (a
# job's too) find the hash by the file's size, mtime and inode.
_file_hashes = manifest.HashCache(f"{STATE}/file-hashes.json")
try:
    SPECS = {}
    for _entry in config["backbones"]:
        _spec = backbones.resolve(
            _entry,
            config["image_size"],
            config["extraction"]["precision"],
            sha256=_file_hashes.sha256,
        )
        if _spec["id"] in SPECS:
            raise backbones.BackboneError(
                f"two backbones have the id '{_spec['id']}'; give one an 'id:' of its own."
            )
        SPECS[_spec["id"]] = _spec
except backbones.BackboneError as _error:
    raise WorkflowError(str(_error)) from None

if MAIN:
    try:
        DATASET = images.scan(config["data_dir"], SPLITS)
        # New images to classify, listed now so that a wrong folder fails at once.
        _to_predict = predict.list_images(PREDICT_DIR) if PREDICT_DIR else []
    except (images.DatasetError, predict.PredictError) as _error:
        raise WorkflowError(str(_error)) from None
    CLASSES = DATASET.classes
    # Each listing (a shard's images, or the images to predict) with content hashes,
    # staged by its digest for the manifest rule: an edited image reruns its shard,
    # a merely touched one does not.
    _image_hashes = manifest.HashCache(f"{STATE}/image-hashes.json")
    LISTINGS = manifest.shard_listings(DATASET, SHARDS, _image_hashes)
    if PREDICT_DIR:
        LISTINGS["predict"] = manifest.folder_listing(
            PREDICT_DIR, _to_predict, _image_hashes
        )
    _image_hashes.save()
    _file_hashes.save()
    DIGESTS = manifest.stage(
        {name: text for name, (text, _) in LISTINGS.items()}, STAGED
    )
    # A run killed without clean-up (kill -9, power cut) must not block the next one.
    _cleared = locks.clear_stale_locks()
    if _cleared:
        logger.warning(f"Removed the locks of a killed run: {_cleared}")
    if DATASET.ignored:
        logger.warning(
            f"Ignoring {len(DATASET.ignored)} file(s) that are not images: "
            + ", ".join(DATASET.ignored[:10])
            + (", ..." if len(DATASET.ignored) > 10 else "")
        )
else:
    CLASSES = images.class_folders(Path(config["data_dir"], SPLITS[0]))


wildcard_constraints:
    backbone=r"[A-Za-z0-9_.-]+",
    split=r"[A-Za-z0-9_.-]+",
    k=r"\d+",
    listing=r"[A-Za-z0-9_.-]+/shard-\d+|predict",


def listing_size(name):
    """Images of a listing: known to the main process, counted from its manifest in a job."""
    if MAIN:
        return LISTINGS[name][1]
    return manifest.count_rows(f"{MANIFESTS}/{name}.csv")


def staged_listing(wildcards):
    return f"{STAGED}/{DIGESTS[wildcards.listing]}.csv"


def listing_images(wildcards):
    return listing_size(wildcards.listing)


def shard_images(wildcards):
    return listing_size(f"{wildcards.split}/shard-{wildcards.k}")


def split_images(wildcards):
    return DATASET.count(wildcards.split)


def evaluation_images(wildcards):
    """Images of the evaluation split: listed by the main process, counted in a job."""
    if MAIN:
        return DATASET.count(EVAL_SPLIT)
    return sum(
        manifest.count_rows(path)
        for path in Path(MANIFESTS, EVAL_SPLIT).glob("shard-*.csv")
    )


def shard_numbers(split):
    """Shards of a split that hold at least one image."""
    prefix = f"{split}/shard-"
    return sorted(int(n.removeprefix(prefix)) for n in LISTINGS if n.startswith(prefix))


def shard_outputs(suffix):
    """Input function: one backbone's and split's shard files ending in ``suffix``."""

    def files(wildcards):
        prefix = f"results/{wildcards.backbone}/features/shards/{wildcards.split}"
        return [f"{prefix}/shard-{k}{suffix}" for k in shard_numbers(wildcards.split)]

    return files


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


def fine_tune_settings():
    """Fine-tuning's settings without its switch and resources (they change no result)."""
    resources = ("enabled", "threads", "mem_mb", "runtime", "gpus")
    return {k: v for k, v in config["fine_tune"].items() if k not in resources}


def predict_model(suffix):
    """The model the config's 'predict: model:' names: the frozen or the fine-tuned one."""
    folder = "fine_tuned/" if config["predict"]["model"] == "fine_tuned" else ""
    return f"results/{{backbone}}/{folder}model{suffix}"


def predict_listing(wildcards):
    if not PREDICT_DIR:
        raise WorkflowError(
            "predictions were asked for, but the config names no images: set "
            "'predict: images: <folder>' in the config."
        )
    return f"{MANIFESTS}/predict.csv"


def predict_images(wildcards):
    return listing_size("predict")


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
                    "fine_tuned/model.keras",
                    "fine_tuned/plots/loss.png",
                    "fine_tuned/plots/accuracy.png",
                    "fine_tuned/evaluation/confusion_matrix.png",
                    "fine_tuned/evaluation/mistakes.png",
                    "fine_tuned/evaluation/reliability.png",
                ]
                if FINE_TUNE
                else []
            ),
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
