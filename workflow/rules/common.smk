# Config validation, the run's plan, input functions and targets. The plan
# (tlflow.plan: backbone specs, classes, the images' listings and their digests)
# is made when Snakemake reads the workflow, so a bad config or a bad folder
# fails at once, before any job starts. A job that reads the workflow again (a
# cluster job) loads the plan its run saved, and plans nothing.
import sys

from snakemake.cli import get_argument_parser
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from tlflow import augment, job_memory, plan, selection, targets

validate(config, schema="../schemas/config.schema.yaml")

FINE_TUNE = config["fine_tune"]["enabled"]
if config["predict"]["model"] == "fine_tuned" and not FINE_TUNE:
    raise WorkflowError(
        "config 'predict: model: fine_tuned' needs a fine-tuned model: set "
        "'fine_tune: enabled: true', or 'predict: model: frozen'."
    )
PREDICT_DIR = config["predict"]["images"]
EXPORT_FORMATS = config["export"]["formats"]
MANIFESTS = "results/manifests"
# Bookkeeping, not results: the plans, hash caches and staged listings.
STATE = ".snakemake/tlflow"
# Every entry under data_dir (and the images to predict) that is not used, and why.
IGNORED_LIST = "logs/ignored_files.csv"

try:
    if workflow.is_main_process:
        PLAN = plan.make_plan(config, STATE)
        plan.save(PLAN, STATE)
    else:
        PLAN = plan.load(config, STATE)
except plan.PlanError as _error:
    raise WorkflowError(str(_error)) from None

if workflow.is_main_process:
    for _id, _why in PLAN.precision_reason.items():
        logger.info(f"Extraction precision of {_id}: {PLAN.precision[_id]} ({_why}).")
    logger.info(f"Images per split and class: {PLAN.counts}")
    if PLAN.corrected:
        logger.info(f"Corrections of {config['corrections']}: {PLAN.corrected}")
    for _warning in PLAN.warnings:
        logger.warning(_warning)
    _dry_run = get_argument_parser().parse_known_args(sys.argv[1:])[0].dryrun
    for _warning in plan.prepare_run(PLAN, STATE, IGNORED_LIST, sys.argv, _dry_run):
        logger.warning(_warning)

SPLITS, SPECS, CLASSES = PLAN.splits, PLAN.specs, PLAN.classes
# The split the evaluation scores; train fits the head and validation chooses and
# calibrates it (tlflow.splits).
EVAL_SPLIT = PLAN.evaluation_split
# Several labels per image: the joins make 0/1 label matrices of these (tlflow.label_sets).
LABEL_SETS = (CLASSES, PLAN.separator) if PLAN.multi_label else None
# The audit covers single-label data only (docs/multilabel.md).
AUDIT = config["audit"]["enabled"] and not PLAN.multi_label


wildcard_constraints:
    backbone=r"[A-Za-z0-9_.-]+",
    model=r"[A-Za-z0-9_.-]+(/fine_tuned)?",
    split=r"[A-Za-z0-9_.-]+",
    k=r"\d+",
    listing=r"[A-Za-z0-9_.-]+/(shard-\d+|labels)|predict",


def staged_listing(wildcards):
    return PLAN.staged_listing(wildcards.listing)


def images_of(listing):
    """Input function: the images of ``listing`` (e.g. "{split}/shard-{k}"), filled in."""
    return lambda w: PLAN.listing_size(listing.format(**dict(w.items())))


def split_images(wildcards):
    return PLAN.split_size(wildcards.split)


# Paths of rules' outputs are rules.<name>.output: spelled once, in the rule that
# writes them (and so read only after it).
def shard_files(backbone, split, name="features", views=False):
    """extract_shard's (extract_views') output ``name`` of each shard of ``split``."""
    writer = rules.extract_views if views else rules.extract_shard
    k = PLAN.shard_numbers(split)
    return expand(writer.output[name], backbone=backbone, split=split, k=k)


def shard_outputs(name, views=False):
    """Input function: shard_files of the job's backbone and split."""
    return lambda w: shard_files(w.backbone, w.split, name, views)


def split_rows(*splits):
    """Input function: ``{<split>_rows: files}``, the shard files that hold the rows of
    each split (read through its manifest, tlflow.split_rows)."""
    return lambda w: {f"{s}_rows": shard_files(w.backbone, s) for s in splits}


def output_of(writer, name=0, **wildcards):
    """The output ``name`` of ``writer`` (a rules.<name>), ``wildcards`` filled in."""
    return expand(writer.output[name], **wildcards, allow_missing=True)[0]


def view_set(wildcards):
    """The views of a split: augmented ones of train, test-time ones of the evaluation split."""
    if wildcards.split not in PLAN.views:
        raise WorkflowError(
            f"split '{wildcards.split}' has no views: set 'augmentation: views:' (train) "
            "or 'augmentation: test_time:' (the evaluation split) in the config."
        )
    return PLAN.views[wildcards.split]


def view_files(split, *joined):
    """Input function: a split's views, ``[]`` without them (tlflow.job_inputs):
    ``views``, their shards, and ``views_<name>``, join_views' outputs ``joined``."""

    def files(wildcards):
        if split not in PLAN.views:
            return {"views": [], **{f"views_{name}": [] for name in joined}}
        rows = shard_files(wildcards.backbone, split, views=True)
        join = {
            f"views_{n}": output_of(rules.join_views, n, split=split) for n in joined
        }
        return {"views": rows, **join}

    return files


def backbone_spec(wildcards):
    return SPECS[wildcards.backbone]


def result_settings(section, *switches):
    """A config section's settings without its resources and ``switches``: they change
    no result, so as params they must rerun nothing."""
    left_out = ("threads", "mem_mb", "runtime", "gpus", *switches)
    return {k: v for k, v in config[section].items() if k not in left_out}


def head_meta(wildcards):
    return PLAN.head_meta(wildcards.backbone)


def test_time_params():
    """``{"test_time": [...]}`` when test-time views are on, else nothing: spread into
    params, so a config without them keeps the rules' parameters as they were."""
    test_time = PLAN.views.get(EVAL_SPLIT)
    return {"test_time": test_time["names"]} if test_time else {}


def gpu_request(section):
    """``{"gpu": n}`` when config[section]["gpus"] asks for GPUs, else nothing: spread
    into resources, a CPU-only config requests none (no --gpus for SLURM)."""
    gpus = config[section]["gpus"]
    return {"gpu": gpus} if gpus else {}


def keras_env(section):
    """The conda env of a TensorFlow rule: the CUDA build when config[section]["gpus"]
    asks for GPUs, else the CPU build (paths relative to workflow/rules/)."""
    gpus = config[section]["gpus"]
    return "../../envs/keras-gpu.yaml" if gpus else "../../envs/keras.yaml"


def export_outputs(folder):
    """export_model's outputs in ``folder`` (tlflow.targets); a SavedModel is a folder."""
    files = targets.export_files(config, folder)
    if "saved_model" in files:
        files["saved_model"] = directory(files["saved_model"])
    return files


def model_manifest(wildcards, split):
    """join_split's manifest of ``split`` for a model wildcard (``<id>[/fine_tuned]``)."""
    backbone = wildcards.model.split("/")[0]
    return output_of(rules.join_split, "manifest", backbone=backbone, split=split)


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
    return output_of(rules.publish_manifest, listing="predict")


def final_targets():
    return targets.final(config, list(SPECS), PLAN.multi_label)
