"""The run's plan (tlflow.plan) on tiny folders: what it lists, what keeps its
digests, what it refuses, and how a job finds the plan of its own run."""

from __future__ import annotations

import copy
import dataclasses
import os

import pytest
from conftest import COUNTS, REPO, TINY_CONFIG, planned_jobs, snakemake, write_config
from tlflow import manifest, plan
from tlflow.plan import housekeeping, store
from tlflow.synthetic import make_dataset

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def validated(**changes) -> dict:
    """TINY_CONFIG with ``changes`` and the schema's defaults, as the workflow gets it."""
    from snakemake.utils import validate  # the workflow's own validation fills the defaults

    config = {**copy.deepcopy(TINY_CONFIG), "splits": ["train", "validation", "test"]}
    config.update(changes)
    validate(config, str(SCHEMA))
    return config


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A working directory with tiny images; the plan's paths are relative to it."""
    monkeypatch.chdir(tmp_path)
    # Plans name themselves in the environment: undone after each test.
    monkeypatch.setenv(store.ENV, "")
    monkeypatch.delenv(store.ENV)
    counts = make_dataset(tmp_path / "data", {"train": 4, "validation": 2, "test": 2}, classes=2)
    return tmp_path, counts


def test_the_plan_lists_classes_splits_and_every_image_once(folder):
    root, counts = folder
    made = plan.make_plan(validated(), ".state")
    assert made.classes == sorted(counts["train"]) and made.splits == ["train", "validation", "test"]
    assert made.evaluation_split == "test"
    assert set(made.specs) == {"vgg16"} and made.specs["vgg16"]["features"] == "pooled"
    for split, by_class in counts.items():
        assert made.split_size(split) == sum(by_class.values())
        assert made.shard_numbers(split) and set(made.shard_numbers(split)) <= {0, 1}
        listed = []
        for k in made.shard_numbers(split):
            rows = manifest.read_listing(made.staged_listing(f"{split}/shard-{k}"))
            assert len(rows) == made.listing_size(f"{split}/shard-{k}")
            assert {manifest.shard_of(row["file"], 2) for row in rows} == {k}
            listed += [row["file"] for row in rows]
        on_disk = sorted(str(p.relative_to(root / "data")) for p in (root / "data" / split).rglob("*.jpg"))
        assert sorted(listed) == on_disk
    assert made.ignored == [] and "predict" not in made.listings


def test_a_staged_listing_is_named_by_its_content(folder):
    made = plan.make_plan(validated(), ".state")
    for name, listing in made.listings.items():
        text = open(made.staged_listing(name), encoding="utf-8").read()
        assert manifest.text_digest(text) == listing.digest, name


def test_digests_stay_when_files_are_touched_and_change_with_an_edited_image(folder):
    root, _ = folder
    config = validated()
    first = plan.make_plan(config, ".state")
    image = next((root / "data/train").rglob("*.jpg"))
    os.utime(image, ns=(1, 1))
    assert plan.make_plan(config, ".state") == first
    image.write_bytes(image.read_bytes() + b"\0")
    edited = plan.make_plan(config, ".state")
    changed = [name for name in first.listings if edited.listings[name] != first.listings[name]]
    shard = manifest.shard_of(str(image.relative_to(root / "data")), 2)
    assert changed == [f"train/shard-{shard}"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data_dir": "nowhere"}, "data_dir 'nowhere' does not exist"),
        ({"splits": ["train", "test"]}, "must include 'validation'"),
        ({"backbones": [{"name": "vgg16", "weights": "none"}] * 2}, "two backbones have the id 'vgg16'"),
        ({"backbones": [{"name": "vgg16", "weights": "w.h5"}]}, "weights file 'w.h5'"),
        ({"predict": {"images": "new"}}, "image folder 'new' does not exist"),
    ],
)
def test_what_cannot_be_planned_is_refused_with_the_fix(folder, changes, message):
    with pytest.raises(plan.PlanError, match=message):
        plan.make_plan(validated(**changes), ".state")


def test_the_plan_carries_precision_views_and_the_images_to_predict(folder):
    root, _ = folder
    make_dataset(root / "new", {"x": 1}, classes=2)
    config = validated(
        extraction={**TINY_CONFIG["extraction"], "precision": "bfloat16"},
        augmentation={"views": 2, "test_time": ["flip"]},
        predict={"images": "new"},
    )
    made = plan.make_plan(config, ".state")
    assert made.precision == {"vgg16": "bfloat16"}
    assert made.precision_reason == {"vgg16": "set in the config"}
    assert made.specs["vgg16"]["precision"] == "bfloat16"
    assert made.views["train"]["names"] == ["0", "1"]
    assert made.views["test"] == {"family": {"test_time": "fixed"}, "names": ["flip"]}
    assert made.listing_size("predict") == 3  # 1 + 2 images of the two class folders
    meta = made.head_meta("vgg16")
    assert meta["classes"] == made.classes and meta["augmentation"]["views"] == 2


