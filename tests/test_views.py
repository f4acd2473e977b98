"""Augmented and test-time views: deterministic, cached like the originals, used honestly."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY_CONFIG, make_workdir, planned_jobs, snakemake, split_features, write_config
from test_features import SPEC, _shard

from tlflow import features, views
from tlflow.augment import transforms
from tlflow.images import load_rgb
from tlflow.synthetic import draw

SECTION = {
    "views": 3,
    "seed": 0,
    "test_time": [],
    "dtype": "float32",
    "flip": True,
    "zoom": 0.2,
    "rotation": 10,
    "brightness": 0.2,
    "contrast": 0.2,
}


def _views(section=None, **changes):
    return views.training_views({**(section or SECTION), **changes})


def _extract(tmp_path, manifest, data, view_set, name="out", **options):
    outputs = [tmp_path / f"{name}{s}" for s in (".npy", ".csv", ".skipped.csv")]
    counts = features.extract_shard(
        manifest, data, SPEC, *outputs, tmp_path / "cache", views=view_set, **options
    )
    table = pd.read_csv(outputs[1], dtype={"view": str})
    return counts, dict(zip(zip(table["file"], table["view"]), np.load(outputs[0])))


def _originals(tmp_path, manifest, data) -> int:
    """Extract the originals of the shard; the rows computed."""
    outputs = [tmp_path / f"originals{s}" for s in (".npy", ".csv", ".skipped.csv")]
    return features.extract_shard(manifest, data, SPEC, *outputs, tmp_path / "cache")["computed"]


def test_a_view_is_the_same_every_time_and_differs_from_the_image_and_other_views(tmp_path):
    data, _, rows = _shard(tmp_path)
    image = load_rgb(data / rows[0]["file"], (32, 32))
    view_set = _views()
    made = [views.view(view_set, image, row) for row in views.rows(view_set, rows[:1])]
    again = [views.view(_views(), image.copy(), row) for row in views.rows(view_set, rows[:1])]
    for first, second in zip(made, again):
        np.testing.assert_array_equal(first, second)
    assert all(not np.array_equal(v, image) for v in made)
    assert not np.array_equal(made[0], made[1]) and not np.array_equal(made[1], made[2])
    other_seed = views.view(_views(seed=1), image, views.rows(view_set, rows[:1])[0])
    assert not np.array_equal(other_seed, made[0])


def test_views_are_the_same_whatever_the_shards(tmp_path):
    data, manifest, rows = _shard(tmp_path)
    counts, whole = _extract(tmp_path / "one", manifest, data, _views())
    assert counts == {"rows": 3 * len(rows), "computed": 3 * len(rows), "skipped": 0}
    parts = {}
    for k in range(3):
        _, shard_manifest, _ = _shard(tmp_path, shards=3, k=k)
        parts.update(_extract(tmp_path / "three", shard_manifest, data, _views(), name=f"s{k}")[1])
    assert parts.keys() == whole.keys()
    # Other batch slots: the same views, equal up to oneDNN's last bits.
    for key, row in whole.items():
        np.testing.assert_allclose(parts[key], row, rtol=1e-5, atol=1e-6)


def test_more_views_or_a_new_image_compute_only_the_new_rows(tmp_path):
    data, manifest, rows = _shard(tmp_path)
    n = len(rows)
    _, first = _extract(tmp_path, manifest, data, _views(views=2))
    counts, more = _extract(tmp_path, manifest, data, _views(views=4), name="more")
    assert counts == {"rows": 4 * n, "computed": 2 * n, "skipped": 0}  # views 2 and 3 only
    for key, row in first.items():
        np.testing.assert_array_equal(more[key], row)  # views 0 and 1: from the cache
    assert _originals(tmp_path, manifest, data) == n
    draw("circle", 32, np.random.default_rng(9)).save(data / "train/circles/added, 'new'.jpg")
    data, manifest, _ = _shard(tmp_path)
    counts, _ = _extract(tmp_path, manifest, data, _views(views=4), name="added")
    assert counts == {"rows": 4 * (n + 1), "computed": 4, "skipped": 0}
    assert _originals(tmp_path, manifest, data) == 1  # K + 1 rows for the new image, nothing else


def test_another_amount_recomputes_every_view_but_keeps_the_originals_cache(tmp_path):
    data, manifest, rows = _shard(tmp_path)
    _originals(tmp_path, manifest, data)
    _extract(tmp_path, manifest, data, _views())
    counts, _ = _extract(tmp_path, manifest, data, _views(rotation=20), name="rotated")
    assert counts["computed"] == 3 * len(rows)
    assert _originals(tmp_path, manifest, data) == 0


def test_views_stored_as_float16_are_the_float32_ones_rounded(tmp_path):
    data, manifest, _ = _shard(tmp_path)
    _, wide = _extract(tmp_path, manifest, data, _views())
    _, narrow = _extract(tmp_path, manifest, data, _views(dtype="float16"), name="narrow")
    assert np.load(tmp_path / "narrow.npy").dtype == np.float16
    for key, row in wide.items():
        np.testing.assert_array_equal(narrow[key], row.astype(np.float16))


def test_a_bad_image_fails_once_for_all_its_views_or_is_skipped(tmp_path):
    data, _, _ = _shard(tmp_path)
    (data / "train/circles/zz bad.jpg").write_bytes(b"")
    data, manifest, rows = _shard(tmp_path)
    with pytest.raises(features.BadImagesError, match=r"^1 image\(s\)(?s:.*)zz bad.jpg"):
        _extract(tmp_path, manifest, data, _views())
    counts, kept = _extract(tmp_path, manifest, data, _views(), on_bad_image="skip")
    # The good images' views were kept from the failed run: nothing to compute.
    assert counts == {"rows": 3 * len(rows), "computed": 0, "skipped": 1}
    assert len(kept) == 3 * (len(rows) - 1)
    assert pd.read_csv(tmp_path / "out.skipped.csv")["file"].tolist() == ["train/circles/zz bad.jpg"]


def test_a_killed_view_extraction_resumes_from_its_parts(tmp_path, monkeypatch):
    data, manifest, rows = _shard(tmp_path)
    real = features.compute

    def killed_after_one_batch(*args, **kwargs):
        yield next(real(*args, **kwargs))
        raise KeyboardInterrupt  # what a kill leaves: the parts written so far

    monkeypatch.setattr(features, "compute", killed_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        _extract(tmp_path, manifest, data, _views(), batch_size=8)
    assert not (tmp_path / "out.npy").exists()
    monkeypatch.setattr(features, "compute", real)
    counts, resumed = _extract(tmp_path, manifest, data, _views(), batch_size=8)
    assert counts["computed"] == 3 * len(rows) - 8
    _, clean = _extract(tmp_path / "clean", manifest, data, _views(), batch_size=8)
    assert resumed.keys() == clean.keys()
    for key, row in clean.items():
        np.testing.assert_allclose(resumed[key], row, rtol=1e-5, atol=1e-6)


def test_the_deployed_models_test_time_views_are_the_features_views():
    import keras

    from tlflow import deploy

    # Not square, so that a view along the wrong axis shows.
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    view_set = views.test_time_views({**SECTION, "test_time": list(views.TEST_TIME)})
    assert view_set["names"] == ["flip"]
    for name in view_set["names"]:
        features_view = views.view(view_set, image, {"view": name})
        inputs = keras.Input((5, 7, 3))
        model = keras.Model(inputs, deploy.test_time_layer(name)(inputs))
        deployed = model.predict(image[None].astype(np.float32), verbose=0)[0]
        np.testing.assert_array_equal(deployed, features_view.astype(np.float32))
    np.testing.assert_array_equal(views.view(view_set, image, {"view": "flip"}), image[:, ::-1])


# End to end: one run with two augmented views and the flip at test time.
AUG_CONFIG = {**TINY_CONFIG, "augmentation": {"views": 2, "test_time": ["flip"]}}


@pytest.fixture(scope="module")
def augmented_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("augmented") / "run", AUG_CONFIG)
    snakemake(workdir)
    return workdir


@pytest.fixture
def augmented_copy(augmented_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(augmented_run, copy, symlinks=True, copy_function=shutil.copy2)
    return copy


@pytest.mark.workflow
def test_the_head_trains_on_originals_and_views_and_validation_stays_originals(augmented_run):
    features_dir = augmented_run / "results/vgg16/features"
    train = pd.read_csv(features_dir / "train_manifest.csv")
    train_views = pd.read_csv(features_dir / "views/train_manifest.csv", dtype={"view": str})
    assert train_views["view"].tolist() == ["0", "1"] * len(train)
    assert train_views["file"].tolist() == [f for f in train["file"] for _ in range(2)]
    stored = split_features(augmented_run, "train", views=True)
    # Stored pooled like the originals, in the views' dtype (float16, the default).
    assert stored.shape == (2 * len(train), 2, 512) and stored.dtype == np.float16
    assert not list(features_dir.glob("views/validation*"))
    log = (augmented_run / "logs/vgg16/train_head.log").read_text()
    assert f"{3 * len(train)} training rows" in log
    meta = json.loads((augmented_run / "results/vgg16/head/head.json").read_text())
    assert meta["augmentation"] == {
        "views": 2,
        "seed": 0,
        "dtype": "float16",
        "transforms": transforms(SECTION),
    }


@pytest.mark.workflow
def test_the_deployed_model_averages_over_the_views_as_the_evaluation_does(augmented_run):
    import keras

    from tlflow import probabilities

    results = augmented_run / "results/vgg16"
    table = pd.read_csv(results / "evaluation/predictions.csv")
    columns = [c for c in table.columns if c.startswith("prob_")]
    raw = np.stack([load_rgb(augmented_run / "data" / f, (32, 32)) for f in table["file"]])
    deployed = keras.models.load_model(results / "model.keras").predict(raw, verbose=0)
    np.testing.assert_allclose(deployed, table[columns], atol=1e-5)
    head = keras.models.load_model(results / "head/head.h5", compile=False)
    alone = probabilities.predict_proba(head, split_features(augmented_run, "test"))
    assert np.abs(alone - table[columns].to_numpy()).max() > 1e-4  # the flip changed them
    assert json.loads((results / "evaluation/metrics.json").read_text())["test_time_views"] == ["flip"]
    summary = (results / "evaluation/summary.html").read_text()
    assert "2 per training image" in summary and "flip, averaged with the original" in summary


@pytest.mark.workflow
def test_an_added_image_computes_its_original_and_its_views_only(augmented_copy):
    draw("circle", 32, np.random.default_rng(5)).save(augmented_copy / "data/train/circles/new.jpg")
    planned = planned_jobs(augmented_copy)
    assert planned["extract_shard"] == planned["extract_views"] == 1
    snakemake(
        augmented_copy,
        "results/vgg16/features/train_manifest.csv",
        "results/vgg16/features/views/train_manifest.csv",
    )
    logs = augmented_copy / "logs/vgg16"
    newest = [
        max((logs / rule / "train").glob("*.log"), key=lambda p: p.stat().st_mtime_ns)
        for rule in ("extract_shard", "extract_views")
    ]
    assert "1 to compute" in newest[0].read_text() and "2 to compute" in newest[1].read_text()


@pytest.mark.workflow
def test_an_amount_reruns_the_views_and_more_views_compute_only_the_new_ones(augmented_copy):
    config = yaml.safe_load((augmented_copy / "config.yaml").read_text())
    config["augmentation"]["brightness"] = 0.3
    write_config(augmented_copy, config)
    planned = planned_jobs(augmented_copy)
    assert planned["extract_views"] == 2 and "extract_shard" not in planned  # train's 2 shards
    config["augmentation"].update(brightness=0.2, views=3)
    write_config(augmented_copy, config)
    snakemake(augmented_copy, "results/vgg16/features/views/train_manifest.csv")
    for log in (augmented_copy / "logs/vgg16/extract_views/train").glob("*.log"):
        images = pd.read_csv(augmented_copy / "results/manifests/train" / log.name.replace(".log", ".csv"))
        assert f"{3 * len(images)} views in shard, {2 * len(images)} reused" in log.read_text()


@pytest.mark.workflow
def test_views_zero_is_the_workflow_without_augmentation(finished_copy):
    config = yaml.safe_load((finished_copy / "config.yaml").read_text())
    assert "augmentation" not in config
    write_config(finished_copy, {**config, "augmentation": {"views": 0, "zoom": 0.4, "seed": 3}})
    assert planned_jobs(finished_copy) == {}
    assert not [p for p in (finished_copy / "results").rglob("*") if "views" in p.name]
    assert "augmentation" not in json.loads((finished_copy / "results/vgg16/model.json").read_text())


@pytest.mark.workflow
def test_the_head_asks_memory_for_its_views_as_float32_rows(augmented_run):
    from tlflow import job_memory

    log = (augmented_run / "logs/vgg16/train_head.log").read_text()
    peak, asked = map(float, re.search(r"peak memory (\d+) MB of the (\d+) MB asked", log).groups())
    shards = {
        name: sorted((augmented_run / "results/vgg16/features/shards" / name).glob("shard-*.npy"))
        for name in ("train", "validation", "train/views")
    }
    assert job_memory.row_files(shards["train/views"]).itemsize == 2  # stored float16
    request = [shards["validation"], ["avg", "max"], "pooled", 3]
    # The views' rows are pooled beside the originals', as float32.
    assert asked == job_memory.train_head(shards["train"] + shards["train/views"], *request)
    assert peak < asked
