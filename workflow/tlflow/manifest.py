"""Shard membership, content hashes and the manifests that drive reruns.

A shard is (split, k): the images of a split whose path hashes to k.
Membership depends on the name alone, so adding a file never moves another one.
A shard's manifest lists its files with their content hashes, and no class. The
workflow makes it the only input of the shard's job and reruns it when its digest
changes, so a shard reruns exactly when an image in it was added, removed or
edited, and not when a file was merely touched, nor when a label changed. A
split's labels listing (file, class, label) is read where its shards are joined,
so a new label reruns the join and what follows, never an extraction. The images
themselves are no job's inputs: Snakemake's bookkeeping then costs the same for
ten images or a million.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import time
import zlib
from pathlib import Path
from stat import S_ISREG

from .atomic import atomic_path

MANIFEST_FIELDS = ["file", "class", "label", "sha256"]  # of a joined split
LISTING_FIELDS = ["file", "sha256"]  # images to extract or predict: no class
LABEL_FIELDS = ["file", "class", "label"]  # a split's labels listing


class UnreadableError(ValueError):
    """Listed images whose bytes cannot be read (a broken link, no permission)."""


def shard_of(relpath: str, shards: int) -> int:
    """Stable shard number of a file: crc32 of its path (not Python's salted hash)."""
    return zlib.crc32(relpath.encode("utf-8")) % shards


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# A file's ctime is coarse (the kernel's clock tick, a few ms), so a file changed
# less than this before it was hashed could change again within the same tick,
# with the same key: its hash is used but not remembered (git's "racy" files).
RACY_NS = 100_000_000


class HashCache:
    """Content hashes remembered by what no ordinary tool sets back, so only changed files are read.

    The key is size, mtime, ctime, inode and device: `touch -r` and `rsync -t` set
    mtime back, but any write or rename moves ctime, which only the kernel sets.
    ``verify`` reads every file again (for file systems whose ctime is unreliable);
    it corrects the cache and changes no hash that was right. A cache never decides
    a result: a missing or damaged one only costs re-hashing.
    """

    def __init__(self, path: str | os.PathLike, verify: bool = False):
        self.path = Path(path)
        self.verify = verify
        self.entries: dict[str, list] = {}
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False
        self.used: set[str] = set()

    def sha256(self, path: str) -> str:
        self.used.add(path)
        info = os.stat(path)
        if not S_ISREG(info.st_mode):  # a FIFO would block the read for ever
            raise OSError(f"not a regular file (mode {info.st_mode:o})")
        key = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]
        entry = self.entries.get(path)
        if entry and entry[:-1] == key and not self.verify:
            return entry[-1]
        digest = file_sha256(path)
        if time.time_ns() - info.st_ctime_ns < RACY_NS:
            # Changed just now: a second change could keep this ctime (racy git).
            self.changed |= self.entries.pop(path, None) is not None
        elif entry != key + [digest]:
            self.entries[path] = key + [digest]
            self.changed = True
        return digest

    def save(self) -> None:
        """Store the entries of the files asked for: deleted files are forgotten."""
        kept = {p: entry for p, entry in self.entries.items() if p in self.used}
        if len(kept) != len(self.entries):
            self.entries = kept
            self.changed = True
        if self.changed:
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(self.entries))
            self.changed = False


def digests(cache: HashCache | None, paths: list[str]) -> list[str]:
    """Content hashes of ``paths`` ("" without a cache); every unreadable one named at once."""
    if cache is None:
        return [""] * len(paths)
    digests, failed = [], []
    for path in paths:
        try:
            digests.append(cache.sha256(path))
        except OSError as error:
            failed.append(f"{path} ({error.strerror or error})")
    if failed:
        raise UnreadableError(
            f"{len(failed)} image file(s) cannot be read: {'; '.join(failed[:10])}"
            f"{' ...' if len(failed) > 10 else ''}. A broken symbolic link or a missing "
            "read permission? Fix or remove them and rerun; nothing was run."
        )
    return digests


