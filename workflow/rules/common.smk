# Config validation, the dataset found on disk, input functions and targets.
# Everything here runs when Snakemake reads the workflow, so a bad config or a
# bad folder fails at once, before any job starts. Only the main process lists
# and hashes the images; a job that re-reads this file (a cluster job) takes
# what it needs from the manifests, so it never walks data_dir.
import json
import math
import os
import re
import tomllib
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.io import get_flag_value
from snakemake.logging import logger
from snakemake.utils import validate

# The workflow's version: pyproject.toml of the clone or module these rules come
# from (Snakemake fetches it like the rules, from a folder, git or GitHub).
_pyproject = workflow.source_path("../../pyproject.toml")
with open(_pyproject, "rb") as _file:
    VERSION = tomllib.load(_file)["project"]["version"]
_install = (
    "in a clone, run `make setup`; for a deployed module, "
    f'pip install "tlflow @ git+<repository of the workflow>@v{VERSION}"'
)
# The rules' code is the installed package tlflow, so it is found however the
# rules were loaded; it must be the version of the rules.
try:
    import tlflow
    from tlflow import (
        augment,
        backbones,
        images,
        intermediates,
        layouts,
        listing,
        locks,
        manifest,
        pooling,
        precision,
        predict,
        selection,
        splits,
        views,
    )
except ModuleNotFoundError as _error:
    raise WorkflowError(
        f"cannot import {_error.name}: the Python running Snakemake lacks the "
        f"workflow's package and its pinned dependencies; {_install}."
    ) from None
if tlflow.__version__ != VERSION:
    raise WorkflowError(
        f"the workflow is version {VERSION} "
        f"({get_flag_value(_pyproject, 'sourcecache_entry')}) but its package "
        f"tlflow installed at {Path(tlflow.__file__).parent} is "
        f"{tlflow.__version__}; install the same version: {_install}."
    )
if workflow.is_main_process:
    logger.info(f"tlflow workflow version {VERSION}")

validate(config, schema="../schemas/config.schema.yaml")

SPLITS = config["splits"]
# The split the evaluation scores; train fits the head and validation chooses and
# calibrates it (tlflow.splits).
try:
    EVAL_SPLIT = splits.evaluation_split(SPLITS, config["evaluation"].get("split"))
except splits.SplitError as _error:
    raise WorkflowError(str(_error)) from None
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
# Every entry under data_dir (and the images to predict) that is not used, and why.
IGNORED_LIST = "logs/ignored_files.csv"
MAIN = workflow.is_main_process
# Augmented views of the training images and test-time views of the evaluation
# split (tlflow.views); None when off.
TRAIN_VIEWS = views.training_views(config["augmentation"])
TEST_TIME_VIEWS = views.test_time_views(config["augmentation"])

# `precision: auto` is decided once, on the machine that reads the workflow, and
# kept for the jobs: a cluster job re-reads this file on a compute node, which may
# have another CPU, and must compute the features the plan was made for.
_precision_state = Path(STATE, "precision.json")
_precision_key = config["extraction"]["precision"]
try:
    _decided = json.loads(_precision_state.read_text())
except (OSError, ValueError):  # none yet, or damaged: decided again
    _decided = {}
if MAIN or _precision_key not in _decided:
    PRECISION, _why = precision.resolve(_precision_key)
    if MAIN:
        _decided[_precision_key] = PRECISION
        manifest.write_if_changed(_precision_state, json.dumps(_decided))
        logger.info(f"Extraction precision: {PRECISION} ({_why}).")
    else:
        logger.warning(
            f"No precision decided by the main process: {PRECISION}, {_why}."
        )
else:
    PRECISION = _decided[_precision_key]

# Weights files and saved models are hashed once; later reads of the workflow (a
# job's too) find the hash by the file's size, mtimes, inode and device.
# `verify_hashes` re-reads them in the main process only: a job plans nothing.
VERIFY = MAIN and config["verify_hashes"] in (True, "true")
_file_hashes = manifest.HashCache(f"{STATE}/file-hashes.json", verify=VERIFY)
# What is stored per image: the pooled vectors the heads read, or the whole map
# when a head needs it (flatten) or the config asks for it. Part of every spec, so
# switching computes the other kind.
FEATURES = pooling.storage(
    selection.values(config["head"], "pooling"), config["extraction"]["features"]
)
try:
    SPECS = {}
    for _entry in config["backbones"]:
        _spec = backbones.resolve(
            _entry,
            config["image_size"],
            PRECISION,
            sha256=_file_hashes.sha256,
            features=FEATURES,
        )
        if _spec["id"] in SPECS:
            raise backbones.BackboneError(
                f"two backbones have the id '{_spec['id']}'; give one an 'id:' of its own."
            )
        SPECS[_spec["id"]] = _spec
