"""Benchmark: the audit's near-duplicate search, exact against approximate.

Generates pooled-feature-like vectors (non-negative, Gaussian clusters around a
shared mean, so unrelated images have cosine similarities near 0.57 and up to about
0.85, as a real backbone's do) with 1% of the images planted as near copies of
others (cosine similarity drawn uniformly from just above the cut-off to 0.999).
Then runs tlflow.neighbours.similar_pairs with each search in a fresh process on
the same vectors and prints, side by side: seconds, peak memory (the process's
VmHWM, the vectors' own copy included), pairs found, the recall of the exact
search's pairs at or above the cut-off, and of the planted copies.

    .venv/bin/python benchmarks/near_duplicates.py [--images 20000 100000]
        [--million] [--exact-up-to 100000] [--dims 1280] [--threads 2]

--million adds 1,000,000 images (5 GB of vectors; the exact search is skipped above
--exact-up-to, where it takes hours: recall is then that of the planted copies,
which at smaller sizes are exactly the exact search's pairs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from heads import cpu_name

CUTOFF = 0.9
NEIGHBOURS = 5  # the schema's defaults
CLUSTERS = 100
COPIES = 0.01
BLOCK = 10_000


def generate(path: Path, n: int, dims: int, seed: int = 0) -> set[tuple[int, int]]:
    """Write n vectors to ``path`` (.npy, block by block); returns the planted pairs (i < j)."""
    rng = np.random.default_rng(seed)
    mean = np.abs(rng.normal(0, 1, dims)).astype(np.float32)
    centres = mean + rng.normal(0, 0.8, (CLUSTERS, dims)).astype(np.float32)
    vectors = np.lib.format.open_memmap(path, "w+", np.float32, (n, dims))
    for a in range(0, n, BLOCK):
        rows = min(n, a + BLOCK) - a
        block = centres[rng.integers(0, CLUSTERS, rows)] + rng.normal(0, 1, (rows, dims)).astype(np.float32)
        vectors[a : a + rows] = np.maximum(block, 0)
    copies = int(n * COPIES)
    order = rng.permutation(n)
    originals, targets = np.sort(order[:copies]), order[copies : 2 * copies]
    source = vectors[originals]
    # A copy: the original turned by the planted angle towards a random orthogonal direction.
    side = rng.normal(0, 1, source.shape).astype(np.float32)
    side -= np.sum(side * source, 1, keepdims=True) / np.sum(source**2, 1, keepdims=True) * source
    side *= np.linalg.norm(source, axis=1, keepdims=True) / np.linalg.norm(side, axis=1, keepdims=True)
    angle = np.arccos(rng.uniform(CUTOFF + 0.005, 0.999, copies)).astype(np.float32)[:, None]
    vectors[targets] = np.cos(angle) * source + np.sin(angle) * side
    vectors.flush()
    return set(zip(np.minimum(originals, targets).tolist(), np.maximum(originals, targets).tolist()))


def child(search: str, features: str, out: str, threads: int) -> None:
    """One search in this process: its pairs to ``out``, seconds and peak memory printed."""
    from tlflow import neighbours

    vectors = np.load(features, mmap_mode="r")
    start = time.perf_counter()
    i, j, _ = neighbours.similar_pairs(vectors, CUTOFF, NEIGHBOURS, search, seed=0, threads=threads)
    seconds = time.perf_counter() - start
    np.save(out, np.stack([i, j]))
    status = Path("/proc/self/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024}))


def run(search: str, features: Path, threads: int) -> tuple[dict, set]:
    out = features.with_name(f"{search}.npy")
    command = [
        sys.executable,
        __file__,
        "--child",
        search,
        str(features),
        str(out),
        "--threads",
        str(threads),
    ]
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    i, j = np.load(out)
    return result, set(zip(i.tolist(), j.tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, nargs="*", default=[20_000, 100_000])
    parser.add_argument("--million", action="store_true", help="add 1,000,000 images")
    parser.add_argument("--exact-up-to", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=1280)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("SEARCH", "FEATURES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.threads)
    sizes = args.images + [1_000_000] * args.million
    print(
        f"CPU: {cpu_name()}; {args.dims} dimensions, {args.threads} threads, cut-off {CUTOFF}, {NEIGHBOURS} per image"
    )
    print(
        "| images | search | seconds | peak memory | pairs | recall of exact pairs | recall of planted copies |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            features = Path(tmp) / "features.npy"
            planted = generate(features, n, args.dims)
            searches = ("exact", "approximate") if n <= args.exact_up_to else ("approximate",)
            found = {}
            for search in searches:
                result, found[search] = run(search, features, args.threads)
                exact = found.get("exact")
                recall = f"{len(found[search] & exact) / len(exact):.2%}" if exact else "(not run)"
                print(
                    f"| {n:,} | {search} | {result['seconds']:.1f} | {result['peak_mb']:,.0f} MB | "
                    f"{len(found[search]):,} | {recall} | {len(found[search] & planted) / len(planted):.2%} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
