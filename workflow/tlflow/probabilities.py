"""Class probabilities: how a head's output becomes one column per class."""

from __future__ import annotations

import numpy as np


def probability_columns(classes) -> list[str]:
    """Column names of the probabilities in every table the workflow writes."""
    return [f"prob_{cls}" for cls in classes]


def _model_input(features):
    """``features`` as ``predict`` takes them: a dataset of batches (images, or rows read
    as needed) stays one; anything else becomes an array."""
    import keras

    return features if isinstance(features, keras.utils.PyDataset) else np.asarray(features)


def predict_proba(model, features) -> np.ndarray:
    """Class probabilities, one column per class (two columns for a sigmoid head)."""
    out = np.asarray(model.predict(_model_input(features), verbose=0), dtype=np.float64)
    return np.hstack([1 - out, out]) if out.shape[1] == 1 else out


def logits(model, features) -> np.ndarray:
    """A head's logits before its temperature (its layer named 'logits')."""
    import keras

    upto = keras.Model(model.inputs, model.get_layer("logits").output)
    return np.asarray(upto.predict(_model_input(features), verbose=0), dtype=np.float64)
