"""Shard membership, content hashes, and listings that change only with content."""

import json
import os
import time

import pytest
from conftest import job_stats, planned_jobs, snakemake

from tlflow import manifest
from tlflow.images import scan
from tlflow.manifest import (
    HashCache,
    UnreadableError,
    file_sha256,
    folder_listing,
    listings,
    publish_manifest,
    read_listing,
    shard_of,
    stage,
)
from tlflow.synthetic import make_dataset


def test_shard_membership_does_not_move_when_files_are_added():
    names = [f"train/cats/{i}.jpg" for i in range(200)]
    before = {name: shard_of(name, 8) for name in names}
    after = {name: shard_of(name, 8) for name in names + ["train/cats/new.jpg"]}
    assert all(after[name] == shard for name, shard in before.items())
    assert len(set(before.values())) == 8  # spread over every shard


@pytest.fixture
def settled(monkeypatch):
    """Files count as settled as soon as written (they are, after a clock tick)."""
    monkeypatch.setattr(manifest, "RACY_NS", 0)


def _edit_in_place(path, data: bytes):
    """Same size, same inode, mtime set back: what `touch -r` or `rsync -t` leaves."""
    before = os.stat(path)
    assert len(data) == before.st_size
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )


def test_hash_cache_rereads_only_changed_files(tmp_path, settled):
    path = str(tmp_path / "a.jpg")
    (tmp_path / "a.jpg").write_bytes(b"one")
    cache = HashCache(tmp_path / "cache.json")
    first = cache.sha256(path)
    cache.save()
    reloaded = HashCache(tmp_path / "cache.json")
    reloaded.entries[path][-1] = "remembered"  # proves the next call does not re-read
    assert reloaded.sha256(path) == "remembered"
    os.utime(path, ns=(1, 1))  # touched: re-read, same content
    assert reloaded.sha256(path) == first


def test_an_edit_in_place_with_its_mtime_set_back_is_read_again(tmp_path, settled):
    path = str(tmp_path / "a.jpg")
    (tmp_path / "a.jpg").write_bytes(b"one")
    cache = HashCache(tmp_path / "cache.json")
    first = cache.sha256(path)
    time.sleep(0.05)  # past the file system's timestamp tick: the edit moves ctime
    _edit_in_place(path, b"two")
    assert cache.sha256(path) == file_sha256(path) != first


def test_a_file_changed_just_before_hashing_is_not_remembered(tmp_path):
    """Within one timestamp tick two edits leave the same ctime: such a hash is not kept."""
    path = str(tmp_path / "a.jpg")
    (tmp_path / "a.jpg").write_bytes(b"one")
    cache = HashCache(tmp_path / "cache.json")
    first = cache.sha256(path)
    _edit_in_place(path, b"two")  # at once: ctime may well not move
    assert cache.sha256(path) == file_sha256(path) != first
    cache.save()
    assert HashCache(tmp_path / "cache.json").entries == {}


def test_verify_reads_every_file_and_corrects_a_wrong_entry(tmp_path, settled):
    path = str(tmp_path / "a.jpg")
    (tmp_path / "a.jpg").write_bytes(b"one")
    cache = HashCache(tmp_path / "cache.json")
    right = cache.sha256(path)
    cache.entries[path][-1] = "0" * 64  # its key matches; its digest is wrong
    cache.save()
    assert HashCache(tmp_path / "cache.json").sha256(path) == "0" * 64  # trusted
    verified = HashCache(tmp_path / "cache.json", verify=True)
    assert verified.sha256(path) == right
    verified.save()
    assert HashCache(tmp_path / "cache.json").sha256(path) == right
    # An entry that was right is rewritten by no verification.
    again = HashCache(tmp_path / "cache.json", verify=True)
    again.sha256(path)
    assert not again.changed


def test_a_fifo_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "y.jpg")
    with pytest.raises(UnreadableError, match="y.jpg \\(not a regular file"):
        folder_listing(tmp_path, ["y.jpg"], HashCache(tmp_path / "cache.json"))


def test_hash_cache_forgets_files_not_asked_for(tmp_path, settled):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(name.encode())
    cache = HashCache(tmp_path / "cache.json")
    cache.sha256(str(tmp_path / "a.jpg")), cache.sha256(str(tmp_path / "b.jpg"))
    cache.save()
    (tmp_path / "b.jpg").unlink()
    again = HashCache(tmp_path / "cache.json")
    again.sha256(str(tmp_path / "a.jpg"))
    again.save()
    assert list(HashCache(tmp_path / "cache.json").entries) == [str(tmp_path / "a.jpg")]


def _listings(data, tmp_path):
    cache = HashCache(tmp_path / "hashes.json")
    return listings(scan(data, ["train", "validation"]), 3, cache)


def test_listings_change_only_where_content_changed(tmp_path):
    data = tmp_path / "data"
    written = make_dataset(data, {"train": 6, "validation": 3}, classes=2)
    before = _listings(data, tmp_path)
    assert {name.split("/")[0] for name in before} == {"train", "validation"}
    total = sum(n for split in written.values() for n in split.values())
    assert sum(count for name, (_, count) in before.items() if "shard-" in name) == total
    assert sum(count for name, (_, count) in before.items() if name.endswith("/labels")) == total

    for image in (data / "train/circles").iterdir():
        os.utime(image, ns=(1, 1))  # touched only
    assert _listings(data, tmp_path) == before

    edited = data / "train/squares/square_00002.jpg"
    edited.write_bytes(edited.read_bytes() + b"\0")
    after = _listings(data, tmp_path)
    changed = [name for name in before if after[name] != before[name]]
    shard = shard_of("train/squares/square_00002.jpg", 3)
    assert changed == [f"train/shard-{shard}"]


