"""Probabilities one can act on: temperature scaling and how to measure calibration.

Temperature scaling (Guo et al., 2017) divides the head's logits by one scalar T
fitted on the validation split; it changes no prediction, only how sure each is.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, log_softmax, softmax

from .probabilities import per_class, softmax_logits

BINS = 15


def probabilities(logits, temperature: float = 1.0) -> np.ndarray:
    """One column per class from (n, 1) sigmoid or (n, k) softmax logits."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return per_class(expit(z)) if z.shape[1] == 1 else softmax(z, axis=1)


def log_loss(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood, computed from logits so it never takes log(0)."""
    z = softmax_logits(np.asarray(logits, dtype=np.float64) / temperature)
    labels = np.asarray(labels)
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(len(z)), labels]))


def fit_temperature(logits, labels) -> float:
    """The T > 0 that minimises the log loss of ``logits / T`` on ``labels``."""
    result = minimize_scalar(
        lambda log_t: log_loss(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(0.01), np.log(100.0)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def fit_temperature_under_noise(logits, labels) -> tuple[float, float]:
    """(T, noise): the temperature of ``logits`` for the *true* classes, fitted on
    labels of which a share ``noise`` is wrong at random.

    Fitted on the given labels alone, T absorbs their errors: the more labels are
    wrong, the less sure every probability gets. Here the given label is modelled as
    the true class with probability 1 - noise, else another class uniformly at random
    (the noise adaptation of Goldberger and Ben-Reuven, 2017, with one rate), and T
    and the rate maximise the given labels' likelihood together: confident mistakes
    are then explained by the rate, not by softening every probability.
    """
    z = softmax_logits(logits)
    labels = np.asarray(labels)
    others = z.shape[1] - 1

    def loss(params):
        temperature, noise = np.exp(params[0]), expit(params[1])
        true = softmax(z / temperature, axis=1)[np.arange(len(z)), labels]
        given = (1 - noise) * true + noise * (1 - true) / others
        return -np.mean(np.log(np.clip(given, 1e-300, None)))

    start = [np.log(fit_temperature(z, labels)), -4.0]  # noise about 2%
    result = minimize(loss, start, method="L-BFGS-B", bounds=[(np.log(0.01), np.log(100.0)), (-12.0, 0.0)])
    return float(np.exp(result.x[0])), float(expit(result.x[1]))


def reliability(proba, labels, bins: int = BINS) -> list[dict]:
    """Per confidence bin (top class, equal width): images, mean confidence, accuracy."""
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (lower, upper]; the first also takes a confidence of exactly 0.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        rows.append(
            {
                "bin_lower": float(edges[b]),
                "bin_upper": float(edges[b + 1]),
                "images": count,
                "mean_confidence": float(confidence[members].mean()) if count else float("nan"),
                "accuracy": float(correct[members].mean()) if count else float("nan"),
            }
        )
    return rows


def expected_calibration_error(proba, labels, bins: int = BINS) -> float:
    """ECE: the image-weighted mean gap between confidence and accuracy over the bins."""
    rows = reliability(proba, labels, bins)
    total = sum(row["images"] for row in rows)
    return float(
        sum(row["images"] * abs(row["accuracy"] - row["mean_confidence"]) for row in rows if row["images"])
        / total
    )


def scores(logits, labels, temperature: float) -> dict:
    """Accuracy, and log loss and ECE before and after ``temperature``, of one split's logits."""
    before, after = probabilities(logits), probabilities(logits, temperature)
    return {
        "accuracy": float(np.mean(after.argmax(axis=1) == np.asarray(labels))),
        "log_loss_before_calibration": log_loss(logits, labels),
        "log_loss": log_loss(logits, labels, temperature),
        "ece_before_calibration": expected_calibration_error(before, labels),
        "ece": expected_calibration_error(after, labels),
    }
