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
