"""Plan a run from its validated config and the data folder."""

from __future__ import annotations

import os
from pathlib import Path

from .. import backbones, images, layouts, manifest, pooling, precision, predict, selection, splits, views
from .model import Listing, Plan, PlanError, config_digest

# What make_plan turns into a PlanError: a bad config, a bad folder, an unreadable image.
_REFUSED = (
    backbones.BackboneError,
    images.DatasetError,
    manifest.UnreadableError,
    predict.PredictError,
    splits.SplitError,
)


def make_plan(config: dict, state_dir: str | os.PathLike = ".snakemake/tlflow") -> Plan:
    """The plan of ``config`` (validated against the schema) in the working directory.

    Hashes only the files changed since the last plan (caches in ``state_dir``) and
    stages each listing as ``<state_dir>/staged/<digest>.csv`` (manifest.stage), so
    that an edited image reruns its shard and a touched one does not. Raises
    PlanError with the fix; nothing is planned then.
    """
    try:
        return _make(config, Path(state_dir))
    except _REFUSED as error:
        raise PlanError(str(error)) from None


def decide_precision(config: dict, spec: dict, state: Path) -> tuple[str, str]:
    """(precision, why) of one backbone's features: ``extraction.precision`` as set,
    or for ``auto`` the faster of the two on this machine (tlflow.precision: timed
    once per backbone spec, CPU and TensorFlow version, then read from its cache).

    Decided here, once per run: a cluster job may run on other hardware and must
    compute the features that were planned.
    """
    extraction = config["extraction"]
    return precision.decide(extraction["precision"], spec, extraction["batch_size"], state)


def _specs(config: dict, sha256, state: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Backbone specs by id, and why each has its precision; weights files and saved
    models hashed with ``sha256``."""
    # What is stored per image: pooled rows, or the whole map when a head needs it.
    features = pooling.storage(selection.values(config["head"], "pooling"), config["extraction"]["features"])
    specs, reasons = {}, {}
    for entry in config["backbones"]:
        spec = backbones.resolve(
            entry,
            config["image_size"],
            config["extraction"]["precision"],
            sha256=sha256,
            features=features,
        )
        if spec["id"] in specs:
            raise backbones.BackboneError(
                f"two backbones have the id '{spec['id']}'; give one an 'id:' of its own."
            )
        spec["precision"], reasons[spec["id"]] = decide_precision(config, spec, state)
        specs[spec["id"]] = spec
    return specs, reasons


def _make(config: dict, state: Path) -> Plan:
    evaluation = splits.evaluation_split(config["splits"], config["evaluation"].get("split"))
    # `verify_hashes` reads every file again, for file systems whose ctime is unreliable.
    verify = config["verify_hashes"] in (True, "true")
    file_hashes = manifest.HashCache(state / "file-hashes.json", verify=verify)
    specs, why = _specs(config, file_hashes.sha256, state)

    # Content hashes of the images: they split a folder without split folders
    # (tlflow.layouts), and name each listing's staged file.
    image_hashes = manifest.HashCache(state / "image-hashes.json", verify=verify)
    dataset = layouts.scan(
        config["data_dir"],
        config["splits"],
        image_hashes,
        config.get("split"),
        config["labels"],
        config["label_columns"],
        config["corrections"],
        config["label_separator"],
    )
    if dataset.separator:
        _multi_label_supported(config)
    folder = config["predict"]["images"]
    to_predict, predict_ignored = predict.list_images(folder) if folder else ([], [])
    texts = manifest.listings(dataset, config["extraction"]["shards"], image_hashes)
    if folder:
        texts["predict"] = manifest.folder_listing(folder, to_predict, image_hashes)
    image_hashes.save()
    file_hashes.save()
    staged = state / "staged"
    digests = manifest.stage({name: text for name, (text, _) in texts.items()}, staged)

    view_sets = {
        "train": views.training_views(config["augmentation"]),
        evaluation: views.test_time_views(config["augmentation"]),
    }
    return Plan(
        config=config_digest(config),
        precision={name: spec["precision"] for name, spec in specs.items()},
        precision_reason=why,
        specs=specs,
        classes=dataset.names,
        splits=list(config["splits"]),
        evaluation_split=evaluation,
        views={split: found for split, found in view_sets.items() if found},
        listings={name: Listing(digests[name], n) for name, (_, n) in texts.items()},
        staged=str(staged),
        ignored=[
            (os.path.join(root, name), reason)
            for root, found in ((config["data_dir"], dataset.ignored), (folder, predict_ignored))
            for name, reason in found
        ],
        counts=layouts.counts(dataset),
        corrected=dict(dataset.corrected),
        warnings=layouts.warnings(dataset)
        + (
            ["several labels per image: the audit covers single-label data only, skipped."]
            if dataset.separator and config["audit"]["enabled"]
            else []
        ),
        multi_label=bool(dataset.separator),
        separator=config["label_separator"],
    )


def _multi_label_supported(config: dict) -> None:
    """PlanError naming the settings multi-label data cannot have yet (docs/multilabel.md)."""
    unsupported = [
        name
        for name, on in (
            ("fine_tune: enabled: true", config["fine_tune"]["enabled"]),
            ("augmentation: test_time:", views.test_time_views(config["augmentation"])),
            ("several backbones (their comparison)", len(config["backbones"]) > 1),
        )
        if on
    ]
    if unsupported:
        raise PlanError(
            f"the label table {config['labels']} gives several labels per image, which "
            f"{' and '.join(unsupported)} do not support yet: remove them from the config (one "
            "backbone per run: run the others with their own config)."
        )
