"""The `snakemake` command line the benchmarks run the workflow with."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The environment's own snakemake, beside the Python that runs the benchmark.
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def workflow_command(
    workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile", configs=()
) -> list[str]:
    """`snakemake` on ``workdir`` with its config.yaml (or the files ``configs``), then ``args``."""
    configs = configs or [workdir / "config.yaml"]
    return [SNAKEMAKE, "-s", str(snakefile), "-d", str(workdir), "--configfile", *map(str, configs), *args]
