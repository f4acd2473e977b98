"""Class probabilities: how a head's output becomes one column per class.

The contract at every boundary (tables, metrics, calibration, the exports): one
probability per class. A two-class head has one sigmoid unit, the probability of
the second class; ``per_class`` and ``softmax_logits`` are the one place its single
column becomes two (deploy.class_columns does the same inside ``model.keras``).
"""

from __future__ import annotations

import numpy as np


def per_class(out) -> np.ndarray:
    """One column per class: a single sigmoid column p becomes (1 - p, p)."""
    out = np.asarray(out, dtype=np.float64)
    return np.hstack([1 - out, out]) if out.shape[1] == 1 else out


def softmax_logits(z) -> np.ndarray:
    """Logits whose softmax is the head's probabilities: a sigmoid logit z is (0, z)."""
    z = np.asarray(z, dtype=np.float64)
    return np.column_stack([np.zeros(len(z)), z[:, 0]]) if z.shape[1] == 1 else z


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
    return per_class(model.predict(_model_input(features), verbose=0))


def logits(model, features) -> np.ndarray:
    """A head's logits before its temperature (its layer named 'logits')."""
    import keras

    upto = keras.Model(model.inputs, model.get_layer("logits").output)
    return np.asarray(upto.predict(_model_input(features), verbose=0), dtype=np.float64)