except backbones.BackboneError as _error:
    raise WorkflowError(str(_error)) from None

if MAIN:
    # Content hashes of the images: they split a folder without split folders, and
    # stage each listing (a shard's images, or the images to predict) by its digest
    # for the manifest rule: an edited image reruns its shard, a touched one does not.
    _image_hashes = manifest.HashCache(f"{STATE}/image-hashes.json", verify=VERIFY)
    try:
        DATASET = layouts.scan(
            config["data_dir"],
            SPLITS,
            _image_hashes,
            config.get("split"),
            config["labels"],
            config["label_columns"],
            config["corrections"],
        )
        # New images to classify, listed now so that a wrong folder fails at once.
        _to_predict, _predict_ignored = (
            predict.list_images(PREDICT_DIR) if PREDICT_DIR else ([], [])
        )
    except (images.DatasetError, predict.PredictError, manifest.UnreadableError) as _e:
        raise WorkflowError(str(_e)) from None
    CLASSES = DATASET.classes
    logger.info(f"Images per split and class: {layouts.counts(DATASET)}")
    if DATASET.corrected:
        logger.info(f"Corrections of {config['corrections']}: {DATASET.corrected}")
    for _warning in layouts.warnings(DATASET):
        logger.warning(_warning)
    try:
        LISTINGS = manifest.shard_listings(DATASET, SHARDS, _image_hashes)
        if PREDICT_DIR:
            LISTINGS["predict"] = manifest.folder_listing(
                PREDICT_DIR, _to_predict, _image_hashes
            )
    except manifest.UnreadableError as _error:
        raise WorkflowError(str(_error)) from None
    _image_hashes.save()
    _file_hashes.save()
    DIGESTS = manifest.stage(
        {name: text for name, (text, _) in LISTINGS.items()}, STAGED
    )
    # A damaged result looks up to date to Snakemake: set it aside, so this run rebuilds it.
    _damaged = intermediates.set_aside("results", f"{STATE}/damaged")
    for _path, _reason, _moved in _damaged:
        logger.warning(
            f"{_path} is damaged ({_reason}): moved to {_moved}; this run rebuilds it."
        )
    # A run killed without clean-up (kill -9, power cut) must not block the next one.
    _cleared = locks.clear_stale_locks()
    if _cleared:
        logger.warning(f"Removed the locks of a killed run: {_cleared}")
    # Nothing below the folders is left out unnamed: one warning, and every entry
    # with its reason in a file, rewritten only when the list changed.
    _ignored = [
        (os.path.join(folder, name), reason)
        for folder, found in (
            (config["data_dir"], DATASET.ignored),
            (PREDICT_DIR, _predict_ignored),
        )
        for name, reason in found
    ]
    if _ignored:
        _rows = [{"file": name, "reason": reason} for name, reason in _ignored]
        manifest.write_if_changed(
            IGNORED_LIST, manifest.manifest_text(_rows, ["file", "reason"])
        )
        logger.warning(
            f"Ignoring {len(_ignored)} entries that are not images in a class folder: "
            f"{listing.summary(_ignored)}. Each with its reason: {IGNORED_LIST}"
        )
    else:
        Path(IGNORED_LIST).unlink(missing_ok=True)
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


def split_size(split):
    """Images of a split: listed by the main process, counted from its shards' manifests in a job."""
    if MAIN:
        return DATASET.count(split)
    return sum(
        manifest.count_rows(path) for path in Path(MANIFESTS, split).glob("shard-*.csv")
    )


def split_images(wildcards):
    return split_size(wildcards.split)


def shard_numbers(split):
    """Shards of a split that hold at least one image."""
    prefix = f"{split}/shard-"
    return sorted(int(n.removeprefix(prefix)) for n in LISTINGS if n.startswith(prefix))