def _csv_text(fields: list[str], rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    writer.writerows(rows)
    return buffer.getvalue()


def manifest_text(rows: list[dict], fields=LISTING_FIELDS) -> str:
    return _csv_text(fields, ([row[f] for f in fields] for row in rows))


def read_listing(path: str | os.PathLike) -> list[dict]:
    """Rows of a manifest as strings (file names may hold commas, quotes, newlines)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_manifest(path: str | os.PathLike) -> list[dict]:
    return [{**row, "label": int(row["label"])} for row in read_listing(path)]


def write_if_changed(path: str | os.PathLike, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds it; keeps mtime otherwise."""
    path = Path(path)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return True


def shard_rows(dataset, split: str, shards: int, k: int, cache: HashCache | None = None):
    """Manifest rows (file, sha256) of shard k of ``split``, by file; hashes if ``cache``."""
    rows = _split_shards(dataset, split, shards, cache).get(k, [])
    return [dict(zip(LISTING_FIELDS, row)) for row in rows]


def _split_shards(dataset, split, shards, cache) -> dict[int, list[tuple]]:
    """Rows (file, sha256) of every non-empty shard of ``split``, in one pass.

    Tuples and plain string paths: this runs once per image on every run.
    """
    root = os.fspath(dataset.data_dir)
    files = dataset.extracted(split)
    hashes = digests(cache, [f"{root}/{f}" for f in files])
    by_shard: dict[int, list[tuple]] = {}
    for f, digest in zip(files, hashes):
        by_shard.setdefault(shard_of(f, shards), []).append((f, digest))
    return by_shard


def label_rows(dataset, split: str) -> list[tuple[str, str, int]]:
    """(file, class, label) of every image of ``split``, by label then file. Of
    multi-label data, the class is the image's labels joined and the label -1: the
    join makes the 0/1 matrix from the class."""
    return [
        (f, cls, -1 if dataset.separator else label)
        for label, cls in enumerate(dataset.classes)
        for f in dataset.images[split][cls]
    ]


def listings(dataset, shards: int, cache: HashCache) -> dict[str, tuple[str, int]]:
    """``{name: (manifest text, image count)}``: ``<split>/shard-<k>`` of every non-empty
    shard, and ``<split>/labels`` of every split."""
    found = {}
    for split in dataset.images:
        for k, rows in sorted(_split_shards(dataset, split, shards, cache).items()):
            found[f"{split}/shard-{k}"] = (_csv_text(LISTING_FIELDS, rows), len(rows))
        rows = label_rows(dataset, split)
        found[f"{split}/labels"] = (_csv_text(LABEL_FIELDS, rows), len(rows))
    return found


def folder_listing(folder, files: list[str], cache: HashCache) -> tuple[str, int]:
    """Manifest text and count of images to predict (``files`` relative to ``folder``)."""
    rows = list(zip(files, digests(cache, [os.path.join(folder, f) for f in files])))
    return _csv_text(LISTING_FIELDS, rows), len(rows)


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def stage(texts: dict[str, str], staged_dir: str | os.PathLike) -> dict[str, str]:
    """Keep each text as ``<staged_dir>/<digest>.csv``; return ``{name: digest}``.

    Staged files are named by content: an unchanged listing is left as it is, and a
    changed one is a new, newer file. As the manifest rule's input, it reruns that
    rule by its name and time alone (no need for Snakemake's records), and the
    job publishes it without recomputing anything. A staged file whose bytes are not
    its text (edited or damaged, maybe through the published manifest, its hard
    link) is written again, so the manifest is published again. Texts no longer
    listed are removed.
    """
    staged_dir = Path(staged_dir)
    digests = {name: text_digest(text) for name, text in texts.items()}
    for name, digest in digests.items():
        target = staged_dir / f"{digest}.csv"
        data = texts[name].encode("utf-8")
        try:
            whole = target.read_bytes() == data
        except OSError:
            whole = False
        if not whole:
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
    current = {f"{d}.csv" for d in digests.values()}
    if staged_dir.is_dir():
        for old in staged_dir.glob("*.csv"):
            if old.name not in current:
                old.unlink(missing_ok=True)
    return digests


def publish_manifest(staged: str | os.PathLike, out: str | os.PathLike) -> None:
    """Put a staged listing at ``out`` (a hard link: no second copy on disk)."""
    with atomic_path(out) as tmp:
        try:
            os.link(staged, tmp)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(staged, tmp)


def count_rows(path: str | os.PathLike) -> int:
    """Images in a manifest (not lines: a file name may hold a newline)."""
    return len(read_listing(path))
