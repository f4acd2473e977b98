"""Process set-up every Keras job shares: the backend's thread pools."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def configure_threads(threads: int) -> None:
    """Give the backend, and the BLAS and OpenMP libraries (scikit-learn's, NumPy's),
    the threads Snakemake granted the job.

    Unlimited, OpenBLAS starts a thread per core of the node: a job granted 2 of 64
    cores would run 64 and slow every job beside it. TensorFlow fixes its thread
    pools when it starts, so call this first; called again once it has started, it
    keeps its pools and logs a warning. PyTorch's pool is set here. JAX sizes its
    CPU pool from the machine when it starts (on a GPU the threads only decode), so
    nothing is set for it.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)  # for the rest of the process
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        except RuntimeError as error:  # already started: its pools cannot change
            log.warning("TensorFlow threads stay as they are (%s)", error)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
