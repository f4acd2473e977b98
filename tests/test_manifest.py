"""Shard membership, content hashes, and listings that change only with content."""

import os

import pytest

from tlflow.images import scan
from tlflow.manifest import (
    HashCache,
    UnreadableError,
    publish,
    read_manifest,
    shard_listings,
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


def test_hash_cache_rereads_only_changed_files(tmp_path):
    path = str(tmp_path / "a.jpg")
    (tmp_path / "a.jpg").write_bytes(b"one")
    cache = HashCache(tmp_path / "cache.json")
    first = cache.sha256(path)
    cache.save()
    reloaded = HashCache(tmp_path / "cache.json")
    reloaded.entries[path][3] = "remembered"  # proves the next call does not re-read
    assert reloaded.sha256(path) == "remembered"
    os.utime(path, ns=(1, 1))  # touched: re-read, same content
    assert reloaded.sha256(path) == first


def test_hash_cache_forgets_files_not_asked_for(tmp_path):
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
    return shard_listings(scan(data, ["train", "validation"]), 3, cache)


def test_listings_change_only_where_content_changed(tmp_path):
    data = tmp_path / "data"
    written = make_dataset(data, {"train": 6, "validation": 3}, classes=2)
    before = _listings(data, tmp_path)
    assert {name.split("/")[0] for name in before} == {"train", "validation"}
    total = sum(n for split in written.values() for n in split.values())
    assert sum(count for _, count in before.values()) == total

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
    publish(staged / f"{digests['train/shard-0']}.csv", out)
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
    assert odd in [row["file"] for row in read_manifest(tmp_path / "m.csv")]


def test_unreadable_images_are_all_named_before_anything_runs(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, {"train": 4, "validation": 2}, classes=2)
    (data / "train/circles/broken link.jpg").symlink_to(tmp_path / "gone.jpg")
    (data / "validation/squares/also gone.png").symlink_to(tmp_path / "gone.png")
    cache = HashCache(tmp_path / "hashes.json")
    with pytest.raises(UnreadableError) as error:
        shard_listings(scan(data, ["train", "validation"]), 3, cache)
    message = str(error.value)
    assert "train/circles/broken link.jpg (No such file or directory)" in message
    assert "Fix or remove them" in message
    # The listings stop at the first split with such files; the other is checked after.
    (data / "train/circles/broken link.jpg").unlink()
    with pytest.raises(UnreadableError, match="validation/squares/also gone.png"):
        shard_listings(scan(data, ["train", "validation"]), 3, cache)
