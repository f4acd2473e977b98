"""Shard membership, content hashes and manifests written only on change."""

import os

from tlflow.images import scan
from tlflow.manifest import HashCache, read_manifest, shard_of, write_shard_manifests
from tlflow.synthetic import make_dataset


def test_shard_membership_does_not_move_when_files_are_added():
    names = [f"train/cats/{i}.jpg" for i in range(200)]
    before = {name: shard_of(name, 8) for name in names}
    after = {name: shard_of(name, 8) for name in names + ["train/cats/new.jpg"]}
    assert all(after[name] == shard for name, shard in before.items())
    assert len(set(before.values())) == 8  # spread over every shard


def test_hash_cache_rereads_only_changed_files(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"one")
    cache = HashCache(tmp_path / "cache.json")
    first = cache.sha256(tmp_path, "a.jpg")
    cache.save()
    reloaded = HashCache(tmp_path / "cache.json")
    reloaded.entries["a.jpg"][3] = "remembered"  # proves the next call does not re-read
    assert reloaded.sha256(tmp_path, "a.jpg") == "remembered"
    os.utime(tmp_path / "a.jpg", ns=(1, 1))  # touched: re-read, same content
    assert reloaded.sha256(tmp_path, "a.jpg") == first


def _manifest_state(folder):
    return {p: (p.read_text(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("shard-*.csv"))}


def test_manifests_change_only_where_content_changed(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, {"train": 6, "validation": 3}, classes=2)
    out = tmp_path / "manifests"
    dataset = scan(data, ["train", "validation"])
    assert write_shard_manifests(dataset, 3, out) > 0
    state = _manifest_state(out)

    for image in (data / "train/circles").iterdir():
        os.utime(image)  # touched only
    assert write_shard_manifests(scan(data, ["train", "validation"]), 3, out) == 0
    assert _manifest_state(out) == state

    edited = data / "train/squares/square_00002.jpg"
    edited.write_bytes(edited.read_bytes() + b"\0")
    assert write_shard_manifests(scan(data, ["train", "validation"]), 3, out) == 1
    changed = [p for p, s in _manifest_state(out).items() if s != state[p]]
    assert len(changed) == 1 and "train" in changed[0].parts
    rows = read_manifest(changed[0])
    assert "train/squares/square_00002.jpg" in [row["file"] for row in rows]
    assert {row["class"] for row in rows} <= {"circles", "squares"}
