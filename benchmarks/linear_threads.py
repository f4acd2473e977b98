"""The linear head's lbfgs fits on 1 and 2 BLAS threads, side by side in one process.

Fits the default L2 strengths (``head.l2``) on synthetic pooled features
(benchmarks/head_search.py's, two classes) as ``train_head`` does: TensorFlow
loaded and the job's threads set (tlflow.runtime.configure_threads), then
``tlflow.head.fit_linear`` under each BLAS thread count, in alternating order.
With ``--busy``, a child process spins on one core meanwhile, as another job
would. Prints the seconds of each grid and whether the weights are the same bits.

    .venv/bin/python benchmarks/linear_threads.py [--rows 2000] [--repeats 3] [--busy]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np
from head_search import features
from threadpoolctl import threadpool_limits

from extraction import schema_defaults


def spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--features", type=int, default=1280)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="a process spinning on one core meanwhile")
    args = parser.parse_args()
    import keras  # noqa: F401 - as in train_head: TensorFlow's pools beside BLAS's

    from tlflow import blas, head, runtime

    runtime.configure_threads(2)
    x, y = features(args.rows, args.features, 2, 0, 0)
    standard = head.standardise(x, owned=True)
    blas.ONE_THREAD_BYTES = 0  # fit_linear keeps the threads set here
    l2s = schema_defaults("head")["l2"]
    head.fit_linear(standard, y, l2s[-1], 0)  # imports and first allocations
    busy = multiprocessing.Process(target=spin, daemon=True) if args.busy else None
    if busy:
        busy.start()
    seconds, weights = {1: [], 2: []}, {}
    for repeat in range(args.repeats):
        for threads in (1, 2) if repeat % 2 == 0 else (2, 1):
            with threadpool_limits(threads, user_api="blas"):
                started = time.perf_counter()
                weights[threads] = [head.fit_linear(standard, y, l2, 0)[:2] for l2 in l2s]
                seconds[threads].append(time.perf_counter() - started)
    if busy:
        busy.terminate()
    same = all(np.array_equal(a, b) for one, two in zip(weights[1], weights[2]) for a, b in zip(one, two))
    print(f"{args.rows} x {args.features} rows, L2 {l2s}{', one core busy' if busy else ''}:")
    for threads, values in seconds.items():
        print(f"  {threads} BLAS thread(s): {', '.join(f'{s:.2f}' for s in values)} s per grid")
    print(f"  the same weights, bit for bit: {same}")


if __name__ == "__main__":
    main()