def shard_files(backbone, split, suffix, views=False):
    """One backbone's and split's shard files ending in ``suffix`` (of its views' shards with ``views``)."""
    shards = f"shards/{split}/views" if views else f"shards/{split}"
    prefix = f"results/{backbone}/features/{shards}"
    # A cluster job: the files on disk (the split's manifest names its rows').
    if not MAIN:
        named = re.compile(rf"shard-\d+{re.escape(suffix)}")
        return sorted(
            str(p) for p in Path(prefix).glob("shard-*") if named.fullmatch(p.name)
        )
    return [f"{prefix}/shard-{k}{suffix}" for k in shard_numbers(split)]


def shard_outputs(suffix, views=False):
    """Input function: shard_files of the job's backbone and split."""
    return lambda wildcards: shard_files(
        wildcards.backbone, wildcards.split, suffix, views
    )


def split_rows(*splits):
    """Input function: ``{<split>_rows: files}``, the shard files that hold the rows of
    each split (read through its manifest, tlflow.split_rows)."""
    return lambda wildcards: {
        f"{split}_rows": shard_files(wildcards.backbone, split, ".npy")
        for split in splits
    }


def view_set(wildcards):
    """The views of a split: augmented ones of train, test-time ones of the evaluation split."""
    views_of = {"train": TRAIN_VIEWS, EVAL_SPLIT: TEST_TIME_VIEWS}.get(wildcards.split)
    if views_of is None:
        raise WorkflowError(
            f"split '{wildcards.split}' has no views: set 'augmentation: views:' (train) "
            "or 'augmentation: test_time:' (the evaluation split) in the config."
        )
    return views_of


def view_files(split, *names):
    """Input function: ``{name: files}`` of a split's joined views, or nothing without
    views: ``views`` are the shard files holding their rows, the others joined files."""
    suffixes = {
        "views_labels": "_labels.npy",
        "views_manifest": "_manifest.csv",
    }

    def files(wildcards):
        if (TRAIN_VIEWS if split == "train" else TEST_TIME_VIEWS) is None:
            return {}
        prefix = f"results/{wildcards.backbone}/features/views/{split}"
        return {
            name: (
                shard_files(wildcards.backbone, split, ".npy", views=True)
                if name == "views"
                else f"{prefix}{suffixes[name]}"
            )
            for name in names
        }

    return files


def widened_views_mb(input):
    """MB the training views grow by in memory: float16 rows are joined as float32."""
    if not hasattr(input, "views"):
        return 0
    return sum(Path(path).stat().st_size for path in input.views) / 1e6


def backbone_spec(wildcards):
    return SPECS[wildcards.backbone]


def result_settings(section, *switches):
    """A config section's settings without its resources and ``switches``: they change
    no result, so as params they must rerun nothing."""
    left_out = ("threads", "mem_mb", "runtime", "gpus", *switches)
    return {k: v for k, v in config[section].items() if k not in left_out}


def head_meta(wildcards):
    """Recorded beside the head: what prediction needs to rebuild the features, and
    the augmented views it was trained on (if any)."""
    meta = {"classes": CLASSES, "backbone": SPECS[wildcards.backbone]}
    if TRAIN_VIEWS:
        meta["augmentation"] = {
            "views": len(TRAIN_VIEWS["names"]),
            **TRAIN_VIEWS["family"],
        }
    return meta


def test_time_params():
    """``{"test_time": [...]}`` when test-time views are on, else nothing: spread into
    params, so a config without them keeps the rules' parameters as they were."""
    return {"test_time": TEST_TIME_VIEWS["names"]} if TEST_TIME_VIEWS else {}


def gpu_request(section):
    """``{"gpu": n}`` when config[section]["gpus"] asks for GPUs, else nothing.

    Spread into a rule's resources (``**gpu_request("head")``), so a CPU-only
    config submits no GPU request at all (no --gpus for SLURM, no gpu for --resources).
    """
    gpus = config[section]["gpus"]
    return {"gpu": gpus} if gpus else {}


def keras_env(section):
    """The conda env of a TensorFlow rule: TensorFlow's CUDA build when
    config[section]["gpus"] asks for GPUs, else its CPU build. Paths are relative
    to the rule files (workflow/rules/)."""
    gpus = config[section]["gpus"]
    return "../../envs/keras-gpu.yaml" if gpus else "../../envs/keras.yaml"


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
                    "audit/review.html",
                ]
                if config["audit"]["enabled"]
                else []
            ),
        )
    ]
