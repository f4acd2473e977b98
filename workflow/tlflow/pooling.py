"""Pooling of a backbone's spatial feature map (height, width, channels) to a vector.

The same three choices exist as numpy functions (for fitting on cached features)
and as Keras layers (inside ``head.h5``), so both give the same vectors.
"""

from __future__ import annotations

import numpy as np

POOLINGS = ("flatten", "avg", "max")


def pool(features, how: str) -> np.ndarray:
    """(n, ...) features -> (n, d) float32 vectors, as the Keras layer of ``how`` does."""
    features = np.asarray(features, dtype=np.float32)
    if how == "flatten" or features.ndim < 4:  # already vectors: nothing to pool
        return features.reshape(len(features), -1)
    if how == "avg":
        return features.mean(axis=(1, 2))
    if how == "max":
        return features.max(axis=(1, 2))
    raise ValueError(f"unknown pooling '{how}'; use one of {', '.join(POOLINGS)}")


def distinct_poolings(feature_shape, wanted) -> list[str]:
    """``wanted`` without choices that give the same vectors as an earlier one.

    A 1x1 map (or a vector) pools to the same vector every way: fit it once.
    """
    spatial = feature_shape[:-1] if len(feature_shape) == 3 else ()
    if int(np.prod(spatial or (1,))) == 1:
        return list(wanted[:1])
    return list(dict.fromkeys(wanted))


def layer(how: str, feature_shape):
    """The Keras layer of ``how`` for inputs of ``feature_shape``."""
    import keras

    if how == "flatten" or len(feature_shape) != 3:
        return keras.layers.Flatten(name="pool")
    if how == "avg":
        return keras.layers.GlobalAveragePooling2D(name="pool")
    if how == "max":
        return keras.layers.GlobalMaxPooling2D(name="pool")
    raise ValueError(f"unknown pooling '{how}'; use one of {', '.join(POOLINGS)}")
