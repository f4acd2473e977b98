"""BLAS threads of a linear fit: one for a small matrix, the job's for a large one.

lbfgs (scikit-learn's LogisticRegression) is a chain of matrix-vector products; on
a matrix up to ONE_THREAD_BYTES a second BLAS thread gains little and, when another
process holds a core, makes the two wait on each other (2,000 x 1,280 rows: up to
25x slower, 20,000: 3x; benchmarks/linear_threads.py). One thread gives the same
bits. The head's linear candidates and the audit's probes fit under it.
"""

from __future__ import annotations

ONE_THREAD_BYTES = 2**28


def fitting(matrix_bytes: int):
    """A context in which a fit on a matrix of ``matrix_bytes`` runs."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1 if matrix_bytes <= ONE_THREAD_BYTES else None, user_api="blas")
