"""End to end: Snakemake on tiny generated images, and each bad input's message."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import COUNTS, TINY_CONFIG, snakemake, split_features, write_config

from tlflow import precision

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.workflow
@pytest.mark.parametrize("split", ["train", "validation"])
def test_every_image_becomes_one_row_with_its_folder_label(finished_run, split):
    features_dir = finished_run / "results/vgg16/features"
    features = split_features(finished_run, split)
    labels = np.load(features_dir / f"{split}_labels.npy")
    manifest = pd.read_csv(features_dir / f"{split}_manifest.csv")
    on_disk = sorted(
        p.relative_to(finished_run / "data").as_posix()
        for p in (finished_run / "data" / split).rglob("*.jpg")
    )
    assert len(features) == len(labels) == len(manifest) == len(on_disk)
    assert sorted(manifest["file"]) == on_disk
    classes = sorted(p.name for p in (finished_run / "data" / split).iterdir())
    for row, label in zip(manifest.itertuples(), labels):
        folder = row.file.split("/")[1]
        assert row._2 == folder and classes[label] == folder and row.label == label
    # VGG16 at 32x32 gives a 1x1x512 map, stored pooled: its average and its maximum.
    assert features.shape[1:] == (2, 512) and features.dtype == np.float32
    assert np.isfinite(features).all()


@pytest.mark.workflow
def test_rows_match_the_features_of_each_image_alone(finished_run):
    """Joined rows stay aligned with the manifest: recompute two images on their own."""
    from tlflow import features

    spec = json.loads((finished_run / "results/vgg16/head/head.json").read_text())["backbone"]
    manifest = pd.read_csv(finished_run / "results/vgg16/features/train_manifest.csv")
    joined = split_features(finished_run, "train")
    picks = [0, len(manifest) // 2, len(manifest) - 1]
    paths = [finished_run / "data" / manifest.file[i] for i in picks]
    ((_, rows, _),) = features.compute(paths, spec, batch_size=4, threads=1)
    assert spec["features"] == "pooled" and rows.shape == (3, 2, 512)
    np.testing.assert_allclose(rows, joined[picks], rtol=0.02, atol=1e-3)
    assert not np.allclose(rows[0], rows[1])  # distinct images, distinct rows


@pytest.mark.workflow
def test_head_loads_and_predicts_probabilities(finished_run):
    import keras

    head = keras.models.load_model(finished_run / "results/vgg16/head/head.h5")
    features = split_features(finished_run, "validation")
    probabilities = head.predict(features, verbose=0)
    assert probabilities.shape == (len(features), 3)  # softmax: three classes
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.workflow
def test_head_metadata_records_what_shapes_the_features(finished_run):
    meta = json.loads((finished_run / "results/vgg16/head/head.json").read_text())
    assert meta["classes"] == ["circles", "squares", "triangles"]
    backbone = meta["backbone"]
    assert backbone["application"] == "vgg16" and backbone["weights"] == "none"
    assert backbone["image_size"] == [32, 32]
    assert backbone["preprocessing"] == "vgg16"
    assert backbone["features"] == "pooled" and meta["feature_shape"] == [2, 512]
    # The config leaves `precision: auto`: the faster where it was timed, as the
    # session's cache of decisions (conftest) holds it.
    assert backbone["precision"] == precision.decide("auto", backbone, 8, "unused")[0]


@pytest.mark.workflow
def test_history_has_one_row_per_epoch_that_ran(finished_run):
    history = pd.read_csv(finished_run / "results/vgg16/head/history.csv")
    head = json.loads((finished_run / "results/vgg16/head/head.json").read_text())["head"]
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert history["epoch"].tolist() == list(range(1, head["epochs_run"] + 1))
    assert head["epochs_run"] <= TINY_CONFIG["head"]["epochs"]
    assert history.notna().all().all()


@pytest.mark.workflow
@pytest.mark.parametrize("name", ["loss", "accuracy"])
def test_plots_are_png_images(finished_run, name):
    from PIL import Image

    path = finished_run / f"results/vgg16/plots/{name}.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.size[0] >= 400 and image.size[1] >= 300


@pytest.mark.workflow
def test_every_job_leaves_a_log_and_a_benchmark(finished_run):
    logs = sorted(p.with_suffix("") for p in (finished_run / "logs").rglob("*.log"))
    benchmarks = sorted(
        p.with_name(p.name.removesuffix(".benchmark.tsv"))
        for p in (finished_run / "logs").rglob("*.benchmark.tsv")
    )
    assert logs == benchmarks
    # logs/<backbone>/<rule>/..., or logs/<rule>/... for rules of no backbone
    parts = [p.relative_to(finished_run / "logs").parts for p in logs]
    rules = {folders[1] if folders[0] == "vgg16" else folders[0] for folders in parts}
    assert {"publish_manifest", "extract_shard", "join_split", "train_head", "plot_curves"} <= rules


@pytest.mark.workflow
def test_every_job_logs_its_peak_memory_under_its_request(finished_run):
    peaks = {}
    for log in (finished_run / "logs").rglob("*.log"):
        found = re.findall(r"peak memory (\d+) MB of the (\d+) MB asked", log.read_text())
        assert len(found) == 1, log
        peaks[log] = tuple(map(int, found[0]))
    assert peaks and all(peak < asked for peak, asked in peaks.values()), peaks


# --- bad input: each fails before any job runs, naming the file or key and the fix


def _fails_with(workdir, *fragments):
    result = snakemake(workdir, "--dry-run", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in fragments:
        assert fragment in output, output
    return output


@pytest.mark.workflow
def test_missing_data_dir(workdir):
    shutil.rmtree(workdir / "data")
    _fails_with(workdir, "data_dir 'data' does not exist", "Set 'data_dir'")


@pytest.mark.workflow
def test_missing_split(workdir):
    shutil.rmtree(workdir / "data/validation")
    _fails_with(workdir, "data/validation", "not found")


@pytest.mark.workflow
def test_class_folder_without_images(workdir):
    for image in (workdir / "data/train/squares").iterdir():
        image.unlink()
    _fails_with(workdir, "'data/train/squares' has no images")


@pytest.mark.workflow
def test_class_sets_differ_between_splits(workdir):
    (workdir / "data/test/squares").rename(workdir / "data/test/rectangles")
    _fails_with(workdir, "class folders differ", "missing: 'squares'", "extra: 'rectangles'")


@pytest.mark.workflow
def test_unknown_backbone_lists_valid_names(workdir):
    write_config(workdir, {**TINY_CONFIG, "backbones": [{"name": "vgg17"}]})
    _fails_with(workdir, "unknown backbone 'vgg17'", "vgg16", "resnet50", "efficientnetb0")


@pytest.mark.workflow
def test_missing_weights_file(workdir):
    config = {**TINY_CONFIG, "backbones": [{"name": "vgg16", "weights": "nope.h5"}]}
    write_config(workdir, config)
    _fails_with(workdir, "weights file 'nope.h5'", "not found")


@pytest.mark.workflow
def test_wrong_config_type(workdir):
    write_config(workdir, {**TINY_CONFIG, "head": {"epochs": "many"}})
    _fails_with(workdir, "'many' is not of type 'integer'", "epochs")


@pytest.mark.workflow
def test_split_list_without_validation(workdir):
    write_config(workdir, {**TINY_CONFIG, "splits": ["train", "test"]})
    _fails_with(workdir, "must include 'validation'")


@pytest.mark.workflow
def test_non_image_files_are_ignored_and_listed(workdir):
    (workdir / "data/train/circles/.DS_Store").write_bytes(b"\0\1")
    (workdir / "data/train/circles/Thumbs.db").write_bytes(b"\0\1")
    (workdir / "data/train/circles/notes.txt").write_text("shot on a phone")
    result = snakemake(workdir, "--dry-run")
    output = result.stdout + result.stderr
    assert "Ignoring 3 entries that are not images in a class folder: 2 not an image file" in output
    assert "1 hidden" in output and "Each with its reason: logs/ignored_files.csv" in output
    for name in (".DS_Store", "Thumbs.db", "notes.txt"):
        assert f"train/circles/{name}" in output


@pytest.mark.workflow
def test_undecodable_images_fail_with_the_list_or_are_skipped(workdir):
    bad = ["data/train/circles/broken.jpg", "data/train/squares/empty.png"]
    (workdir / bad[0]).write_bytes(b"\xff\xd8 not really a jpeg")
    (workdir / bad[1]).write_bytes(b"")
    target = "results/vgg16/features/train_manifest.csv"
    result = snakemake(workdir, target, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "could not be decoded" in output and "on_bad_image: skip" in output
    # both shards ran (keep-going), so between them every bad file is named
    for path in bad:
        assert path in output

    write_config(workdir, {**TINY_CONFIG, "on_bad_image": "skip"})
    snakemake(workdir, target)
    skipped = pd.read_csv(workdir / "results/vgg16/features/train_skipped.csv")
    assert sorted(skipped["file"]) == sorted(p.removeprefix("data/") for p in bad)
    rows = len(split_features(workdir, "train"))
    assert rows == sum(COUNTS["train"] + i for i in range(3))  # all good images kept


@pytest.mark.workflow
def test_a_split_keeps_its_rows_in_its_shards_only(finished_run):
    """No joined copy: the manifest says which shard file holds each row, with its checksum."""
    import hashlib

    features = finished_run / "results/vgg16/features"
    assert sorted(p.name for p in features.glob("*.npy")) == [
        f"{split}_labels.npy" for split in sorted(COUNTS)
    ]
    for split in COUNTS:
        manifest = pd.read_csv(features / f"{split}_manifest.csv", dtype=str)
        rows = split_features(finished_run, split)
        assert len(rows) == len(manifest) == sum(COUNTS[split] + i for i in range(3))
        digests = [hashlib.blake2b(np.ascontiguousarray(r), digest_size=16).hexdigest() for r in rows]
        assert digests == manifest["blake2b"].tolist()
        assert set(manifest["shard"]) <= {
            str(p.relative_to(finished_run)) for p in (features / "shards" / split).glob("shard-*.npy")
        }
