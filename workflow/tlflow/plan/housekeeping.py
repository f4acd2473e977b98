"""What the main process does to the working directory before a run, with the
warnings to show: damaged results set aside, left-out entries listed, locks named."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from .. import intermediates, listing, manifest
from .model import Plan


def prepare_run(plan: Plan, state_dir, ignored_list, argv: list[str], dry_run: bool = False) -> list[str]:
    """Prepare the working directory for ``plan``; return the warnings.

    ``argv`` is the command line of the run, so that the lock warning names the
    exact command that removes a killed run's locks. A dry run moves no result: it
    names the damaged ones that a run would set aside and rebuild.
    """
    found = intermediates.set_aside("results", Path(state_dir, "damaged"), move=not dry_run)
    warnings = [
        f"{path} is damaged ({why}): a run moves it to {moved} and rebuilds it; this "
        "dry run lists what is to do as if it were whole."
        if dry_run
        else f"{path} is damaged ({why}): moved to {moved}; this run rebuilds it."
        for path, why, moved in found
    ]
    warnings += filter(None, [write_ignored(plan, ignored_list), lock_warning(argv)])
    return warnings


def write_ignored(plan: Plan, path: str | os.PathLike) -> str | None:
    """List ``plan.ignored`` in ``path`` (rewritten only when the list changed, removed
    when empty) and return the warning to show, or None when nothing was left out."""
    if not plan.ignored:
        Path(path).unlink(missing_ok=True)
        return None
    rows = [{"file": name, "reason": reason} for name, reason in plan.ignored]
    manifest.write_if_changed(path, manifest.manifest_text(rows, ["file", "reason"]))
    return (
        f"Ignoring {len(plan.ignored)} entries that are not images in a class folder: "
        f"{listing.summary(plan.ignored)}. Each with its reason: {path}"
    )


def lock_warning(argv: list[str], locks: str | os.PathLike = ".snakemake/locks") -> str | None:
    """The exact command to run when Snakemake's locks may be a killed run's, or None.

    The locks are never removed for the user: a run started from another login node
    of a shared file system is invisible here and holds them just as well.
    """
    if not any(Path(locks).glob("*.lock")):
        return None
    unlock = shlex.join(["snakemake", *argv[1:], "--unlock"])
    return (
        f"This folder holds Snakemake's locks ({locks}): another run is going, or one "
        f"was killed. If no run is going, on any host, remove them with `{unlock}` "
        "and start this run again."
    )
