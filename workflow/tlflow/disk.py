"""Write large arrays on a disk that may fill: checked first, blocks reserved, a full disk named.

numpy writes a memory-mapped ``.npy`` into a sparse file, so a full disk shows up
as SIGBUS on some later page, which kills the job without a word; and ``np.save``
reports a short write as "N requested and M written". Here a full disk is always
an OSError(ENOSPC) that names the file, the bytes it needs and those free.
"""

from __future__ import annotations

import errno
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


def open_memmap(path, dtype, shape: tuple) -> np.memmap:
    """A new ``.npy`` at ``path`` to fill through memory, every block of it reserved.

    With its blocks allocated up front (posix_fallocate), writing the pages can no
    longer meet a full disk.
    """
    check_space(path, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    if hasattr(os, "posix_fallocate"):  # not on macOS
        size = os.path.getsize(path)
        with open(path, "r+b") as handle:
            try:
                os.posix_fallocate(handle.fileno(), 0, size)
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    free = _free(Path(path).parent)
                    raise full(path, f"reserving {size:,} bytes, {free:,} free") from error
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise  # else a file system that cannot reserve: checked above
    return out


def save(path, array: np.ndarray) -> None:
    """``np.save``, with its short write on a full disk raised as ENOSPC naming ``path``."""
    try:
        np.save(path, array)
    except OSError as error:
        if error.errno not in (None, errno.ENOSPC, errno.EDQUOT):
            raise
        raise full(path, f"{error}, {_free(Path(path).parent):,} bytes free") from error
