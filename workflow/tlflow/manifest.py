"""Shard membership, content hashes and the shard manifests that drive reruns.

A shard is (split, k): the images of a split whose path hashes to k.
Membership depends on the name alone, so adding a file never moves another one.
A shard's manifest lists its files with their content hashes; it is rewritten only
when that list changes, so Snakemake reruns a shard exactly when an image in it
was added, removed or edited, and not when a file was merely touched.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zlib
from pathlib import Path

from .atomic import atomic_path

MANIFEST_FIELDS = ["file", "class", "label", "sha256"]


def shard_of(relpath: str, shards: int) -> int:
    """Stable shard number of a file: crc32 of its path (not Python's salted hash)."""
    return zlib.crc32(relpath.encode("utf-8")) % shards


def shard_files(files: list[str], shards: int, k: int) -> list[str]:
    return [f for f in files if shard_of(f, shards) == k]


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class HashCache:
    """Content hashes remembered by (size, mtime, inode), so only new or touched files are read."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.entries: dict[str, list] = {}
        if self.path.exists():
            try:
                self.entries = json.loads(self.path.read_text())
            except ValueError:  # a damaged cache only costs re-hashing
                self.entries = {}
        self.changed = False

    def sha256(self, data_dir: Path, relpath: str) -> str:
        stat = (data_dir / relpath).stat()
        key = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        entry = self.entries.get(relpath)
        if entry and entry[:3] == key:
            return entry[3]
        digest = file_sha256(data_dir / relpath)
        self.entries[relpath] = key + [digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if self.changed:
            write_if_changed(self.path, json.dumps(self.entries, sort_keys=True))
            self.changed = False


def manifest_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_manifest(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as handle:
        return [
            {**row, "label": int(row["label"])} for row in csv.DictReader(handle)
        ]


def write_if_changed(path: str | os.PathLike, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds it; keeps mtime otherwise."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True


def shard_rows(dataset, split: str, shards: int, k: int, cache: HashCache | None = None):
    """Manifest rows of shard k of ``split``, by class then file; hashes if ``cache``."""
    rows = []
    for label, cls in enumerate(dataset.classes):
        for f in shard_files(dataset.images[split][cls], shards, k):
            digest = cache.sha256(dataset.data_dir, f) if cache else ""
            rows.append({"file": f, "class": cls, "label": label, "sha256": digest})
    return rows


def write_shard_manifests(dataset, shards: int, out_dir: str | os.PathLike) -> int:
    """Write ``out_dir/<split>/shard-<k>.csv`` for each non-empty shard; return how many changed."""
    out_dir = Path(out_dir)
    cache = HashCache(out_dir / ".hash-cache.json")
    changed = 0
    for split in dataset.images:
        for k in range(shards):
            rows = shard_rows(dataset, split, shards, k, cache)
            if rows:  # empty shards get no job, so no manifest
                target = out_dir / split / f"shard-{k}.csv"
                changed += write_if_changed(target, manifest_text(rows))
    cache.save()
    return changed
