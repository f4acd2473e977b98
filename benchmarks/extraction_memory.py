"""Benchmark: peak memory of one extraction job against the number of images.

Runs ``extract_shard`` (VGG16 at 150x150, random weights, float32, batch 32,
2 threads) on N images, cycling through the photos of a folder, in a fresh
process, and prints the process's peak resident memory (VmHWM). Run it for
several N: a flat peak means rows are streamed to disk, not held.

    .venv/bin/python benchmarks/extraction_memory.py 100 400 1600 \
        [--images ../shared/data/catsdogs-dev]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(count: int, folder: Path, work: Path) -> None:
    from tlflow.backbones import resolve
    from tlflow.features import extract_shard
    from tlflow.manifest import manifest_text

    photos = sorted(folder.rglob("*.jpg"))
    # Distinct hashes, so the cache reuses nothing: every row is computed.
    rows = [
        {"file": str(photos[i % len(photos)].resolve()), "class": "x", "label": 0, "sha256": f"{i:064d}"}
        for i in range(count)
    ]
    (work / "manifest.csv").write_text(manifest_text(rows))
    spec = resolve({"name": "vgg16", "weights": "none"}, [150, 150], "float32")
    outputs = [work / name for name in ("f.npy", "f.csv", "s.csv")]
    extract_shard(work / "manifest.csv", "/", spec, *outputs, work / "cache", 32, 2)
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(f"{count:6d} images: peak RSS {int(peak.split()[1]) // 1024} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", type=int, nargs="+")
    parser.add_argument("--images", default=str(REPO.parent / "shared/data/catsdogs-dev"))
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_run(args.counts[0], Path(args.images), Path(tempfile.mkdtemp()))
        return
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    for count in args.counts:  # a fresh process each: VmHWM never goes down
        subprocess.run(
            [sys.executable, __file__, str(count), "--images", args.images, "--one"],
            check=True,
            stderr=subprocess.DEVNULL,
        )


if __name__ == "__main__":
    main()
