"""Write files so that a killed job never leaves one that looks complete."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from pathlib import Path

# In the temporary name: a partial file is stale once its writer is gone, which
# only the host that ran the writer can tell (on a shared cluster file system).
HOST = socket.gethostname()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_stale_partials(path: Path) -> None:
    """Remove temporary files of ``path`` left by killed writers on this host."""
    pattern = re.compile(re.escape(f".{path.stem}.partial-{HOST}-") + r"(\d+)" + re.escape(path.suffix))
    with os.scandir(path.parent) as entries:
        matches = [(e.path, pattern.fullmatch(e.name)) for e in entries]
    for partial, match in matches:
        if match and not _running(int(match[1])):
            Path(partial).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it into place only on success.

    The temporary name keeps the suffix, so libraries that choose the format by
    suffix (``.npy``, ``.h5``, ``.png``) still do. One that a killed job left
    (SIGKILL, a power cut: no clean-up ran) is removed by the next write of ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(path)
    tmp = path.with_name(f".{path.stem}.partial-{HOST}-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
