"""Pooling of a backbone's spatial feature map (height, width, channels) to a vector.

The same three choices exist as numpy functions (for fitting on cached features)
and as Keras layers (inside ``head.h5``), so both give the same vectors.
"""

from __future__ import annotations

import numpy as np

POOLINGS = ("flatten", "avg", "max")


def pool(features, how: str) -> np.ndarray:
    """(n, ...) features -> (n, d) float32 vectors, as the Keras layer of ``how`` does.

    ``avg`` and ``max`` reduce over every axis between the first (images) and the
    last (channels); features that are already vectors stay as they are.
    """
    features = np.asarray(features, dtype=np.float32)
    if how == "flatten" or features.ndim < 3:
        return features.reshape(len(features), -1)
    positions = tuple(range(1, features.ndim - 1))
    if how == "avg":
        return features.mean(axis=positions)
    if how == "max":
        return features.max(axis=positions)
    raise ValueError(f"unknown pooling '{how}'; use one of {', '.join(POOLINGS)}")


def distinct_poolings(feature_shape, wanted) -> list[str]:
    """``wanted`` without choices that give the same vectors as an earlier one.

    A map of one position (or a vector) pools to the same vector every way: fit it once.
    """
    if int(np.prod(feature_shape[:-1] or (1,))) == 1:
        return list(wanted[:1])
    return list(dict.fromkeys(wanted))


def layer(how: str, feature_shape):
    """The Keras layer of ``how`` for inputs of ``feature_shape``."""
    import keras

    layers = {
        ("avg", 2): keras.layers.GlobalAveragePooling1D,
        ("max", 2): keras.layers.GlobalMaxPooling1D,
        ("avg", 3): keras.layers.GlobalAveragePooling2D,
        ("max", 3): keras.layers.GlobalMaxPooling2D,
    }
    if how not in POOLINGS:
        raise ValueError(f"unknown pooling '{how}'; use one of {', '.join(POOLINGS)}")
    chosen = layers.get((how, len(feature_shape)), keras.layers.Flatten)
    return chosen(name="pool")
