"""Class and file names that pandas would read as missing, booleans or numbers survive
every stage: manifests, predictions, summary, figures' tables and the audit."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import TINY_CONFIG, snakemake, write_config
from tlflow import readers, summary
from tlflow.synthetic import SHAPES, draw

# Every test here runs Snakemake (`make unit` leaves them out).
pytestmark = pytest.mark.workflow

# "#N/A" holds a slash, so no folder can have it: "#NA" is its cousin in pandas' list.
NAMES = ["None", "NA", "nan", "null", "#NA", "-1.#IND", "True", "1e5"]
COUNTS = {"train": 3, "validation": 2, "test": 2}


def rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("names") / "run"
    rng = np.random.default_rng(0)
    for split, count in COUNTS.items():
        for index, name in enumerate(NAMES):
            folder = run / "data" / split / name
            folder.mkdir(parents=True)
            shape = SHAPES[index % len(SHAPES)]
            # File names from the same list: "NA.jpg", "nan.png", ...
            for n in range(count):
                other = NAMES[(index + n) % len(NAMES)]
                draw(shape, 32, rng).save(folder / f"{other}{'.jpg' if n else '.png'}")
    write_config(run, TINY_CONFIG)
    snakemake(run)
    return run


def test_manifests_and_predictions_keep_every_name(odd_run):
    results = odd_run / "results/vgg16"
    train = rows(results / "features/train_manifest.csv")
    assert sorted({row["class"] for row in train}) == sorted(NAMES)
    assert len(train) == COUNTS["train"] * len(NAMES)
    predicted = readers.read_table(results / "evaluation/predictions.csv")
    assert sorted(set(predicted["true_class"])) == sorted(NAMES)
    assert predicted["predicted_class"].isin(NAMES).all()
    assert predicted.notna().all().all()
    confusion = readers.read_table(results / "evaluation/confusion_matrix.csv", index_col=0)
    assert list(confusion.index) == list(confusion.columns) == sorted(NAMES)


def test_summary_counts_every_image_of_every_class(odd_run):
    results = odd_run / "results/vgg16"
    splits = list(COUNTS)
    sizes = summary.split_sizes(
        {s: results / f"features/{s}_manifest.csv" for s in splits},
        {s: results / f"features/{s}_skipped.csv" for s in splits},
        sorted(NAMES),
    )
    for split, count in COUNTS.items():
        assert sizes.loc[split, "images used"] == count * len(NAMES)
        assert (sizes.loc[split, sorted(NAMES)] == count).all()
    page = (results / "evaluation/summary.html").read_text()
    assert "#NA" in page and "-1.#IND" in page and "1e5" in page


def test_audit_keeps_every_class(odd_run):
    embedding = readers.read_table(odd_run / "results/vgg16/audit/embedding.csv")
    assert sorted(set(embedding["class"])) == sorted(NAMES)
    assert len(embedding) == sum(COUNTS.values()) * len(NAMES)