def test_staged_listings_are_published_by_content(tmp_path):
    staged = tmp_path / "staged"
    digests = stage({"train/shard-0": "file\nx\n", "predict": "file\ny\n"}, staged)
    assert len(set(digests.values())) == 2
    out = tmp_path / "manifests/train/shard-0.csv"
    publish_manifest(staged / f"{digests['train/shard-0']}.csv", out)
    assert out.read_text() == "file\nx\n"
    # Restaging with one text changed keeps the other file and drops the old one.
    again = stage({"train/shard-0": "file\nz\n", "predict": "file\ny\n"}, staged)
    assert again["predict"] == digests["predict"]
    assert sorted(p.stem for p in staged.iterdir()) == sorted(again.values())
    assert out.read_text() == "file\nx\n"  # a published manifest is its own file


def test_manifest_rows_keep_any_file_name(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, {"train": 1, "validation": 1}, classes=2)
    odd = 'train/circles/a{1}, "q" $(x) `y`\nz é.jpg'
    (data / "train/circles/circle_00000.jpg").rename(data / odd)
    listings = _listings(data, tmp_path)
    name = f"train/shard-{shard_of(odd, 3)}"
    (tmp_path / "m.csv").write_text(listings[name][0], encoding="utf-8")
    assert odd in [row["file"] for row in read_listing(tmp_path / "m.csv")]


def test_unreadable_images_are_all_named_before_anything_runs(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, {"train": 4, "validation": 2}, classes=2)
    (data / "train/circles/broken link.jpg").symlink_to(tmp_path / "gone.jpg")
    (data / "validation/squares/also gone.png").symlink_to(tmp_path / "gone.png")
    cache = HashCache(tmp_path / "hashes.json")
    with pytest.raises(UnreadableError) as error:
        listings(scan(data, ["train", "validation"]), 3, cache)
    message = str(error.value)
    assert "train/circles/broken link.jpg (No such file or directory)" in message
    assert "Fix or remove them" in message
    # The listings stop at the first split with such files; the other is checked after.
    (data / "train/circles/broken link.jpg").unlink()
    with pytest.raises(UnreadableError, match="validation/squares/also gone.png"):
        listings(scan(data, ["train", "validation"]), 3, cache)


def _settle(path, seconds=manifest.RACY_NS / 1e9):
    """Wait until ``path`` last changed long enough ago for its hash to be remembered."""
    time.sleep(max(0.0, seconds + 0.1 - (time.time() - os.stat(path).st_ctime)))


@pytest.mark.workflow
def test_an_edit_that_keeps_size_and_mtime_reruns_its_shard_and_verify_corrects_the_cache(
    finished_copy,
):
    relpath = "train/squares/square_00002.jpg"
    image = finished_copy / "data" / relpath
    _settle(image)
    # A copy (new inodes, ctimes) re-reads every image; verifying reruns nothing by itself.
    assert planned_jobs(finished_copy, "--config", "verify_hashes=true") == {}
    hashes = finished_copy / ".snakemake/tlflow/image-hashes.json"
    key = f"data/{relpath}"
    old_digest = json.loads(hashes.read_text())[key][-1]

    data = bytearray(image.read_bytes())
    data[-3] ^= 0xFF  # one byte of the last scan, before the end marker
    _edit_in_place(image, bytes(data))
    shard = f"shards/train/shard-{shard_of(relpath, 2)}.npy"
    dry_run = snakemake(finished_copy, "--dry-run")
    planned = job_stats(dry_run.stdout)
    assert planned["extract_shard"] == 1 and planned["publish_manifest"] == 1
    assert shard in dry_run.stdout

    # A file system whose ctime cannot be trusted: the key matches, the digest is stale.
    info = os.stat(image)
    entries = json.loads(hashes.read_text())
    entries[key] = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev, old_digest]
    hashes.write_text(json.dumps(entries))
    assert planned_jobs(finished_copy) == {}  # trusted
    planned = planned_jobs(finished_copy, "--config", "verify_hashes=true")
    assert planned["extract_shard"] == 1
    assert json.loads(hashes.read_text()).get(key, [""])[-1] != old_digest


def test_a_damaged_published_manifest_is_staged_again_and_republished(tmp_path):
    staged = tmp_path / "staged"
    texts = {"train/shard-0": "file\nx\n"}
    digest = stage(texts, staged)["train/shard-0"]
    out = tmp_path / "manifests/train/shard-0.csv"
    publish_manifest(staged / f"{digest}.csv", out)
    with open(out, "r+b") as handle:  # edited in place: the staged hard link too
        handle.write(b"FILE")
    stage(texts, staged)
    assert (staged / f"{digest}.csv").read_text() == "file\nx\n"
    assert out.stat().st_mtime_ns <= (staged / f"{digest}.csv").stat().st_mtime_ns
