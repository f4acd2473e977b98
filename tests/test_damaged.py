"""Damaged files the workflow wrote: named when read, set aside and rebuilt when planned,
and the last good model kept while its replacement fails."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import job_stats, planned_jobs, snakemake
from tlflow import intermediates, readers


@pytest.fixture
def whole_files(tmp_path):
    """One good file of each kind the workflow writes."""
    import keras

    np.save(tmp_path / "rows.npy", np.ones((3, 4), np.float32))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.save(tmp_path / "head.h5")
    model.save(tmp_path / "model.keras")
    (tmp_path / "meta.json").write_text(json.dumps({"classes": ["a", "b"]}))
    pd.DataFrame({"file": ["a.jpg"], "label": [0]}).to_csv(tmp_path / "table.csv", index=False)
    return tmp_path


def test_whole_files_pass_and_each_kind_of_damage_is_found(whole_files):
    for path in whole_files.iterdir():
        assert intermediates.damage(path) is None, path
    with open(whole_files / "rows.npy", "r+b") as handle:
        handle.truncate(150)  # header kept, rows cut
    (whole_files / "head.h5").write_bytes(b"garbage" * 10)
    (whole_files / "model.keras").write_bytes(b"PK\x03\x04 not a zip")
    (whole_files / "meta.json").write_text('{"classes": [')
    (whole_files / "table.csv").write_text("")
    reasons = {path.name: intermediates.damage(path) for path in whole_files.iterdir()}
    assert reasons["rows.npy"] == "150 bytes where its header needs 176"
    assert reasons["head.h5"] == "not an HDF5 file"
    assert reasons["model.keras"].startswith("not a Keras archive")
    assert reasons["meta.json"].startswith("not valid JSON")
    assert reasons["table.csv"] == "empty"


def test_readers_name_the_damaged_file_and_the_fix(tmp_path):
    path = tmp_path / "head.h5"
    path.write_bytes(b"\0" * 64)
    with pytest.raises(readers.DamagedFileError, match=rf"cannot read {path} .*Delete it"):
        readers.load_model(path)
    empty = tmp_path / "train.npy"
    empty.write_bytes(b"")
    with pytest.raises(readers.DamagedFileError, match=rf"cannot read {empty} \(EOFError"):
        readers.load_array(empty)
    table = tmp_path / "t.csv"
    table.write_bytes(b"file,label\n\xff\xfe,1\n")
    with pytest.raises(readers.DamagedFileError, match=rf"cannot read {table} \(UnicodeDecodeError"):
        readers.read_table(table)


def test_names_that_pandas_reads_as_missing_or_numbers_stay_text(tmp_path):
    names = ["None", "NA", "nan", "null", "#N/A", "-1.#IND", "True", "1e5"]
    path = tmp_path / "t.csv"
    pd.DataFrame({"file": [f"{n}.jpg" for n in names], "class": names, "p": 0.5}).to_csv(path, index=False)
    table = readers.read_table(path)
    assert table["class"].tolist() == names
    assert table["p"].dtype == np.float64  # numbers still numbers


@pytest.mark.workflow
def test_damaged_intermediates_are_set_aside_and_rebuilt(finished_copy):
    run = finished_copy
    head = run / "results/vgg16/head/head.h5"
    head.write_bytes(b"garbage")
    validation = run / "results/vgg16/features/shards/validation/shard-0.npy"
    with open(validation, "r+b") as handle:
        handle.truncate(200)
    manifest = run / "results/manifests/train/shard-0.csv"
    manifest.write_text("")
    dry = snakemake(run, "--dry-run")
    for path in (head, validation, manifest):  # named, and left as they are
        assert f"{path.relative_to(run)} is damaged" in dry.stdout + dry.stderr and path.exists()
    assert "this dry run lists what is to do as if it were whole" in dry.stdout + dry.stderr
    result = snakemake(run)
    output = result.stdout + result.stderr
    for path in (head, validation, manifest):
        relative = path.relative_to(run)
        assert f"{relative} is damaged" in output and "this run rebuilds it" in output
        assert list((run / ".snakemake/tlflow/damaged").glob(f"*/{relative.relative_to('results')}"))
    # A missing manifest is rebuilt when a job needs it; here none does.
    jobs = job_stats(output)
    assert jobs["train_head"] == 1 and jobs["join_split"] == 1
    assert intermediates.damage(head) is None
    assert np.load(validation).shape[0] > 0
    assert planned_jobs(run) == {}  # healed: nothing left to do


@pytest.mark.workflow
def test_a_failing_deploy_keeps_the_last_good_model(finished_copy):
    run = finished_copy
    model = run / "results/vgg16/model.keras"
    before = model.read_bytes()
    # Whole JSON (so not set aside) that is not the workflow's metadata.
    (run / "results/vgg16/head/head.json").write_text('{"classes": ["a", "b"]}')
    result = snakemake(run, "results/vgg16/model.keras", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cannot read results/vgg16/head/head.json (KeyError: 'backbone')" in output
    assert model.read_bytes() == before


def test_a_damaged_fine_tuning_checkpoint_restarts_training_instead_of_failing(tmp_path):
    from tlflow.fine_tune import Checkpoint

    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"PK\x03\x04 cut")
    checkpoint = Checkpoint(path)
    assert checkpoint.state["epoch"] == 0
    assert not path.exists() and (tmp_path / "checkpoint.npz.damaged").exists()


@pytest.mark.workflow
def test_shards_of_an_earlier_version_without_checksums_are_recomputed_unasked(finished_copy):
    run = finished_copy
    shard = run / "results/vgg16/features/shards/train/shard-0.csv"
    table = pd.read_csv(shard, dtype=str, keep_default_na=False)
    assert "blake2b" in table
    table.drop(columns="blake2b").to_csv(shard, index=False)
    dry = snakemake(run, "--dry-run")
    assert f"{shard.relative_to(run)} is damaged (no 'blake2b' column" in dry.stdout + dry.stderr
    # The upgrade reruns the joins (their params changed): the shard is extracted again.
    result = snakemake(run, "--forcerun", "join_split")
    output = result.stdout + result.stderr
    assert f"{shard.relative_to(run)} is damaged (no 'blake2b' column" in output
    assert job_stats(output)["extract_shard"] == 1
