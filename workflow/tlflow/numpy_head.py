"""The frozen head (``head.h5``) evaluated with NumPy: no TensorFlow in the job.

A head is standard layers only (tlflow.head.assemble): pooling, Dense (+ Dropout,
a no-op when predicting), the ``logits`` Dense, a Rescaling by 1/temperature and
a sigmoid or softmax. Its layers and weights are read from the file with h5py, so
a job that only runs the head on cached features (the evaluation) starts in a
fraction of a second instead of importing TensorFlow, with the same probabilities
(tests/test_numpy_head.py holds them to Keras's within 1e-6). A head with a layer
or activation not listed here is run by Keras instead (``load``).
"""

from __future__ import annotations

import json

import numpy as np
from scipy.special import erf, expit, softmax

from .probabilities import per_class
from .readers import READ_ERRORS, damaged, load_model

# Hidden activations by Keras name, as Keras 3 defines them.
ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "selu": lambda x: (
        1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0)))
    ),
    "gelu": lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))),
    "silu": lambda x: x * expit(x),
    "swish": lambda x: x * expit(x),
    "sigmoid": expit,
    "tanh": np.tanh,
    "softplus": lambda x: np.logaddexp(0, x),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "exponential": np.exp,
}
# Rows evaluated at a time: bounds the job's memory to one block of rows.
BLOCK_ROWS = 4096


class Unsupported(ValueError):
    """The head holds a layer this module does not compute; Keras runs it instead."""


def _pooling(config: dict, class_name: str):
    """A function of (n, ...) rows for one pooling or reshaping layer."""
    if class_name == "Cropping1D":
        start, end = config["cropping"]
        return lambda x: x[:, start : x.shape[1] - end]
    if class_name == "Flatten":
        return lambda x: x.reshape(len(x), -1)
    for prefix, reduce in (("GlobalAveragePooling", np.mean), ("GlobalMaxPooling", np.max)):
        if class_name.startswith(prefix) and config.get("data_format", "channels_last") == "channels_last":
            return lambda x, reduce=reduce: reduce(x, axis=tuple(range(1, x.ndim - 1)))
    raise Unsupported(f"layer {class_name}")


class NumpyHead:
    """A head read from ``head.h5``: ``logits`` and ``probabilities`` of stored rows."""

    def __init__(self, steps, dense, temperature, output: str):
        # steps: functions up to the logits layer; dense: (kernel, bias, activation) of
        # each Dense, the logits last.
        self.steps, self.dense, self.temperature, self.output = steps, dense, temperature, output

    @classmethod
    def read(cls, path) -> NumpyHead:
        """The head in ``path``; raises Unsupported for what Keras must run, and
        readers.DamagedFileError for a file that cannot be read."""
        import h5py

        try:
            with h5py.File(path, "r") as file:
                layers = json.loads(file.attrs["model_config"])["config"]["layers"]
                weights = {
                    name: [np.asarray(group[w], dtype=np.float64) for w in group.attrs["weight_names"]]
                    for name, group in file["model_weights"].items()
                    if "weight_names" in group.attrs
                }
        except READ_ERRORS as error:
            raise damaged(path, error) from None
        steps, dense, temperature, output = [], [], 1.0, None
        for layer in layers:
            kind, config = layer["class_name"], layer["config"]
            if kind in ("InputLayer", "Dropout"):
                continue
            if output is not None:
                raise Unsupported(f"layer {kind} after the output")
            if kind == "Dense":
                activation = config["activation"]  # a name, or a dict of a custom one
                if not isinstance(activation, str) or activation not in ACTIVATIONS or not config["use_bias"]:
                    raise Unsupported(f"Dense layer {config['name']} ({activation})")
                if config["name"] not in weights:
                    raise damaged(path, KeyError(f"no weights of layer {config['name']}"))
                kernel, bias = weights[config["name"]]
                dense.append((kernel, bias, ACTIVATIONS[activation]))
            elif kind == "Rescaling" and config["name"] == "temperature" and not config["offset"]:
                # One temperature, or one per label (multi-label heads).
                temperature = 1.0 / np.asarray(config["scale"], dtype=np.float64)
            elif kind == "Activation" and config["activation"] in ("sigmoid", "softmax"):
                output = config["activation"]
            elif dense:
                raise Unsupported(f"layer {kind} between Dense layers")
            else:
                steps.append(_pooling(config, kind))
        if output is None or not dense or dense[-1][2] is not ACTIVATIONS["linear"]:
            raise Unsupported("a head without linear logits and a sigmoid or softmax")
        return cls(steps, dense, temperature, output)

    def _logits(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        for step in self.steps:
            x = step(x)
        for kernel, bias, activation in self.dense:
            x = activation(x @ kernel + bias)
        return x

    def logits(self, rows) -> np.ndarray:
        """(n, 1) sigmoid or (n, k) softmax logits, before the temperature, of stored
        ``rows`` (an array or split_rows.Rows), a block at a time."""
        blocks = [self._logits(rows[i : i + BLOCK_ROWS]) for i in range(0, len(rows), BLOCK_ROWS)]
        return np.concatenate(blocks) if blocks else np.empty((0, len(self.dense[-1][1])))

    def probabilities(self, rows) -> np.ndarray:
        """One column per class (two for a sigmoid head), as the head's output."""
        z = self.logits(rows) / self.temperature
        if self.output == "sigmoid":
            return per_class(expit(z))  # one label per unit when several (multi-label)
        return softmax(z, axis=1)


class KerasHead:
    """A head that NumpyHead does not compute, run by Keras with the same methods."""

    def __init__(self, path, threads: int):
        from .runtime import configure_threads

        configure_threads(threads)
        self.model = load_model(path)

    def logits(self, rows) -> np.ndarray:
        from .probabilities import logits
        from .row_batches import RowBatches

        return logits(self.model, RowBatches(rows))

    def probabilities(self, rows) -> np.ndarray:
        from .probabilities import predict_proba
        from .row_batches import RowBatches

        return predict_proba(self.model, RowBatches(rows))


def load(path, threads: int = 1) -> NumpyHead | KerasHead:
    """The head in ``path``, by NumPy where it can, else by Keras; either computes
    on the job's ``threads`` (NumPy's BLAS pool is limited to them)."""
    try:
        head = NumpyHead.read(path)
    except Unsupported:
        return KerasHead(path, threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    return head
