"""Reading the files the workflow wrote: names stay text, and damage is named.

Every stage reads its inputs through these functions, so that
- a class or file name is never read as a number or as missing (pandas reads
  ``None``, ``NA``, ``nan``, ``#N/A``, ``True`` and ``1e5`` as such by default);
- a file that cannot be read (truncated, overwritten, from another version) stops
  the job with its path and the fix, instead of a library's error naming no file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

# Columns of the workflow's tables that hold names (of files, classes, splits,
# views, backbones), never numbers.
TEXT_COLUMNS = frozenset(
    {
        "file",
        "class",
        "sha256",
        "blake2b",
        "view",
        "error",
        "split",
        "true_class",
        "predicted_class",
        "given_class",
        "likely_class",
        "file_a",
        "file_b",
        "true_labels",
        "predicted_labels",
        "split_a",
        "split_b",
        "kind",
        "backbone",
        "probabilities",
        "true \\ predicted",
    }
)
# What reading a damaged file raises: h5py and numpy raise OSError or ValueError,
# numpy EOFError on an empty .npy, zipfile BadZipFile on a damaged .keras, Keras
# KeyError or TypeError on a file of the wrong kind.
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile)


class DamagedFileError(RuntimeError):
    """A file the workflow wrote cannot be read; the message names it and the fix."""


def damaged(path, error: BaseException) -> DamagedFileError:
    return DamagedFileError(
        f"cannot read {path} ({type(error).__name__}: {error}). It is damaged, incomplete "
        f"or not what the workflow writes there. Delete it (rm '{path}') and rerun "
        "snakemake: the rule that writes it runs again, and so does what follows."
    )


def read_table(path, **options):
    """A CSV table of the workflow as a DataFrame; name columns as text, only empty
    cells missing. ``options`` go to pandas.read_csv (e.g. ``index_col``)."""
    import pandas as pd

    try:
        return pd.read_csv(
            path,
            keep_default_na=False,
            na_values=[""],
            dtype=dict.fromkeys(TEXT_COLUMNS, str),
            **options,
        )
    except READ_ERRORS as error:
        raise damaged(path, error) from None


def load_array(path, mmap: bool = True) -> np.ndarray:
    """A ``.npy`` array, memory-mapped by default (its rows are read when used)."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except READ_ERRORS as error:
        raise damaged(path, error) from None


def load_model(path):
    """A Keras model (``.h5`` head or ``.keras``), uncompiled."""
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except READ_ERRORS as error:
        raise damaged(path, error) from None


def read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except READ_ERRORS as error:
        raise damaged(path, error) from None
