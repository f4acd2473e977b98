"""Records every Snakemake script job's peak memory beside its ``mem_mb`` request.

Put this folder on PYTHONPATH and name a file in TLFLOW_JOB_MEMORY: each job script
(a ``script:`` rule's process) appends one JSON line when it exits, also after an
error: ``{"log", "rule", "mem_mb", "peak_mb"}``, the peak being the high-water mark
of the process's own resident memory (tlflow.logs.peak_mb, in MB of 10^6 bytes like
``mem_mb``; the jobs do their work in that one process), not counting the pages of
Snakemake's process it was forked from.
Snakemake's benchmark files only sample every 30 s. Used by benchmarks/data_path.py.
"""

import atexit
import json
import os
import sys

_OUT = os.environ.get("TLFLOW_JOB_MEMORY")


def _record() -> None:
    job = getattr(sys.modules.get("__main__"), "snakemake", None)  # the script's preamble sets it
    if job is None:
        return
    from tlflow.logs import peak_mb

    line = {
        "log": str(job.log[0]) if job.log else None,
        "rule": job.rule,
        "mem_mb": getattr(job.resources, "mem_mb", None),
        "peak_mb": round(peak_mb(), 1),
    }
    with open(_OUT, "a", encoding="utf-8") as out:  # one short append per job: whole lines
        out.write(json.dumps(line) + "\n")


if _OUT:
    atexit.register(_record)
