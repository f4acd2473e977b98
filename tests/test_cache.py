"""The feature cache: every row checked, any shard count reuses every row, a full disk named."""

from __future__ import annotations

import errno
import logging
import re
import shutil
import subprocess
import sys
from collections import namedtuple

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import snakemake, split_features, write_config
from test_features import SPEC, _extract, _extract_shards, _joined, _labels, _shard
from tlflow import atomic, features, split_rows
from tlflow.features import DamagedShardError, cache_folder, join_split
from tlflow.manifest import shard_of
from tlflow.synthetic import draw, make_dataset


def _entry(tmp_path):
    """The one cache entry an extraction of one shard leaves."""
    (entry,) = cache_folder(tmp_path / "cache", SPEC).glob("*.npy")
    return entry


def _warnings(caplog):
    return [
        r.getMessage() for r in caplog.records if r.name == "tlflow.features" and r.levelno >= logging.WARNING
    ]


def _zero_rows(path, rows=slice(None)):
    array = np.load(path, mmap_mode="r+")  # in place: the header is kept, so is the inode
    array[rows] = 0
    array.flush()


def _truncate(path):
    with open(path, "r+b") as handle:
        handle.truncate(0)


def _as_float64(path):
    array = np.load(path).astype(np.float64)
    with open(path, "wb") as handle:  # the same inode, as a damage would be
        np.save(handle, array)


def _garble_manifest(path):
    path.with_suffix(".csv").write_bytes(b"\xff\xfe garbage")


@pytest.mark.parametrize(
    "damage, computed, reason",
    [
        (_zero_rows, 9, "9 of its rows do not match their checksums"),
        (lambda p: _zero_rows(p, 2), 1, "1 of its rows do not match"),  # the other 8 are reused
        (_truncate, 9, "EOFError"),
        (_as_float64, 9, "float64 rows for 9 manifest rows of float32"),
        (_garble_manifest, 9, "UnicodeDecodeError"),
    ],
)
def test_a_damaged_cache_entry_is_named_deleted_and_its_bad_rows_recomputed(
    tmp_path, caplog, damage, computed, reason
):
    data, manifest, _ = _shard(tmp_path)
    _, (first, _, _) = _extract(tmp_path, manifest, data)
    good = np.load(first)
    entry = _entry(tmp_path)
    damage(entry)
    with caplog.at_level(logging.WARNING):
        counts, (again, _, _) = _extract(tmp_path, manifest, data, name="again")
    assert counts["computed"] == computed
    (warning,) = _warnings(caplog)
    assert str(entry) in warning and reason in warning and "deleted" in warning
    # Recomputed in other batch slots: equal up to oneDNN's last bits.
    np.testing.assert_allclose(np.load(again), good, rtol=1e-5, atol=1e-6)
    caplog.clear()
    counts, _ = _extract(tmp_path, manifest, data, name="third")
    assert counts["computed"] == 0 and not _warnings(caplog)  # the new entry is sound


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: _zero_rows(p, 3), r"row 3 \(train/\S+\) does not match its checksum"),
        (_truncate, "cannot be read"),
        (_garble_manifest, "cannot be read"),
    ],
)
def test_a_damaged_shard_output_stops_the_join_naming_it_and_the_fix(tmp_path, damage, reason):
    data, manifest, _ = _shard(tmp_path)
    _, outputs = _extract(tmp_path, manifest, data)
    damage(outputs[0])
    joined = _joined(tmp_path)
    with pytest.raises(DamagedShardError, match=rf"(?s){re.escape(str(outputs[0]))} {reason}.*--forcerun"):
        join_split([tuple(outputs)], _labels(tmp_path), *joined)
    assert not any(path.exists() for path in joined)


def test_shards_without_checksums_are_all_named_in_one_error_with_one_fix(tmp_path):
    """As an earlier version wrote them: no checksum column."""
    shards = _extract_shards(tmp_path, {"train": 4, "validation": 2}, 2)
    for _, manifest, _ in shards:
        pd.read_csv(manifest).drop(columns="blake2b").to_csv(manifest, index=False)
    with pytest.raises(DamagedShardError) as raised:
        join_split(shards, _labels(tmp_path), *_joined(tmp_path))
    message = str(raised.value)
    assert message.count("has no 'blake2b' column") == 2
    assert f"--forcerun {shards[0][0]} {shards[1][0]}" in message


