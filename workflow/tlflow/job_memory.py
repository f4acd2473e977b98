"""The memory a job asks for (``mem_mb``), computed from what it will read.

Each job's request is a model of what it holds: a fixed part (Python, the
libraries it imports) plus the arrays it builds from its inputs, whose sizes come
from the headers of the ``.npy`` files it reads. Every job logs its peak beside
its request (tlflow.logs.job); tests/test_job_memory.py runs the jobs' code at two
sizes and checks that the peak stays under the request.

The request is the model's figure with a margin (MARGIN, plus SLACK_MB): a job
asks for what it needs, so a cluster packs its jobs, and never less, so none is
killed for memory.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

# Resident memory before any data, measured (VmHWM) on Linux x86-64:
# TensorFlow, Keras and scikit-learn imported and a small model run, 660 MB;
# NumPy, pandas, scikit-learn and faiss, 190 MB.
KERAS_MB = 900
NUMPY_MB = 400
# Held per image by the tables of evaluation (its file name, labels, probabilities).
PER_IMAGE_BYTES = 2000
# Batches Keras holds at once as it predicts (256 rows each, tlflow.row_batches).
BATCHES = 4
MARGIN = 1.25
SLACK_MB = 200
MB = 1e6


class RowFiles(NamedTuple):
    """What ``.npy`` row files hold: rows, one row's shape, bytes per number."""

    rows: int
    shape: tuple
    itemsize: int

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape) * self.itemsize

    def vector_width(self, poolings, storage: str) -> int:
        """The widest vector the ``poolings`` make of one row (tlflow.pooling)."""
        if storage == "pooled" or "flatten" not in poolings:
            return self.shape[-1] if self.shape else 1
        return math.prod(self.shape)


def row_files(paths) -> RowFiles:
    """Rows, row shape and itemsize of the ``.npy`` files ``paths`` (their headers only)."""
    rows, shape, itemsize = 0, (), 4
    for path in paths:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            file_shape, _, dtype = read_header(handle)
        rows += file_shape[0] if file_shape else 0
        shape, itemsize = tuple(file_shape[1:]), np.dtype(dtype).itemsize
    return RowFiles(rows, shape, itemsize)


def _request(fixed_mb: float, data_bytes: float) -> int:
    return math.ceil(MARGIN * (fixed_mb + data_bytes / MB) + SLACK_MB)


def train_head(train, validation, poolings, storage: str, classes: int) -> int:
    """``train_head`` reading the shard files ``train`` (training views included) and
    ``validation``.

    The linear probe holds the pooled training matrix (float32) and, up to 1 GiB, a
    float64 standardised copy (tlflow.head.standardise); scikit-learn's lbfgs a few
    (rows x classes) float64 arrays; the validation rows and their vectors. The mlp
    reads batches (tlflow.row_batches).
    """
    from .head import FLOAT64_BYTES

    train, validation = row_files(train), row_files(validation)
    width = train.vector_width(poolings, storage)
    pooled = train.rows * width * 4
    standardised = 2 * pooled if 2 * pooled <= FLOAT64_BYTES else 0
    solver = 4 * train.rows * classes * 8
    val = validation.rows * (width * 4 + validation.row_bytes)
    return _request(KERAS_MB, pooled + standardised + solver + val)


def evaluate(files, head) -> int:
    """``evaluate`` reading the shard files ``files`` (its split's and their test-time
    views') with the head in ``head``: it holds per image its table row and each
    view's probabilities and logits, and runs the head on a block of rows at a time:
    by NumPy (tlflow.numpy_head, float64), or by Keras batch by batch (tlflow.row_batches)
    for a head NumPy does not compute."""
    from .numpy_head import BLOCK_ROWS, NumpyHead, Unsupported
    from .readers import DamagedFileError

    split = row_files(files)
    os.stat(head)  # not trained yet: its FileNotFoundError makes Snakemake ask again later
    try:
        NumpyHead.read(head)
    except (Unsupported, DamagedFileError):  # Keras's request; a damaged head fails the job
        return _request(KERAS_MB, split.rows * PER_IMAGE_BYTES + BATCHES * 256 * split.row_bytes)
    # A block as read, its float64 copy and the first layer's float64 output of it.
    block = min(split.rows, BLOCK_ROWS) * (split.row_bytes + 2 * 8 * math.prod(split.shape or (1,)))
    return _request(NUMPY_MB, split.rows * PER_IMAGE_BYTES + block)


def audit(files, probe_rows: int) -> int:
    """``audit`` reading the shard files ``files`` (every split's): every image's
    average-pooled vector (float32, once: scaled to unit length in place for the
    near-duplicate search), its table row, a float64 copy of the at most
    ``probe_rows`` images a probe is fitted on (and scikit-learn's work on them),
    the projection's standardised sample and the index's reduced coordinates
    (tlflow.audit, tlflow.neighbours)."""
    from .audit import PROJECTION_SAMPLE
    from .neighbours import REDUCED

    splits = row_files(files)
    width = splits.shape[-1] if splits.shape else 1
    vectors = splits.rows * width * 4
    probe = min(splits.rows, probe_rows) * width * 8 * 1.5
    projection = min(splits.rows, PROJECTION_SAMPLE) * width * 8 * 2
    per_image = splits.rows * (PER_IMAGE_BYTES + 2 * REDUCED * 4)
    return _request(NUMPY_MB, vectors + probe + projection + per_image)


# Resident bytes per byte of CSV a job reads into pandas (its strings and index),
# and per byte of listing the join reads: it also builds the joined manifest and
# sorts it. Measured at a million images: plot_audit, review_page and
# summarise_run peaked at 2 to 2.5 times their tables, join_split at 5.4 times.
TABLE_BYTES = 3
JOIN_BYTES = 7


def tables(paths, per_byte: float = TABLE_BYTES) -> int:
    """A job that reads the CSV tables ``paths`` whole (figures, pages, the join):
    ``per_byte`` times their size. A table not written yet raises
    FileNotFoundError, so Snakemake asks again when it is."""
    return _request(NUMPY_MB, per_byte * sum(os.stat(path).st_size for path in paths))
