"""Write large arrays on a disk that may fill: checked first, blocks reserved, a full disk named.

numpy writes a memory-mapped ``.npy`` into a sparse file, so a full disk shows up
as SIGBUS on some later page, which kills the job without a word; and ``np.save``
reports a short write as "N requested and M written". Here a full disk is always
an OSError(ENOSPC) that names the file, the bytes it needs and those free.
"""

from __future__ import annotations

import errno
import mmap
import os
import shutil
from pathlib import Path

import numpy as np


def full(path, detail: str) -> OSError:
    """The error of a full disk while writing ``path``; ``detail`` says how full."""
    return OSError(
        errno.ENOSPC,
        f"No space left on device writing {path}: {detail}. "
        "Free some space there (or set a working directory on a larger disk) and rerun.",
    )


def _free(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def check_space(path, needed: int) -> None:
    """Fail before writing ``needed`` bytes at ``path`` when its folder has fewer free."""
    folder = Path(path).parent
    free = _free(folder)
    if free < needed:
        raise full(path, f"it needs {needed:,} bytes, {free:,} are free in {folder}")


def write_rows(path, dtype, shape: tuple, blocks) -> None:
    """A new ``.npy`` at ``path`` of ``shape``, its rows written from ``blocks``
    (arrays of consecutive rows, in order) through the file, every block of it
    reserved first.

    With its blocks allocated up front (posix_fallocate), writing can no longer
    meet a full disk. Written, not memory-mapped: the pages are the file system's
    cache, not the job's resident memory, however large the file.
    """
    check_space(path, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    offset = header.offset
    del header  # the header is written and the file sized; no page of it is touched
    with open(path, "r+b") as handle:
        if hasattr(os, "posix_fallocate"):  # not on macOS
            _reserve(path, handle)
        handle.seek(offset)
        rows = 0
        for block in blocks:
            handle.write(np.ascontiguousarray(block, dtype=dtype).data)
            rows += len(block)
    if rows != shape[0]:
        raise ValueError(f"{path}: {rows} rows written for {shape[0]}")


def _reserve(path, handle) -> None:
    size = os.path.getsize(path)
    try:
        os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            free = _free(Path(path).parent)
            raise full(path, f"reserving {size:,} bytes, {free:,} free") from error
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise  # else a file system that cannot reserve: checked above


def release(mapped) -> None:
    """Drop the pages of the read-only memory map behind ``mapped`` (an np.memmap
    or a view of one) from this process's resident memory.

    The file system still caches them and a later read maps them again, so a job
    that reads a large file block by block holds about one block, not the file.
    """
    handle = getattr(mapped, "_mmap", None)
    if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
        handle.madvise(mmap.MADV_DONTNEED)


def save(path, array: np.ndarray) -> None:
    """``np.save``, with its short write on a full disk raised as ENOSPC naming ``path``."""
    try:
        np.save(path, array)
    except OSError as error:
        if error.errno not in (None, errno.ENOSPC, errno.EDQUOT):
            raise
        raise full(path, f"{error}, {_free(Path(path).parent):,} bytes free") from error