def test_any_shard_count_in_any_order_reuses_every_row(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, {"train": 6, "validation": 2}, classes=2)
    _, manifest, _ = _shard(tmp_path)
    _, (whole, whole_manifest, _) = _extract(tmp_path, manifest, data, name="one")
    expected = np.load(whole)
    for shards, order in ((3, [2, 0, 1]), (5, [4, 1, 3, 0, 2]), (2, [1, 0]), (1, [0])):
        outputs = {}
        for k in order:  # the highest first: it would have overwritten shard 0's entry
            _, manifest, rows = _shard(tmp_path, shards=shards, k=k)
            if not rows:
                continue  # the workflow runs no job for an empty shard
            counts, outputs[k] = _extract(tmp_path, manifest, data, name=f"{shards}-{k}")
            assert counts == {"images": len(rows), "computed": 0, "skipped": 0}
        joined = [tmp_path / f"{shards}{n}" for n in ("_labels.npy", ".csv", "_skipped.csv")]
        join_split(
            [tuple(outputs[k]) for k in sorted(outputs)],
            _labels(tmp_path),
            *joined,
            cache_dir=cache_folder(tmp_path / "cache", SPEC),
        )
        rows = split_rows.Rows([(joined[1], [outputs[k][0] for k in outputs])]).read()
        np.testing.assert_array_equal(rows, expected)
        # Pruned to the current shards' entries, each a hard link of a shard output.
        entries = sorted(cache_folder(tmp_path / "cache", SPEC).glob("*.npy"))
        assert len(entries) == len(outputs) == len(list(entries[0].parent.iterdir())) / 2
        assert all(any(e.samefile(o[0]) for o in outputs.values()) for e in entries)


Usage = namedtuple("Usage", "total used free")


def test_too_little_free_space_fails_before_writing_naming_both_figures_and_the_folder(tmp_path, monkeypatch):
    data, manifest, _ = _shard(tmp_path)
    _extract(tmp_path, manifest, data)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: Usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError, match="No space left on device") as raised:
        _extract(tmp_path, manifest, data, name="again")  # every row from the cache
    needed = 9 * 2 * 512 * 4  # nine pooled rows: average and maximum of 512 channels
    assert raised.value.errno == errno.ENOSPC
    assert f"needs {needed:,} bytes, 1,000 are free in {tmp_path}" in str(raised.value)
    assert not list(tmp_path.glob("*again*"))  # no partial file left


def test_a_full_disk_is_named_where_reserving_or_np_save_meets_it(tmp_path, monkeypatch):
    data, manifest, _ = _shard(tmp_path)
    _extract(tmp_path, manifest, data)

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(features.disk.os, "posix_fallocate", full)
    with pytest.raises(OSError, match=r"No space left on device writing \S+again\.partial\S+: reserving"):
        _extract(tmp_path, manifest, data, name="again")  # before any page is written

    def short_write(file, array):  # what numpy raises when the disk fills
        raise OSError(f"{array.nbytes} requested and 6112 written")

    monkeypatch.setattr(np, "save", short_write)
    cache = tmp_path / "fresh-cache"
    parts = features._PartWriter(cache)
    parts.add({"file": "a.jpg", "class": "circles", "label": 0, "sha256": "0" * 64}, np.ones(512, np.float32))
    with pytest.raises(
        OSError, match=r"No space left on device writing \S+fresh-cache/\S+: 2048 requested"
    ) as e:
        parts.flush()
    assert e.value.errno == errno.ENOSPC
    assert list(cache.iterdir()) == []