def test_a_saved_plan_is_what_its_jobs_load(folder, monkeypatch):
    config = validated()
    made = plan.make_plan(config, ".state")
    path = plan.save(made, ".state")
    assert os.environ[store.ENV] == str(path)  # inherited by the jobs the run starts
    assert plan.load(config, ".state") == made
    # A job started without the environment reads the newest plan of its config.
    monkeypatch.delenv(store.ENV)
    assert plan.load(config, ".state") == made


def test_a_second_plan_does_not_replace_the_one_a_running_runs_jobs_read(folder):
    root, _ = folder
    config = validated()
    running = plan.make_plan(config, ".state")
    plan.save(running, ".state")
    named = os.environ[store.ENV]
    next((root / "data/train").rglob("*.jpg")).unlink()  # the data change, a dry run plans again
    again = plan.make_plan(config, ".state")
    assert again != running and str(plan.save(again, ".state")) != named
    os.environ[store.ENV] = named  # the running run's jobs keep their environment
    assert plan.load(config, ".state") == running


def test_a_job_of_another_config_or_without_a_plan_stops_with_the_fix(folder):
    config = validated()
    with pytest.raises(plan.PlanError, match="finds no plan of its run"):
        plan.load(config, ".state")
    plan.save(plan.make_plan(config, ".state"), ".state")
    edited = validated(image_size=[48, 48])
    with pytest.raises(plan.PlanError, match="config differs from the one its run was planned with"):
        plan.load(edited, ".state")


def test_only_the_newest_plans_are_kept(folder):
    made = plan.make_plan(validated(), ".state")
    for n in range(store.KEEP + 3):
        plan.save(dataclasses.replace(made, precision_reason={"vgg16": str(n)}), ".state")
    kept = sorted((folder[0] / ".state/plans").glob("*.json"))
    assert len(kept) == store.KEEP
    assert plan.load(validated(), ".state").precision_reason == {"vgg16": str(store.KEEP + 2)}


def test_entries_left_out_are_listed_with_their_reason(folder):
    root, _ = folder
    (root / "data/train/notes.txt").write_text("x")
    made = plan.make_plan(validated(), ".state")
    warning = housekeeping.write_ignored(made, "logs/ignored.csv")
    assert warning.startswith("Ignoring 1 entries") and "logs/ignored.csv" in warning
    assert manifest.read_listing("logs/ignored.csv") == [
        {"file": "data/train/notes.txt", "reason": "not in a class folder"}
    ]
    (root / "data/train/notes.txt").unlink()
    assert housekeeping.write_ignored(plan.make_plan(validated(), ".state"), "logs/ignored.csv") is None
    assert not (root / "logs/ignored.csv").exists()


def test_locks_are_left_alone_and_named_with_the_command_that_removes_them(tmp_path):
    locks = tmp_path / "locks"
    argv = ["/venv/bin/snakemake", "-d", "my run", "--cores", "2"]
    assert housekeeping.lock_warning(argv, locks) is None
    locks.mkdir()
    (locks / "0.output.lock").write_text("results/vgg16/model.keras\n")
    warning = housekeeping.lock_warning(argv, locks)
    assert "`snakemake -d 'my run' --cores 2 --unlock`" in warning
    assert (locks / "0.output.lock").exists()


@pytest.mark.workflow
def test_a_job_reads_its_runs_plan_and_never_the_data_folder(workdir):
    planned_jobs(workdir)  # the main process plans the run and saves the plan
    (workdir / "data").rename(workdir.parent / "away")
    # What a cluster job runs, its environment aside: it finds the plan by its config.
    job = [
        "--mode",
        "remote",
        "--target-jobs",
        "join_split:backbone=vgg16,split=train",
        "--allowed-rules",
        "join_split",
        "--dry-run",
    ]
    result = snakemake(workdir, *job)
    images = sum(COUNTS["train"] + i for i in range(3))  # make_dataset: class i has count + i
    assert f"join_split: backbone vgg16, split train, {images} images" in result.stdout
    write_config(workdir, {**TINY_CONFIG, "image_size": [48, 48]})  # edited during the run
    result = snakemake(workdir, *job, check=False)
    assert result.returncode != 0 and "finds no plan of its run" in result.stdout + result.stderr
