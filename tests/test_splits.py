"""The splits' roles: which one the evaluation scores, and a split that lost a class."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import TINY_CONFIG, make_workdir, snakemake, write_config

from tlflow import splits


@pytest.mark.parametrize(
    ("configured", "chosen", "scored"),
    [
        (["train", "validation", "test"], None, "test"),
        (["train", "validation"], None, "validation"),
        (["validation", "holdout", "train"], "holdout", "holdout"),
        (["train", "validation"], "validation", "validation"),
    ],
)
def test_the_evaluation_split_is_the_setting_else_test_else_validation(configured, chosen, scored):
    assert splits.evaluation_split(configured, chosen) == scored


@pytest.mark.parametrize(
    ("configured", "chosen", "fragments"),
    [
        (
            ["train", "validation", "holdout"],
            None,
            [
                "['holdout']",
                "never scored",
                "scores 'validation'",
                "'evaluation: split: holdout'",
                "remove it from 'splits'",
            ],
        ),
        (
            ["train", "validation", "test"],
            "validation",
            ["['test']", "never scored", "'evaluation: split: test'"],
        ),
        (["train", "validation", "test"], "train", ["'evaluation: split: train'", "fitted on"]),
        (["train", "validation"], "holdout", ["split: holdout' is not one of 'splits'", "add 'holdout'"]),
        (["train", "test"], None, ["must include 'validation'"]),
    ],
)
def test_a_split_without_a_role_or_a_wrong_setting_is_refused(configured, chosen, fragments):
    with pytest.raises(splits.SplitError) as error:
        splits.evaluation_split(configured, chosen)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_a_class_without_a_kept_image_is_named_with_its_skipped_files():
    """Classes come from the labels listing, not from the paths: any layout."""
    listed = pd.DataFrame(
        {"file": ["1.jpg", "2.jpg", "3.jpg", "4.jpg", "5.jpg"], "class": ["a", "b", "a", "b", "a"]}
    )
    skipped = pd.DataFrame(
        {
            "file": ["2.jpg", "4.jpg", "5.jpg"],
            "error": "OSError: truncated",
            "list": ["shard-0.skipped.csv", "shard-2.skipped.csv", "shard-2.skipped.csv"],
        }
    )
    with pytest.raises(splits.SplitError) as error:
        splits.check_classes("validation", listed, ["1.jpg", "3.jpg"], skipped)
    message = str(error.value)
    assert "split 'validation' has no image left of class(es) ['b']" in message
    assert "2.jpg" in message and "4.jpg" in message
    assert "5.jpg" not in message  # class a keeps two images
    assert "shard-0.skipped.csv, shard-2.skipped.csv" in message
    assert "Replace the broken images" in message and "add images of class(es) ['b']" in message
    splits.check_classes("validation", listed, ["1.jpg", "2.jpg"], skipped)  # every class kept


@pytest.mark.workflow
def test_a_class_folder_of_non_images_only_is_refused_before_any_job(workdir):
    folder = workdir / "data/validation/squares"
    for image in folder.iterdir():
        image.unlink()
    (folder / "notes.txt").write_text("no image here")
    (folder / "Thumbs.db").write_bytes(b"\0")
    result = snakemake(workdir, "--dry-run", check=False)
    assert result.returncode != 0
    assert "'data/validation/squares' has no images" in result.stdout + result.stderr


@pytest.mark.workflow
def test_a_split_with_no_role_is_refused_when_the_workflow_starts(tmp_path):
    workdir = make_workdir(tmp_path / "run", counts={"train": 4, "validation": 3, "holdout": 2})
    write_config(workdir, {**TINY_CONFIG, "splits": ["train", "validation", "holdout"]})
    result = snakemake(workdir, "--dry-run", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "never scored" in output and "'evaluation: split: holdout'" in output


@pytest.mark.workflow
def test_the_configured_evaluation_split_is_what_is_scored_and_named(tmp_path):
    workdir = make_workdir(tmp_path / "run", counts={"train": 6, "validation": 4, "holdout": 3})
    write_config(
        workdir,
        {
            **TINY_CONFIG,
            "splits": ["train", "validation", "holdout"],
            "evaluation": {"split": "holdout"},
            "extraction": {**TINY_CONFIG["extraction"], "shards": 1},
            "head": {**TINY_CONFIG["head"], "kind": ["linear"], "pooling": ["avg"]},
            "audit": {"enabled": False},
        },
    )
    snakemake(workdir, "results/vgg16/evaluation/summary.html")
    evaluation = workdir / "results/vgg16/evaluation"
    metrics = json.loads((evaluation / "metrics.json").read_text())
    table = pd.read_csv(evaluation / "predictions.csv", dtype=str)
    on_disk = sorted(p.relative_to(workdir / "data").as_posix() for p in workdir.glob("data/holdout/*/*"))
    assert metrics["split"] == "holdout" and metrics["images"] == len(on_disk) == 3 + 4 + 5
    assert sorted(table["file"]) == on_disk
    summary = (evaluation / "summary.html").read_text()
    assert "Metrics on the holdout split (12 images)" in summary
    assert "<th>split scored</th><td>holdout</td>" in summary
    assert "<th>split that chose and calibrated the head</th><td>validation</td>" in summary
    assert "optimistic" not in summary


@pytest.mark.workflow
def test_a_class_left_without_images_stops_the_run_before_the_head(workdir):
    broken = sorted((workdir / "data/validation/circles").iterdir())
    for image in broken:
        image.write_bytes(b"\x00garbage, not an image" * 4)
    write_config(workdir, {**TINY_CONFIG, "on_bad_image": "skip"})
    result = snakemake(workdir, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "split 'validation' has no image left of class(es) ['circles']" in output
    assert "undecodable image(s)" in output and f"left out its {len(broken)}" in output
    assert "results/vgg16/features/shards/validation/shard-" in output
    assert "Replace the broken images" in output
    assert "add images of class(es) ['circles'] to split 'validation'" in output
    features = workdir / "results/vgg16/features"
    assert not list(features.glob("validation*"))  # nothing that looks joined
    assert (features / "train_manifest.csv").exists()  # other splits went on (keep-going)
    assert not (workdir / "logs/vgg16/train_head.log").exists()
    assert not (workdir / "results/vgg16/head").exists()
