"""Plans on disk: saved by the main process of a run, read by each job it starts.

A plan is saved under a name of its config's digest and its own content, and the
main process names that file in the environment (``TLFLOW_PLAN``), which the jobs
it starts inherit (the SLURM executor submits with ``--export=ALL``). A job
started without it (an executor that passes no environment) reads the newest
plan of its config. So a dry run or a refused second run, planning after the
data changed, saves a plan beside the one a running run's jobs read, never over
it. The newest ``KEEP`` plans are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..manifest import text_digest, write_if_changed
from .model import Plan, PlanError, config_digest

ENV = "TLFLOW_PLAN"
KEEP = 8


def _folder(state_dir) -> Path:
    return Path(state_dir, "plans")


def _newest_first(paths) -> list[Path]:
    return sorted(paths, key=lambda path: path.stat().st_mtime_ns, reverse=True)


def save(plan: Plan, state_dir: str | os.PathLike) -> Path:
    """Write ``plan`` atomically (unless there already), name it in the environment,
    and remove all but the newest ``KEEP`` plans."""
    text = plan.to_json()
    path = _folder(state_dir) / f"{plan.config}-{text_digest(text)}.json"
    write_if_changed(path, text)
    os.utime(path)  # the newest again, also when it was there
    os.environ[ENV] = str(path)
    for old in _newest_first(_folder(state_dir).glob("*.json"))[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def load(config: dict, state_dir: str | os.PathLike) -> Plan:
    """The plan a job's run saved: the one ``TLFLOW_PLAN`` names, else the newest
    of ``config``; raises PlanError when there is none or it is of another config."""
    digest = config_digest(config)
    named = os.environ.get(ENV)
    found = [Path(named)] if named else _newest_first(_folder(state_dir).glob(f"{digest}-*.json"))
    if not found or not found[0].is_file():
        raise PlanError(
            f"this job finds no plan of its run ({named or _folder(state_dir)}): a job "
            "reads the plan that the run's main process saved when it started. Start the "
            "workflow with `snakemake` (not a job of it alone), and do not remove "
            f"{_folder(state_dir)} while it runs."
        )
    try:
        plan = Plan.from_json(found[0].read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PlanError(
            f"the plan {found[0]} cannot be read ({error}): start the workflow again "
            "with `snakemake`, which plans the run again."
        ) from None
    if plan.config != digest:
        raise PlanError(
            f"this job's config differs from the one its run was planned with ({found[0]}): "
            "was the config file edited while the run went on? A job must compute what "
            "its run planned: start the workflow again with `snakemake`."
        )
    return plan
