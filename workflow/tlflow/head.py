"""The classifier on cached features: candidates fitted on train, chosen on validation.

Two kinds of head: ``linear`` (a logistic-regression probe, fitted exactly by
scikit-learn) and ``mlp`` (the tutorial's Dense+Dropout head, trained by Keras with
early stopping). Every candidate is scored on the validation split, the best is
calibrated there (temperature scaling), and it is saved as one Keras model,
``head.h5``: pooling -> layers -> logits -> temperature -> probabilities, standard
layers only, so evaluation, deployment and prediction load it as they are.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from . import calibration, pooling, selection, split_rows
from .atomic import atomic_path
from .metadata import Meta
from .probabilities import logits
from .readers import load_array
from .runtime import configure_threads

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
CANDIDATE_COLUMNS = [
    "candidate", "kind", "pooling", "l2", "dropout", "learning_rate", "epochs", "best_epoch",
    "temperature", "val_accuracy", "val_log_loss", "val_log_loss_uncalibrated", "fit_seconds",
    "selected",
]  # fmt: skip
LINEAR_FIT = (
    "scikit-learn LogisticRegression (lbfgs, L2 penalty l2 * n_train / 2 * |w|^2 against "
    "the summed log loss, i.e. C = 1 / (l2 * n_train)) on pooled features standardised "
    "with the training mean and deviation; the standardisation is folded into the "
    "Dense 'logits' layer"
)
MLP_FIT = "Keras fit on the training split; early stopping on validation loss restores the best epoch"


def assemble(feature_shape, n_classes: int, how: str, hidden_units=(), activation="relu",
             dropout: float = 0.0, temperature: float = 1.0):  # fmt: skip
    """pool -> (Dense, Dropout)* -> logits -> logits / T -> sigmoid (2 classes) or softmax."""
    import keras

    layers = [keras.Input(shape=tuple(feature_shape)), pooling.layer(how, feature_shape)]
    for i, units in enumerate(hidden_units):
        layers.append(keras.layers.Dense(units, activation=activation, name=f"hidden_{i}"))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout, name=f"dropout_{i}"))
    binary = n_classes == 2
    layers += [
        keras.layers.Dense(1 if binary else n_classes, name="logits"),
        keras.layers.Rescaling(1.0 / temperature, name="temperature"),
        keras.layers.Activation("sigmoid" if binary else "softmax", name="probabilities"),
    ]
    return keras.Sequential(layers, name="head")


def fit_mlp(train, validation, n_classes: int, candidate: dict, settings: dict):
    """Train one mlp candidate; returns (model, history rows, best epoch)."""
    import keras

    keras.utils.set_random_seed(settings["seed"])
    model = assemble(
        train[0].shape[1:], n_classes, candidate["pooling"], settings["hidden_units"],
        settings["activation"], candidate["dropout"],
    )  # fmt: skip
    optimizer = keras.optimizers.get(
        {"class_name": settings["optimizer"], "config": {"learning_rate": candidate["learning_rate"]}}
    )
    model.compile(
        optimizer=optimizer,
        loss="binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # Many steps per call: the same updates, less Python per step.
        steps_per_execution=64,
    )
    patience = settings["patience"]
    callbacks = (
        [keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True)]
        if patience > 0
        else []
    )
    history = model.fit(
        np.asarray(train[0]), np.asarray(train[1]),
        batch_size=settings["batch_size"], epochs=settings["epochs"],
        validation_data=(np.asarray(validation[0]), np.asarray(validation[1])),
        shuffle=True, callbacks=callbacks, verbose=2,
    )  # fmt: skip
    rows = [
        {"epoch": e + 1, **{k: float(history.history[k][e]) for k in HISTORY_COLUMNS[1:]}}
        for e in range(len(history.history["loss"]))
    ]
    # EarlyStopping keeps the first epoch of the lowest validation loss.
    best = int(np.argmin([r["val_loss"] for r in rows])) + 1 if patience > 0 else len(rows)
    return model, rows, best


def fit_linear(train_x, train_y, l2: float, seed: int):
    """Logistic regression on ``train_x`` (n, d); returns (kernel (d, k), bias (k,)).

    ``kernel`` and ``bias`` act on the raw pooled features: the standardisation the
    fit used is folded into them, so ``x @ kernel + bias`` are the fitted logits.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(train_x, dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-12] = 1.0  # a constant feature carries nothing; avoid 0/0
    model = LogisticRegression(C=1.0 / (l2 * len(x)), max_iter=5000, tol=1e-6, random_state=seed)
    model.fit((x - mean) / scale, train_y)
    kernel = model.coef_.T / scale[:, None]
    bias = model.intercept_ - (mean / scale) @ model.coef_.T
    return kernel, bias


def _scores(logits, labels) -> dict:
    proba = calibration.probabilities(logits)
    return {
        "loss": calibration.log_loss(logits, labels),
        "accuracy": float(np.mean(proba.argmax(axis=1) == np.asarray(labels))),
    }


