"""The whole default run against its limit, and where the run's time goes.

Run from the repository root (docs/benchmarks.md shows the output):

    .venv/bin/python benchmarks/end_to_end.py [--data ../shared/data/catsdogs-2k] [--checkout DIR] [--keep DIR]

- **The workflow**: ``snakemake --cores <cpus>`` in a fresh folder, the default
  config with EfficientNet-Lite0 (../shared/models, real ImageNet weights) at
  128x128 on the data folder; the whole command is timed.
- **The limit**, in the same run: one process that imports TensorFlow once,
  decodes and extracts every image (tlflow.features.compute, the workflow's own
  loop) and fits the default linear candidates (tlflow.head.select, linear only).

It prints both, their ratio, and each job of the run on its time line (from
Snakemake's log, to the second), its seconds (its benchmark file), an estimate
of its start-up (a fresh Python importing what the job imports, measured here)
and the rest, its compute; and the time no job ran (planning, scheduling).
``precision: auto`` reads the decisions cached by the benchmarks
(benchmarks/extraction.py), so its timing is paid once per machine, not here.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml
from extraction import BACKBONES, DATA, ROOT, SIZES, auto_precision, cpus, header, schema_defaults
from snakemake_command import workflow_command

# The limit runs this checkout's tlflow, not the one installed in the environment.
sys.path.insert(0, str(ROOT / "workflow"))

BACKBONE = "efficientnet_lite0"
# Rules whose jobs import TensorFlow; the others start without it.
TENSORFLOW_RULES = {"extract_shard", "train_head", "deploy_model", "fine_tune", "export_model"}


def images(data: Path, split: str) -> list[Path]:
    return sorted(p for p in (data / split).glob("*/*") if p.is_file())


def limit(data: Path) -> dict:
    """Seconds of the limit's parts, in this process (TensorFlow imported once here)."""
    import numpy as np

    started = time.perf_counter()
    import keras  # noqa: F401 - the one import of TensorFlow, timed

    from tlflow import backbones, head, runtime

    imported = time.perf_counter()
    runtime.configure_threads(cpus())
    spec = backbones.resolve(BACKBONES[BACKBONE], SIZES[BACKBONE], "auto")
    spec["precision"] = auto_precision(spec)[0]
    from tlflow import features

    found = {}
    for split in ("train", "validation"):
        paths = images(data, split)
        labels = np.array(
            [0 if p.parent.name == sorted({q.parent.name for q in paths})[0] else 1 for p in paths]
        )
        rows = np.zeros((len(paths), 2, 1280), np.float32)
        for indices, batch, failed in features.compute([str(p) for p in paths], spec, 32, cpus()):
            assert not failed, failed
            rows[indices] = batch
        found[split] = rows, labels
    extracted = time.perf_counter()
    settings = {**schema_defaults("head"), "kind": "linear"}
    table, winner, _ = head.select(found["train"], found["validation"], 2, settings, "pooled")
    fitted = time.perf_counter()
    return {
        "import": imported - started,
        "extract": extracted - imported,
        "fit": fitted - extracted,
        "total": fitted - started,
        "images": sum(len(y) for _, y in found.values()),
        "candidates": len(table),
        "val_accuracy": table[winner]["val_accuracy"],
    }


def startup(modules: str) -> float:
    """Seconds a fresh Python takes to import ``modules`` (what a job starts with)."""
    start = time.perf_counter()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT / "workflow"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]{8} \d{4})\]")


def timeline(log: str) -> dict[str, list]:
    """{jobid: [rule, its message, start, end]} (seconds since the epoch), from Snakemake's log."""
    jobs, now = {}, None
    for line in log.splitlines():
        if match := STAMP.match(line):
            now = datetime.strptime(match[1], "%a %b %d %H:%M:%S %Y").timestamp()
        elif match := re.match(r"^(?:local)?[Jj]ob (\d+): (.*)", line):
            jobs[match[1]] = [match[2].split(":")[0], match[2], now, None]
        elif (match := re.search(r"Finished jobid: (\d+) \(Rule: (\w+)\)", line)) and match[1] in jobs:
            jobs[match[1]][0], jobs[match[1]][3] = match[2], now
    return {job: entry for job, entry in jobs.items() if entry[3] is not None}


def job_seconds(seconds: dict, rule: str, message: str):
    """The benchmark file's seconds of the job ``rule`` with ``message``, or None."""
    for key, value in seconds.items():
        parts = key.split("/")
        if rule in parts:
            rest = parts[parts.index(rule) + 1 :]
            if all(p in message or p.replace("-", " ") in message for p in rest):
                return value
    return None


