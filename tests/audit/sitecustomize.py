"""Records the files a Python process opens and the folders it lists.

Put this folder on PYTHONPATH and name a log file in TLFLOW_AUDIT: every Python
process started with that environment (Snakemake, its jobs' scripts) appends
``<event>\\t<process id>\\t<absolute path>`` lines to it. Used by tests/test_scale.py and
benchmarks/scale.py to see which image files a run touches.
"""

import os
import sys

_LOG = os.environ.get("TLFLOW_AUDIT")
EVENTS = ("open", "os.scandir", "os.listdir")

if _LOG:
    _out = open(_LOG, "a", buffering=1, encoding="utf-8", errors="backslashreplace")

    def _record(event, args):
        if event in EVENTS and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(args[0])).replace("\n", "\\n")
            _out.write(f"{event}\t{os.getpid()}\t{path}\n")

    sys.addaudithook(_record)
