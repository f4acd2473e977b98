"""Clear the locks a killed Snakemake run leaves behind, when no run is still going.

Snakemake locks its working directory and removes the lock when it ends; a run
killed by a signal it cannot catch (a power cut, `kill -9`, an out-of-memory kill)
leaves the lock, and the next run stops until `snakemake --unlock`. A lock is
stale when no Snakemake process on this machine works in the same directory.
Runs started from another host on a shared file system are not visible here.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def _snakemake_running_in(workdir: Path) -> bool:
    own = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    for process in psutil.process_iter(["pid", "cwd", "cmdline"]):
        info = process.info
        if info["pid"] in own or not info["cwd"] or not info["cmdline"]:
            continue
        if "snakemake" in " ".join(info["cmdline"]) and Path(info["cwd"]) == workdir:
            return True
    return False


def clear_stale_locks(workdir: str | os.PathLike = ".") -> list[str]:
    """Remove stale lock files; return their names (empty when none or a run is live)."""
    workdir = Path(workdir).resolve()
    locks = sorted((workdir / ".snakemake" / "locks").glob("*.lock"))
    if not locks or _snakemake_running_in(workdir):
        return []
    for lock in locks:
        lock.unlink(missing_ok=True)
    return [lock.name for lock in locks]
