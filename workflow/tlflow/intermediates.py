"""Damaged files under ``results/``, found when a run is planned and set aside.

Snakemake decides what to rerun by times and records, never by content: a head
overwritten with garbage, a truncated ``.npy`` or an empty manifest looks up to
date, and every rerun fails on it. Each file the workflow writes is checked here
by what its format allows cheaply (a header, a signature, a trailer, its size;
never a whole read), and a damaged one is moved out of ``results/``: the plan then
rebuilds it and what follows, with no file to delete by hand.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np

from .features import CHECKSUM

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PNG_SIGNATURE, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
# What extract_shard writes beside a shard's rows (not its .skipped.csv).
SHARD_MANIFEST = re.compile(r"shard-\d+\.csv")
# JSON files are small (metadata, metrics): parsed whole.
JSON_LIMIT = 50_000_000


def _npy(path: Path) -> str | None:
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = NPY_HEADERS.get(version)
            if read_header is None:  # a format version numpy writes rarely: not checked
                return None
            shape, _, dtype = read_header(handle)
        except (ValueError, EOFError, SyntaxError) as error:
            return f"no NumPy header ({error})"
        expected = handle.tell() + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    return None if size == expected else f"{size} bytes where its header needs {expected}"


def _h5(path: Path) -> str | None:
    with open(path, "rb") as handle:
        return None if handle.read(8) == HDF5_SIGNATURE else "not an HDF5 file"


def _keras(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as error:
        return f"not a Keras archive ({error})"
    return None if "config.json" in names else "a zip without the model's config.json"


def _json(path: Path) -> str | None:
    if path.stat().st_size > JSON_LIMIT:
        return None
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        return f"not valid JSON ({error})"
    return None


def _text_table(path: Path) -> str | None:
    """Tables the workflow writes end with a newline: an empty or cut one does not."""
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        return None if handle.read(1) == b"\n" else "cut short (no final newline)"


def _shard_manifest(path: Path) -> str | None:
    """A shard's manifest also carries its rows' checksums (tlflow.features)."""
    reason = _text_table(path)
    if reason is not None:
        return reason
    with open(path, encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
    if CHECKSUM not in header:
        return f"no '{CHECKSUM}' column of row checksums (written by an earlier version)"
    return None


def _png(path: Path) -> str | None:
    with open(path, "rb") as handle:
        start = handle.read(8)
        handle.seek(max(0, path.stat().st_size - 8))
        end = handle.read(8)
    return None if start == PNG_SIGNATURE and end == PNG_END else "not a whole PNG"


CHECKS = {
    ".npy": _npy,
    ".h5": _h5,
    ".keras": _keras,
    ".json": _json,
    ".csv": _text_table,
    ".tsv": _text_table,
    ".png": _png,
}


def damage(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a whole file of its kind, or None (also for unknown kinds)."""
    path = Path(path)
    shard = SHARD_MANIFEST.fullmatch(path.name) and "shards" in path.parts
    check = _shard_manifest if shard else CHECKS.get(path.suffix)
    if check is None:
        return None
    try:
        return check(path)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"


def set_aside(
    results: str | os.PathLike, aside: str | os.PathLike, move: bool = True
) -> list[tuple[str, str, str]]:
    """Move each damaged file below ``results`` into ``aside`` (same relative path,
    under a time stamp); returns (file, reason, where it went) of each. With
    ``move`` false (a dry run) nothing moves: the place is where a run would move it.

    Hidden entries are skipped: the feature cache checks its own parts
    (tlflow.features) and a job's temporary files are not results yet.
    """
    moved = []
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for folder, directories, files in os.walk(results):
        directories[:] = [d for d in directories if not d.startswith(".")]
        for name in files:
            path = Path(folder, name)
            if name.startswith(".") or path.is_symlink():
                continue
            reason = damage(path)
            if reason is None:
                continue
            target = Path(aside, stamp, path.relative_to(results))
            if move:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
            moved.append((str(path), reason, str(target)))
    return moved
