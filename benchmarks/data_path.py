"""Benchmark: the data path at scale (issue 21): every job's memory and seconds, and the features' bytes on disk.

For each size N it writes N generated images (tlflow.synthetic, small JPEGs, two
classes, 80% train, 10% validation, 10% test) and runs the whole default workflow,
`snakemake --cores 2` with the audit on and every setting at its default except the
backbone and `image_size`. The backbone is a cheap stand-in, a saved .keras model
that rescales the pixels, resizes them to 7x7 and maps each position to 1,280
channels with a fixed random 1x1 convolution: its rows are as wide as
EfficientNet-Lite0's at 224x224 (7x7x1280, 250,880 bytes in float32) but extracting
them costs next to nothing, so what shows is the data path (joining, the heads,
evaluation, the audit).

It prints a table with one line per job:

- asked: the job's mem_mb as Snakemake resolved it (its extended benchmark file);
- peak: the high-water mark of the job's resident memory, recorded when its script
  exits by benchmarks/job_memory/sitecustomize.py (VmHWM; "~" marks Snakemake's
  max_rss, sampled every 30 s, where no record was written, e.g. a job killed);
- seconds: the job's wall time (its benchmark file);

then the whole run's seconds and the bytes under results/<id>/features and
results/<id>/.cache (a file hard-linked into both counted once). Memory is in MB
of 10^6 bytes, like mem_mb.

    .venv/bin/python benchmarks/data_path.py [--images 10000 100000 1000000]
        [--image-size 32] [--workdir DIR] [--again] [--json FILE]

Without --workdir it works in a temporary folder and removes it at the end. With
--workdir the trees are kept: DIR/<N>-images-<side>px/ holds the stand-in, the
images, the run and its measurements (measured.json, written for a failed run too).
A later call with the same DIR reports a size measured already from that file
(--again measures it anew) and keeps images whose writing finished. Interrupting
is safe: a size counts as measured only once measured.json is written, and an
unfinished run starts again from an empty results/, logs/ and .snakemake/, so that
it measures a first run.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from scale import cpu_name
from snakemake_command import workflow_command
from tlflow.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "standin"  # the results folder of the stand-in, from its file name
MAP = (7, 7, 1280)
MAP_BYTES = math.prod(MAP) * 4  # one float32 map
SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}
CLASSES = 2
RUN_STATE = ("results", "logs", ".snakemake", "job_memory.jsonl", "snakemake.log")


def make_backbone(path: Path, side: int) -> None:
    """Save the stand-in backbone: side x side RGB (0..255) -> 7x7x1280, fixed weights."""
    import keras

    inputs = keras.Input((side, side, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Resizing(*MAP[:2])(x)
    initializer = keras.initializers.RandomNormal(stddev=1.0, seed=0)
    x = keras.layers.Conv2D(MAP[2], 1, kernel_initializer=initializer)(x)
    partial = path.with_name(f".partial-{path.name}")
    keras.Model(inputs, x, name=BACKBONE).save(partial)
    os.replace(partial, path)


def make_images(workdir: Path, n: int, side: int) -> dict[str, int]:
    """Write about n images into workdir/data once; images.json marks them finished."""
    done = workdir / "images.json"
    if done.exists():
        return json.loads(done.read_text())
    shutil.rmtree(workdir / "data", ignore_errors=True)  # an interrupted writing
    counts = {split: max(1, round(n * share / CLASSES)) for split, share in SHARES.items()}
    written = make_dataset(workdir / "data", counts, classes=CLASSES, size=side)
    per_split = {split: sum(classes.values()) for split, classes in written.items()}
    done.write_text(json.dumps(per_split))
    return per_split


def write_config(workdir: Path, side: int) -> None:
    config = {
        "data_dir": "data",
        "image_size": [side, side],
        "backbones": [{"name": f"{BACKBONE}.keras", "preprocessing": "none"}],
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def run_workflow(workdir: Path) -> tuple[float, int]:
    """(wall seconds, exit status) of the whole workflow; its console goes to snakemake.log."""
    env = dict(os.environ)
    # The jobs record their peak memory; the workflow runs this checkout's tlflow.
    paths = [REPO / "benchmarks/job_memory", REPO / "workflow", env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths if p)
    env["TLFLOW_JOB_MEMORY"] = str(workdir / "job_memory.jsonl")
    command = workflow_command(workdir, "--cores", "2", "--benchmark-extended")
    started = time.monotonic()
    with open(workdir / "snakemake.log", "wb") as console:
        # Its own session: a Ctrl-C reaches it once, from here.
        with subprocess.Popen(
            command, cwd=workdir, env=env, stdout=console, stderr=subprocess.STDOUT, start_new_session=True
        ) as proc:
            try:
                status = proc.wait()
            except KeyboardInterrupt:
                # Snakemake stops its jobs and removes their incomplete outputs on SIGINT.
                proc.send_signal(signal.SIGINT)
                proc.wait()
                raise
    return time.monotonic() - started, status


def jobs(workdir: Path) -> list[dict]:
    """One entry per job that ran: its name (the log's path under logs/), asked, peak, seconds."""
    logs = workdir / "logs"
    found: dict[str, dict] = {}
    for path in sorted(logs.rglob("*.benchmark.tsv")):
        with path.open(newline="") as f:
            record = next(csv.DictReader(f, delimiter="\t"), None)
        if record is None:
            continue
        name = str(path.relative_to(logs)).removesuffix(".benchmark.tsv")
        found[name] = {
            "job": name,
            "rule": record.get("rule_name"),
            "asked_mb": _resources(record.get("resources")).get("mem_mb"),
            "peak_mb": None,
            "sampled_peak_mb": _number(record.get("max_rss"), 1024 * 1024 / 1e6),  # MiB
            "seconds": _number(record.get("s")),
        }
    recorded = workdir / "job_memory.jsonl"
    for line in recorded.read_text().splitlines() if recorded.exists() else []:
        entry = json.loads(line)
        if not entry.get("log"):
            continue
        name = str(Path(entry["log"]).relative_to("logs")).removesuffix(".log")
        job = found.setdefault(
            name, {"job": name, "rule": entry["rule"], "seconds": None, "sampled_peak_mb": None}
        )
        job["peak_mb"] = entry["peak_mb"]
        if job.get("asked_mb") is None:
            job["asked_mb"] = entry["mem_mb"]
    return list(found.values())


def _resources(text: str | None) -> dict:
    try:
        return ast.literal_eval(text) if text else {}
    except (ValueError, SyntaxError):  # not the extended format
        return {}


def _number(text: str | None, scale: float = 1.0) -> float | None:
    try:
        return float(text) * scale
    except (TypeError, ValueError):  # "NA": the job ended before the first sample
        return None


def feature_bytes(workdir: Path) -> dict[str, int]:
    """Bytes of the features and their cache, each alone and together (hard links once)."""
    seen: set[tuple[int, int]] = set()
    sizes = {}
    total = 0
    for folder in ("features", ".cache"):
        files = {}
        for root, _, names in os.walk(workdir / "results" / BACKBONE / folder):
            for name in names:
                stat = os.lstat(os.path.join(root, name))
                if not os.path.islink(os.path.join(root, name)):
                    files[(stat.st_dev, stat.st_ino)] = stat.st_size
        sizes[folder] = sum(files.values())
        total += sum(size for key, size in files.items() if key not in seen)
        seen |= files.keys()
    sizes["together"] = total
    return sizes


def measure(workdir: Path, n: int, side: int, again: bool) -> dict:
    measured = workdir / "measured.json"
    if measured.exists() and not again:
        print(f"N={n}: measured before, read from {measured}", flush=True)
        return json.loads(measured.read_text())
    measured.unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    for name in RUN_STATE:  # what an earlier, unfinished run left
        path = workdir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    started = time.monotonic()
    if not (workdir / f"{BACKBONE}.keras").exists():
        make_backbone(workdir / f"{BACKBONE}.keras", side)
    images = make_images(workdir, n, side)
    print(
        f"N={n}: {images} images ready in {time.monotonic() - started:.0f} s; running the workflow",
        flush=True,
    )
    write_config(workdir, side)
    seconds, status = run_workflow(workdir)
    console = (workdir / "snakemake.log").read_text(errors="replace")
    row = {
        "N": n,
        "images": images,
        "image_size": side,
        "cpu": f"{cpu_name()}, {os.cpu_count()} cores",
        "load_average_after": os.getloadavg(),
        "run_seconds": round(seconds, 1),
        "status": status,
        "failed_rules": re.findall(r"^Error in rule (\S+):", console, re.MULTILINE),
        "jobs": jobs(workdir),
        "feature_bytes": feature_bytes(workdir),
    }
    partial = measured.with_name(".partial-measured.json")
    partial.write_text(json.dumps(row, indent=1))
    os.replace(partial, measured)
    return row


def print_row(row: dict) -> None:
    total = sum(row["images"].values())
    split_text = ", ".join(f"{count:,} {split}" for split, count in row["images"].items())
    print(f"\nN={row['N']:,}: {total:,} images ({split_text}), {row['image_size']} px; {row['cpu']}")
    print("| job | asked MB | peak MB | peak / asked | seconds |")
    print("|---|---:|---:|---:|---:|")
    for job in row["jobs"]:
        peak, mark = job["peak_mb"], ""
        if peak is None and job["sampled_peak_mb"] is not None:
            peak, mark = job["sampled_peak_mb"], "~"
        ratio = f"{peak / job['asked_mb']:.2f}" if peak and job["asked_mb"] else "-"
        print(
            f"| {job['job']} | {_cell(job['asked_mb'])} | {mark}{_cell(peak)} | {ratio} | {_cell(job['seconds'])} |"
        )
    outcome = (
        "completed" if row["status"] == 0 else f"FAILED (exit {row['status']}, rules {row['failed_rules']})"
    )
    print(
        f"whole run: {row['run_seconds']:.1f} s, {outcome}; load average after: "
        f"{' '.join(f'{x:.2f}' for x in row['load_average_after'])}"
    )
    sizes = row["feature_bytes"]
    print(
        f"features on disk: {sizes['together']:,} B = {sizes['together'] / total:,.0f} B per image "
        f"({sizes['together'] / (total * MAP_BYTES):.2f}x one float32 7x7x1280 map, {MAP_BYTES:,} B); "
        f"features/ {sizes['features']:,} B, .cache/ {sizes['.cache']:,} B"
    )


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--images",
        type=int,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        help="dataset sizes, all splits together (default: %(default)s)",
    )
    parser.add_argument(
        "--image-size", type=int, default=32, help="side of the generated images and of image_size"
    )
    parser.add_argument(
        "--workdir", help="keep the trees here and reuse what was measured (default: a temporary folder)"
    )
    parser.add_argument(
        "--again", action="store_true", help="measure sizes again that --workdir holds measured"
    )
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    args = parser.parse_args()
    # Stopped by Ctrl-C or kill alike, also where SIGINT came ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="tlflow-data-path-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"working in {root}; CPU: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    try:
        for n in args.images:
            rows.append(measure(root / f"{n}-images-{args.image_size}px", n, args.image_size, args.again))
            print_row(rows[-1])
    except KeyboardInterrupt:
        again = f"; the same command measures the rest, keeping {root}" if args.workdir else ""
        sys.exit(f"\ninterrupted{again}")
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        if not args.workdir:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