def test_partial_files_of_killed_writers_on_this_host_are_removed_by_the_next_write(tmp_path):
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()  # its pid is free now
    target = tmp_path / "odd [name] *.npy"
    stale = tmp_path / f".odd [name] *.partial-{atomic.HOST}-{killed.pid}.npy"
    running = tmp_path / f".odd [name] *.partial-{atomic.HOST}-1.npy"  # pid 1 always runs
    elsewhere = tmp_path / f".odd [name] *.partial-otherhost-{killed.pid}.npy"  # cannot tell
    other = tmp_path / f".other.partial-{atomic.HOST}-{killed.pid}.npy"  # another target's
    for path in (stale, running, elsewhere, other):
        path.write_bytes(b"half")
    with atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert not stale.exists() and target.read_bytes() == b"whole"
    assert running.exists() and elsewhere.exists() and other.exists()


@pytest.mark.workflow
def test_resharding_a_finished_run_computes_nothing(finished_copy):
    config = yaml.safe_load((finished_copy / "config.yaml").read_text())
    targets = [f"results/vgg16/features/{split}_manifest.csv" for split in ("train", "validation")]
    cache = finished_copy / "results/vgg16/.cache/train"
    for shards in (1, 3, 5, 2):
        config["extraction"]["shards"] = shards
        write_config(finished_copy, config)
        for log in (finished_copy / "logs/vgg16/extract_shard").rglob("*.log"):
            log.unlink()
        snakemake(finished_copy, *targets)  # --cores 2: shards run side by side
        logs = list((finished_copy / "logs/vgg16/extract_shard").rglob("*.log"))
        assert len(logs) >= shards  # both splits' shards ran (a shard may be empty)
        for log in logs:
            assert re.search(r"(\d+) images in shard, \1 reused from cache, 0 to compute", log.read_text())
        # Pruned to the entries of the current shards, hard links of their outputs.
        (spec_cache,) = [p for p in cache.iterdir() if p.is_dir()]
        shards_run = [log.stem for log in logs if log.parent.name == "train"]
        outputs = finished_copy / "results/vgg16/features/shards/train"
        entries = list(spec_cache.glob("*.npy"))
        assert len(entries) == len(shards_run) and len(list(spec_cache.iterdir())) == 2 * len(entries)
        assert all(any(e.samefile(outputs / f"{s}.npy") for s in shards_run) for e in entries)


@pytest.mark.workflow
def test_a_damaged_shard_stops_the_join_and_the_named_fix_recomputes_its_rows(finished_copy):
    """A shard's output and its cache entry are one inode: zeroing one zeroes both."""
    features_dir = finished_copy / "results/vgg16/features"
    before = split_features(finished_copy, "train")
    draw("circle", 32, np.random.default_rng(3)).save(finished_copy / "data/train/circles/new.jpg")
    damaged = features_dir / f"shards/train/shard-{1 - shard_of('train/circles/new.jpg', 2)}.npy"
    # finished_copy copied the hard links as two files: damage both
    spec_cache = next(p for p in (finished_copy / "results/vgg16/.cache/train").iterdir())
    entry = spec_cache / f"{features._digest(damaged.with_suffix('.csv').read_bytes())}.npy"
    for path in (damaged, entry):
        _zero_rows(path)
    target = "results/vgg16/features/train_manifest.csv"
    failed = snakemake(finished_copy, target, check=False)
    assert failed.returncode != 0
    log = (finished_copy / "logs/vgg16/join_split/train.log").read_text()
    fix = f"snakemake --forcerun {damaged.relative_to(finished_copy)}"
    assert f"{damaged.relative_to(finished_copy)} row 0" in log and fix in log
    snakemake(finished_copy, target, "--forcerun", str(damaged.relative_to(finished_copy)))
    extract_log = (finished_copy / f"logs/vgg16/extract_shard/train/{damaged.stem}.log").read_text()
    assert "damaged cache entry" in extract_log and "do not match their checksums" in extract_log
    after = split_features(finished_copy, "train")
    manifest = pd.read_csv(features_dir / "train_manifest.csv")
    new = manifest["file"] == "train/circles/new.jpg"
    np.testing.assert_allclose(after[~new.to_numpy()], before, rtol=1e-5, atol=1e-6)
