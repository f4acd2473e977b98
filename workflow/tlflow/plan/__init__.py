"""The plan of a run: what the config and the data folder ask for, found once.

The main process of a run (``snakemake``, also ``snakemake -n``) calls
``make_plan`` when it reads the workflow: it checks the splits' roles, decides
the precision, resolves the backbone specs, lists and hashes the images, and
stages each listing for the manifest rule; ``prepare_run`` sets damaged results
aside and lists what was left out. ``save`` keeps the plan on disk; a
job that reads the workflow again (a cluster job, on a compute node) calls
``load`` and takes everything from the plan instead of planning again, so it
computes what its run planned even when the data folder or the hardware differ.

Plain Python, no Snakemake: the rules' input functions read a ``Plan``.
"""

from .housekeeping import prepare_run
from .make import make_plan
from .model import Listing, Plan, PlanError, config_digest
from .store import load, save

__all__ = [
    "Listing",
    "Plan",
    "PlanError",
    "config_digest",
    "load",
    "make_plan",
    "prepare_run",
    "save",
]
