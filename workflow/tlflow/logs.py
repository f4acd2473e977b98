"""Send a job's messages (and library warnings) to its Snakemake log file."""

from __future__ import annotations

import logging
import sys


def to_file(path) -> None:
    handle = open(path, "w", buffering=1)  # line-buffered: follow it with tail -f
    sys.stderr = sys.stdout = handle
    logging.basicConfig(
        stream=handle,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def job(smk) -> None:
    """A Snakemake script's set-up: its messages to its log file, and, when it exits,
    its peak memory beside its ``mem_mb`` request (tlflow.job_memory sizes those)."""
    import atexit

    to_file(smk.log[0])
    atexit.register(peak_memory, smk.resources.get("mem_mb", "no"))


def peak_mb() -> float:
    """This process's peak resident memory, in MB of 10^6 bytes like ``mem_mb``.

    Linux's VmHWM, the high-water mark of the process's own memory: getrusage's
    ru_maxrss also counts the pages of the parent it was forked from (Snakemake's,
    or a test's), as Linux keeps the larger figure across exec.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6  # kB of 1,024 bytes
    except OSError:  # not Linux
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def peak_memory(asked_mb) -> None:
    """Log the job's peak resident memory beside its ``mem_mb`` request, to size it."""
    logging.getLogger(__name__).info("peak memory %.0f MB of the %s MB asked", peak_mb(), asked_mb)