def select(train, validation, n_classes: int, settings: dict):
    """Fit every candidate and pick one on validation.

    Returns (candidate table rows, winner index, winner's fitted state) where the
    state holds what ``finalise`` needs: the fitted weights, history rows, best
    epoch, validation logits and temperature.
    """
    (train_x, train_y), (val_x, val_y) = train, validation
    poolings = pooling.distinct_poolings(train_x.shape[1:], selection.values(settings, "pooling"))
    candidates = selection.candidates(settings, poolings)
    log.info("%d candidate head(s), chosen by validation %s", len(candidates), settings["criterion"])
    pooled, table, states = {}, [], []
    for number, candidate in enumerate(candidates):
        started = time.perf_counter()
        if candidate["kind"] == "linear":
            if candidate["pooling"] not in pooled:  # pooled once for all its L2 strengths
                pooled[candidate["pooling"]] = tuple(
                    pooling.pool(x, candidate["pooling"]).astype(np.float64) for x in (train_x, val_x)
                )
            train_p, val_p = pooled[candidate["pooling"]]
            kernel, bias = fit_linear(train_p, train_y, candidate["l2"], settings["seed"])
            val_logits = val_p @ kernel + bias
            fit, scores = _scores(train_p @ kernel + bias, train_y), _scores(val_logits, val_y)
            rows = [{"epoch": 1, "loss": fit["loss"], "accuracy": fit["accuracy"],
                     "val_loss": scores["loss"], "val_accuracy": scores["accuracy"]}]  # fmt: skip
            state = {"weights": [kernel.astype(np.float32), bias.astype(np.float32)], "best_epoch": 1}
        else:
            model, rows, best_epoch = fit_mlp(train, validation, n_classes, candidate, settings)
            val_logits = logits(model, val_x)
            scores = _scores(val_logits, val_y)
            state = {"weights": model.get_weights(), "best_epoch": best_epoch}
        # Each candidate is judged as it would be delivered: calibrated, when that is on.
        temperature = calibration.fit_temperature(val_logits, val_y) if settings["calibrate"] else 1.0
        table.append({
            "candidate": number, **candidate, "epochs": len(rows), "best_epoch": state["best_epoch"],
            "temperature": temperature, "val_accuracy": scores["accuracy"],
            "val_log_loss": calibration.log_loss(val_logits, val_y, temperature),
            "val_log_loss_uncalibrated": scores["loss"],
            "fit_seconds": round(time.perf_counter() - started, 3),
        })  # fmt: skip
        states.append({**state, "rows": rows, "val_logits": val_logits, "temperature": temperature})
        log.info("candidate %d %s: validation accuracy %.4f, log loss %.4f (%.1f s)", number,
                 candidate, scores["accuracy"], table[-1]["val_log_loss"], table[-1]["fit_seconds"])  # fmt: skip
    winner = selection.best(table, settings["criterion"])
    for row in table:
        row["selected"] = row["candidate"] == winner
    return table, winner, states[winner]


def finalise(feature_shape, n_classes: int, settings: dict, candidate: dict, state: dict, val_y):
    """The winner as one Keras model with its temperature, and its validation figures."""
    logits, temperature = state["val_logits"], state["temperature"]
    mlp = candidate["kind"] == "mlp"
    model = assemble(
        feature_shape, n_classes, candidate["pooling"],
        settings["hidden_units"] if mlp else (), settings["activation"],
        candidate.get("dropout", 0.0), temperature,
    )  # fmt: skip
    model.set_weights(state["weights"])
    return model, temperature, calibration.scores(logits, val_y, temperature)


def train_and_save(features: dict, settings: dict, meta: dict, threads: int, outputs, views=None) -> None:
    """Fit, select and calibrate on ``features`` = {split: (manifest.csv, shard files,
    labels.npy)} (tlflow.split_rows).

    ``views`` (manifest.csv, shard files, labels.npy) of the training images'
    augmented views are trained on after the originals; validation stays originals only.
    """
    import pandas as pd

    configure_threads(threads)
    started = time.perf_counter()
    train, validation = (
        (split_rows.gather(manifest, shards), load_array(labels, mmap=False))
        for manifest, shards, labels in features.values()
    )
    if views is not None:
        extra = split_rows.gather(views[0], views[1]), load_array(views[2], mmap=False)
        log.info("%d training images and %d augmented views of them", len(train[1]), len(extra[1]))
        train = tuple(np.concatenate(pair) for pair in zip(train, extra))
    n_classes = len(meta["classes"])
    log.info("%d training rows, %d validation rows, %d classes",
             len(train[1]), len(validation[1]), n_classes)  # fmt: skip
    table, winner, state = select(train, validation, n_classes, settings)
    candidate = {k: v for k, v in table[winner].items() if k in selection.GRID_KEYS}
    feature_shape = list(train[0].shape[1:])
    model, temperature, scores = finalise(feature_shape, n_classes, settings, candidate, state, validation[1])
    log.info("selected candidate %d %s, temperature %.4f, validation %s",
             winner, candidate, temperature, scores)  # fmt: skip
    with atomic_path(outputs.model) as tmp:
        model.save(tmp)
    with atomic_path(outputs.history) as tmp:
        pd.DataFrame(state["rows"], columns=HISTORY_COLUMNS).to_csv(tmp, index=False)
    with atomic_path(outputs.candidates) as tmp:
        pd.DataFrame(table, columns=CANDIDATE_COLUMNS).to_csv(tmp, index=False)
    chosen = {
        "settings": settings,
        "selected": {"candidate": winner, **candidate},
        "fit": LINEAR_FIT if candidate["kind"] == "linear" else MLP_FIT,
        "best_epoch": state["best_epoch"],
        "epochs_run": len(state["rows"]),
        "temperature": temperature,
        "validation": scores,
        "candidates": len(table),
    }
    log.info("head stage: %.1f s (candidates, choice, calibration)", time.perf_counter() - started)
    Meta.from_dict({**meta, "feature_shape": feature_shape, "head": chosen}).write(outputs.meta)