def workflow(data: Path, checkout: Path, keep: Path | None = None) -> dict:
    """The default run of the workflow in ``checkout`` (its Snakefile and tlflow), in a
    fresh folder: ``keep`` (left with the run's results and job logs) or a temporary one."""
    env = {**os.environ, "PYTHONPATH": str(checkout / "workflow")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) if keep is None else keep
        if keep is not None and keep.exists() and any(keep.iterdir()):
            raise SystemExit(f"--keep {keep}: the folder is not empty; the run needs a fresh one")
        work.mkdir(parents=True, exist_ok=True)
        config = {
            "data_dir": str(data),
            "splits": ["train", "validation"],
            "backbones": [BACKBONES[BACKBONE]],
            "image_size": SIZES[BACKBONE],
        }
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        command = workflow_command(work, "--cores", str(cpus()), snakefile=checkout / "Snakefile")
        started = time.time()
        subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        wall = time.time() - started
        log = next((work / ".snakemake/log").glob("*.snakemake.log")).read_text()
        seconds = {}
        for bench in work.glob("logs/**/*.benchmark.tsv"):
            name = str(bench.relative_to(work / "logs")).removesuffix(".benchmark.tsv")
            seconds[name] = float(next(csv.DictReader(bench.open(), delimiter="\t"))["s"])
        logs = {p.name: p.read_text() for p in work.glob("logs/**/*.log")}
        accuracy = yaml.safe_load((work / f"results/{BACKBONE}/evaluation/metrics.json").read_text())[
            "accuracy"
        ]
        plan_line = next((line for line in log.splitlines() if "Extraction precision" in line), "")
        return {
            "wall": wall,
            "started": started,
            "jobs": timeline(log),
            "seconds": seconds,
            "logs": logs,
            "accuracy": accuracy,
            "precision": plan_line,
        }


def report(run: dict, lim: dict, start_tf: float, start_plain: float, plugin: float) -> None:
    print(
        f"limit: {lim['total']:.1f} s = import TensorFlow {lim['import']:.1f} s + decode and extract "
        f"{lim['images']} images {lim['extract']:.1f} s + fit {lim['candidates']} linear candidates "
        f"{lim['fit']:.1f} s (validation accuracy {lim['val_accuracy']:.4f})"
    )
    print(
        f"workflow: {run['wall']:.1f} s, the whole `snakemake` command (evaluation accuracy {run['accuracy']:.4f})"
    )
    print(f"ratio: {run['wall'] / lim['total']:.2f}x the limit (goal: at most 2x)")
    # Snakemake imports every executor plugin it has when it starts; where SLURM's
    # client commands exist but no controller answers, the SLURM plugin waits on them.
    print(
        f"  of which Snakemake loading its SLURM executor plugin: {plugin:.1f} s; without it "
        f"{(run['wall'] - plugin) / lim['total']:.2f}x"
    )
    print(f"  {run['precision'].strip()}")
    print(
        f"start-up of a job (a fresh Python importing its libraries): with TensorFlow {start_tf:.1f} s, "
        f"without {start_plain:.1f} s"
    )
    print("jobs on the run's time line (s from the command's start, to the second):")
    busy = []
    for rule, message, start, end in sorted(run["jobs"].values(), key=lambda j: (j[2], j[3])):
        begin, finish = start - run["started"], end - run["started"]
        busy.append((begin, finish))
        seconds = job_seconds(run["seconds"], rule, message)
        if seconds is None:  # no benchmark file: the target rule
            continue
        up = min(seconds, start_tf if rule in TENSORFLOW_RULES else start_plain)
        print(
            f"  {begin:5.0f} to {finish:4.0f}  {message[:62]:62s} {seconds:5.1f} s: start-up ~{up:.1f}, "
            f"compute ~{seconds - up:.1f}"
        )
    idle, reached = 0.0, 0.0
    for begin, finish in sorted(busy):
        idle += max(0.0, begin - reached)
        reached = max(reached, finish)
    idle += max(0.0, run["wall"] - reached)
    print(f"  no job running (planning, scheduling, the end): ~{idle:.0f} s of {run['wall']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA / "catsdogs-2k")
    # Another checkout's workflow (e.g. `git worktree add ../before <commit>`), to
    # compare versions on the same machine; the limit is always this checkout's.
    parser.add_argument("--checkout", type=Path, default=ROOT)
    # A folder to run in and leave behind, for its per-job logs (logs/<id>/*.log).
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    from tlflow import backbones

    header()
    # Timed once per machine (tlflow.precision), as a user's second run finds it.
    spec = backbones.resolve(BACKBONES[BACKBONE], SIZES[BACKBONE], "auto")
    print(f"precision auto: {auto_precision(spec)}")
    start_tf = startup("keras, tlflow.features")
    start_plain = startup("tlflow.evaluate, tlflow.audit")
    plugin = startup("snakemake_executor_plugin_slurm") - startup("snakemake")
    run = workflow(args.data, args.checkout.resolve(), args.keep and args.keep.resolve())
    print(f"workflow of {args.checkout}")
    result = subprocess.run(
        [sys.executable, __file__, "--limit-child", str(args.data)],
        capture_output=True,
        text=True,
        check=True,
    )
    lim = yaml.safe_load(result.stdout.strip().splitlines()[-1])
    report(run, lim, start_tf, start_plain, plugin)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--limit-child"]:
        import json

        print(json.dumps(limit(Path(sys.argv[2]))))
    else:
        main()
