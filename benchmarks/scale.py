"""Benchmark: Snakemake's bookkeeping against the number of images (issue 12).

For each size N, generates N distinct 8x8 PNG images (two classes, 80/10/10
splits) and a trivial backbone (a saved .keras model that averages the pixels),
so that the model costs next to nothing and the bookkeeping shows. Then:

- a full run (sizes up to --full-max): wall time and console-log bytes;
- `snakemake -n` and a run with nothing to do: wall time each, and how many image
  files the no-op run opened (tests/audit records every file a process opens);
- the bytes of `.snakemake/metadata`.

Above --full-max there is no full run: the workflow is run up to its manifests
(which lists and hashes every image), and "no-op" is a rerun of those targets, so
it does all the per-image work of a no-op run (walking data_dir, checking the
hash cache, building the listings) with a smaller DAG of constant size; `-n` is
of the whole workflow.

    .venv/bin/python benchmarks/scale.py [--sizes 10000 100000 1000000] [--full-max 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]
SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1}
SIDE = 8


def png(index: int, label: int) -> bytes:
    """An 8x8 RGB PNG: the class's grey level, its first pixel unique to ``index``."""
    level = 60 + 120 * label
    pixels = bytearray([level] * (SIDE * SIDE * 3))
    pixels[0:3] = index.to_bytes(3, "big")
    rows = b"".join(b"\0" + pixels[y * SIDE * 3 : (y + 1) * SIDE * 3] for y in range(SIDE))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", SIDE, SIDE, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 1))
        + chunk(b"IEND", b"")
    )


def make_images(data: Path, n: int) -> None:
    index = 0
    for split, share in SPLITS.items():
        for label, cls in enumerate(("dark", "light")):
            folder = data / split / cls
            folder.mkdir(parents=True)
            for _ in range(int(n * share) // 2):
                (folder / f"{index:07d}.png").write_bytes(png(index, label))
                index += 1


def make_backbone(path: Path) -> None:
    import keras

    inputs = keras.Input((16, 16, 3))
    keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs)).save(path)


def write_config(workdir: Path) -> None:
    config = {
        "data_dir": "data",
        "image_size": [16, 16],
        "backbones": [{"name": "../mean.keras", "preprocessing": "none", "id": "mean"}],
        "extraction": {"batch_size": 1024, "threads": 2},
        "head": {"epochs": 1, "batch_size": 1024, "hidden_units": [8], "threads": 2},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def snakemake(workdir: Path, *args: str, audit: Path | None = None) -> tuple[float, int]:
    """Run Snakemake in ``workdir``; return (wall seconds, console bytes)."""
    env = dict(os.environ)
    if audit:
        env.update(PYTHONPATH=str(REPO / "tests/audit"), TLFLOW_AUDIT=str(audit))
    started = time.monotonic()
    result = subprocess.run(
        [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
        cwd=workdir,
        capture_output=True,
        env=env,
    )
    wall = time.monotonic() - started
    if result.returncode:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{result.stderr.decode()[-3000:]}")
    return wall, len(result.stdout) + len(result.stderr)


def images_opened(audit: Path, data: Path) -> int:
    events = (line.split("\t", 2) for line in audit.read_text().splitlines())
    prefix = f"{data}{os.sep}"
    return sum(1 for event, _, path in events if event == "open" and path.startswith(prefix))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(root: Path, n: int, full: bool) -> dict:
    workdir = root / str(n)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    make_images(workdir / "data", n)
    print(f"  N={n}: {n} images written in {time.monotonic() - started:.0f} s", flush=True)
    write_config(workdir)
    row = {"N": n}
    if full:
        row["full s"], row["full log B"] = snakemake(workdir)
        targets = []
    else:  # every image listed and hashed; the model steps left out
        targets = [f"results/manifests/{split}/shard-0.csv" for split in SPLITS]
        row["manifests s"], _ = snakemake(workdir, *targets)
    row["-n s"], _ = snakemake(workdir, "-n")
    audit = workdir / "audit.tsv"
    row["no-op s"], row["no-op log B"] = snakemake(workdir, *targets, audit=audit)
    row["images opened"] = images_opened(audit, workdir / "data")
    row["metadata B"] = folder_bytes(workdir / ".snakemake/metadata")
    print(f"  {row}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--full-max", type=int, default=100_000, help="largest N with a full run")
    parser.add_argument("--workdir", help="folder to work in (default: a temporary one)")
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="tlflow-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"working in {root}; CPU: {cpu_name()}, {os.cpu_count()} cores")
    make_backbone(root / "mean.keras")
    rows = [measure(root, n, n <= args.full_max) for n in args.sizes]
    columns = [
        "N",
        "full s",
        "full log B",
        "manifests s",
        "-n s",
        "no-op s",
        "no-op log B",
        "images opened",
        "metadata B",
    ]
    print("\n" + " | ".join(columns))
    for row in rows:
        print(" | ".join(_cell(row.get(c)) for c in columns))


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
