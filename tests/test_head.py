"""The head: tutorial defaults, binary vs multi-class, repeatable with a seed."""

import numpy as np
import yaml

from tlflow.head import build, train
from tlflow.probabilities import predict_proba

SCHEMA = yaml.safe_load(open("workflow/schemas/config.schema.yaml"))
DEFAULTS = {k: v["default"] for k, v in SCHEMA["properties"]["head"]["properties"].items()}


def _data(n_classes, rows=37, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % n_classes
    features = rng.normal(size=(rows, 2, 2, 8)).astype(np.float32) + labels[:, None, None, None]
    return features, labels


def test_defaults_are_the_tutorials_head():
    model = build((4, 4, 512), 2, DEFAULTS)
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == ["Flatten", "Dense", "Dropout", "Dense"]
    assert model.layers[1].units == 256 and model.layers[2].rate == 0.5
    assert model.layers[-1].units == 1 and model.layers[-1].activation.__name__ == "sigmoid"
    assert model.optimizer.__class__.__name__ == "RMSprop"
    assert (DEFAULTS["epochs"], DEFAULTS["batch_size"]) == (20, 32)


def test_more_than_two_classes_get_softmax_and_probabilities_per_class():
    x, y = _data(3)
    model, rows = train(x, y, x, y, 3, {**DEFAULTS, "epochs": 2, "hidden_units": [8]})
    assert model.layers[-1].units == 3 and len(rows) == 2
    probabilities = predict_proba(model, x)
    assert probabilities.shape == (len(x), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def test_binary_probabilities_have_two_columns():
    x, y = _data(2)
    model, _ = train(x, y, x, y, 2, {**DEFAULTS, "epochs": 1, "hidden_units": [8]})
    probabilities = predict_proba(model, x)
    assert probabilities.shape == (len(x), 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1)


def test_same_seed_same_history_other_seed_other_history():
    x, y = _data(2)
    settings = {**DEFAULTS, "epochs": 3, "hidden_units": [8], "batch_size": 5}
    first = train(x, y, x, y, 2, settings)[1]
    again = train(x, y, x, y, 2, settings)[1]
    other = train(x, y, x, y, 2, {**settings, "seed": 7})[1]
    assert first == again
    assert first != other
