"""Pooling of a backbone's spatial feature map (height, width, channels) to a vector.

What is stored per image (the spec's ``features``, see ``storage``):

- ``pooled``: a (2, channels) float32 row, its average (row 0) and its maximum
  (row 1) over the positions, computed as the features are extracted
  (``summarise``): 2 x 512 numbers for VGG16's 4x4x512 map, all the default heads read;
- ``map``: the whole map, which ``flatten`` needs.

The same choices exist as numpy (``pool``, for fitting on stored rows) and as
Keras layers (``layers``, inside ``head.h5``), so both give the same vectors; and
``summary`` puts in front of a head what extraction computed, for the
deployed and fine-tuned models.
"""

from __future__ import annotations

import numpy as np

POOLINGS = ("flatten", "avg", "max")
STORAGES = ("pooled", "map")
# The row of a pooled (2, channels) feature that holds each pooling.
POOLED_ROWS = {"avg": 0, "max": 1}


def storage(poolings, setting: str = "auto") -> str:
    """What to store for heads that read ``poolings``: the map when one of them
    needs it (``flatten``) or ``setting`` (``extraction.features``) is ``map``."""
    return "map" if setting == "map" or "flatten" in poolings else "pooled"


def stored(spec: dict) -> str:
    """What the features of backbone ``spec`` store; a spec without the key (heads of
    versions before pooled storage) stored maps."""
    return spec.get("features", "map")


def summarise(maps) -> np.ndarray:
    """(n, ..., channels) backbone outputs -> (n, 2, channels) float32: the average and
    the maximum over every position. Vectors (n, channels) are their own of both."""
    maps = np.asarray(maps, dtype=np.float32)
    positions = tuple(range(1, maps.ndim - 1))
    return np.stack([maps.mean(axis=positions), maps.max(axis=positions)], axis=1)


def _unknown(how: str) -> ValueError:
    return ValueError(f"unknown pooling '{how}'; use one of {', '.join(POOLINGS)}")


def _no_map(how: str) -> ValueError:
    return ValueError(
        f"pooling '{how}' needs the whole feature map, but the features were stored "
        "pooled; the workflow stores maps when a head's pooling is 'flatten' or "
        "'extraction: features: map' is set"
    )


def pool(rows, how: str, storage: str) -> np.ndarray:
    """(n, ...) stored rows -> (n, d) float32 vectors, as the Keras ``layers`` of ``how`` do.

    ``pooled`` rows hold the vectors already; of a ``map``, ``avg`` and ``max``
    reduce over every axis between the first (images) and the last (channels), and
    maps that are already vectors stay as they are.
    """
    if how not in POOLINGS:
        raise _unknown(how)
    rows = np.asarray(rows)
    if storage == "pooled":
        if how not in POOLED_ROWS:
            raise _no_map(how)
        return np.ascontiguousarray(rows[:, POOLED_ROWS[how]], dtype=np.float32)
    rows = rows.astype(np.float32, copy=False)
    if how == "flatten" or rows.ndim < 3:
        return rows.reshape(len(rows), -1)
    positions = tuple(range(1, rows.ndim - 1))
    return rows.mean(axis=positions) if how == "avg" else rows.max(axis=positions)


def distinct_poolings(rows, wanted, storage: str, block: int = 4096) -> list[str]:
    """``wanted`` without choices that give the same vectors as an earlier one, for
    the stored ``rows``.

    A map of one position (or a vector) pools to the same vector every way: fit it
    once. Pooled rows do not show the map's size, so there it is read from the
    rows: their average equals their maximum everywhere (checked block by block,
    stopping at the first difference, so a real map costs one block).
    """
    if storage == "pooled":
        same = all(
            np.array_equal(rows[i : i + block, 0], rows[i : i + block, 1]) for i in range(0, len(rows), block)
        )
    else:
        same = int(np.prod(rows.shape[1:-1] or (1,))) == 1
    return list(wanted[:1]) if same else list(dict.fromkeys(wanted))


def _reducers(how: str, rank: int):
    import keras

    return {
        ("avg", 2): keras.layers.GlobalAveragePooling1D,
        ("max", 2): keras.layers.GlobalMaxPooling1D,
        ("avg", 3): keras.layers.GlobalAveragePooling2D,
        ("max", 3): keras.layers.GlobalMaxPooling2D,
        ("avg", 4): keras.layers.GlobalAveragePooling3D,
        ("max", 4): keras.layers.GlobalMaxPooling3D,
    }.get((how, rank))


def layers(how: str, feature_shape, storage: str) -> list:
    """The Keras layers that turn a stored row of ``feature_shape`` into the vector of ``how``."""
    import keras

    if how not in POOLINGS:
        raise _unknown(how)
    if storage == "pooled":
        if how not in POOLED_ROWS:
            raise _no_map(how)
        keep = (0, 1) if how == "avg" else (1, 0)  # rows cropped from (start, end)
        return [keras.layers.Cropping1D(keep, name="pool"), keras.layers.Flatten(name="pooled")]
    chosen = _reducers(how, len(feature_shape)) or keras.layers.Flatten
    return [chosen(name="pool")]


def summary(feature_shape):
    """A function from backbone output tensors of per-image ``feature_shape`` to
    (None, 2, channels), as ``summarise`` computes: average and maximum over the
    positions, from standard layers. Its layers are made once, so every branch it
    is applied to (test-time views) shares them."""
    import keras

    channels, rank = feature_shape[-1], len(feature_shape)
    reducers = [
        (reducer(name=f"summary_{how}") if (reducer := _reducers(how, rank)) else None) for how in POOLED_ROWS
    ]
    rows = [keras.layers.Reshape((1, channels), name=f"summary_{how}_row") for how in POOLED_ROWS]
    stack = keras.layers.Concatenate(axis=1, name="summary")

    def apply(x):
        return stack([row(reduce(x) if reduce else x) for reduce, row in zip(reducers, rows)])

    return apply
