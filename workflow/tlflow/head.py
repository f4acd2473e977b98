"""The classifier on cached features: candidates fitted on train, chosen on validation.

Two kinds of head: ``linear`` (a logistic-regression probe, fitted exactly by
scikit-learn) and ``mlp`` (the tutorial's Dense+Dropout head, trained by Keras with
early stopping). Every candidate is scored on the validation split, the best is
calibrated there (temperature scaling), and it is saved as one Keras model,
``head.h5``: pooling -> layers -> logits -> temperature -> probabilities, standard
layers only, so evaluation, deployment and prediction load it as they are. It reads
the stored rows (tlflow.pooling): of pooled storage, its pooling picks the average
or the maximum.
A large training split is searched on a stratified subsample of its rows
(``search_rows``); the winner is then fitted on every row. Class weights
(tlflow.imbalance) weigh the training loss of both kinds; validation, which
chooses and calibrates, is never weighted.
Multi-label data (labels a 0/1 matrix, tlflow.multilabel) gets one sigmoid per
label: one logistic regression per label (one-vs-rest) or an mlp trained with
binary cross-entropy, a temperature and a decision threshold per label, chosen by
mean average precision; its classes are not weighted (the thresholds serve a rare
label).
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np

from . import blas, calibration, imbalance, multilabel, pooling, selection, split_rows
from .atomic import atomic_path
from .history import epoch_row
from .history import write as write_history
from .metadata import Meta
from .probabilities import logits
from .readers import load_array
from .runtime import configure_threads

log = logging.getLogger(__name__)

CANDIDATE_COLUMNS = [
    "candidate",
    "kind",
    "pooling",
    "l2",
    "dropout",
    "learning_rate",
    "class_weight",
    "train_rows",
    "epochs",
    "best_epoch",
    "temperature",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_macro_f1",
    "val_log_loss",
    "val_log_loss_uncalibrated",
    "fit_seconds",
    "selected",
]
MULTI_LABEL_CANDIDATE_COLUMNS = [
    "candidate",
    "kind",
    "pooling",
    "l2",
    "dropout",
    "learning_rate",
    "train_rows",
    "epochs",
    "best_epoch",
    "val_mean_average_precision",
    "val_macro_f1",
    "val_micro_f1",
    "val_log_loss",
    "val_log_loss_uncalibrated",
    "fit_seconds",
    "selected",
]
LINEAR_FIT = (
    "scikit-learn LogisticRegression (lbfgs, L2 penalty l2 * n_train / 2 * |w|^2 against "
    "the summed log loss, i.e. C = 1 / (l2 * n_train)) on pooled features standardised "
    "with the training mean and deviation (float64, or float32 above 1 GiB); the "
    "standardisation is folded into the Dense 'logits' layer"
)
MLP_FIT = (
    "Keras fit on the training split; early stopping on validation loss (falls under "
    "min_delta do not count) restores the best epoch"
)


def assemble(
    feature_shape,
    n_classes: int,
    how: str,
    hidden_units=(),
    activation="relu",
    dropout: float = 0.0,
    temperature=1.0,
    *,
    storage: str,
    multi_label: bool = False,
):
    """pool -> (Dense, Dropout)* -> logits -> logits / T -> sigmoid (2 classes) or softmax.

    ``feature_shape`` is a stored row's, of ``storage`` (pooling.STORAGES). With
    ``multi_label``: one logit and sigmoid per label, ``temperature`` one per label.
    """
    import keras

    layers = [keras.Input(shape=tuple(feature_shape)), *pooling.layers(how, feature_shape, storage)]
    for i, units in enumerate(hidden_units):
        layers.append(keras.layers.Dense(units, activation=activation, name=f"hidden_{i}"))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout, name=f"dropout_{i}"))
    binary = n_classes == 2 and not multi_label
    scale = [1.0 / t for t in temperature] if multi_label else 1.0 / temperature
    layers += [
        keras.layers.Dense(1 if binary else n_classes, name="logits"),
        keras.layers.Rescaling(scale, name="temperature"),
        keras.layers.Activation("sigmoid" if binary or multi_label else "softmax", name="probabilities"),
    ]
    return keras.Sequential(layers, name="head")


def fit_mlp(
    train,
    validation,
    n_classes: int,
    candidate: dict,
    settings: dict,
    storage: str,
    class_weight: dict | None = None,
):
    """Train one mlp candidate on rows of ``storage``, its training loss weighted by
    ``class_weight`` ({class index: weight}, None for none); returns (model, history
    rows, best epoch)."""
    import keras

    keras.utils.set_random_seed(settings["seed"])
    multi_label = np.ndim(train[1]) == 2
    model = assemble(
        train[0].shape[1:],
        n_classes,
        candidate["pooling"],
        settings["hidden_units"],
        settings["activation"],
        candidate["dropout"],
        [1.0] * n_classes if multi_label else 1.0,
        storage=storage,
        multi_label=multi_label,
    )
    optimizer = keras.optimizers.get(
        {"class_name": settings["optimizer"], "config": {"learning_rate": candidate["learning_rate"]}}
    )
    model.compile(
        optimizer=optimizer,
        loss="binary_crossentropy" if n_classes == 2 or multi_label else "sparse_categorical_crossentropy",
        # Per label, as the linear head's history: Keras would take multi-label "accuracy" as categorical.
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")] if multi_label else ["accuracy"],
        # Many steps per call: the same updates, less Python per step.
        steps_per_execution=64,
    )
    stopping = (
        keras.callbacks.EarlyStopping(
            "val_loss",
            min_delta=settings["min_delta"],
            patience=settings["patience"],
            restore_best_weights=True,
        )
        if settings["patience"] > 0
        else None
    )
    from .row_batches import RowBatches

    # Batches read from the stored rows as they are needed: no copy of the split.
    batch_size = settings["batch_size"]
    history = model.fit(
        RowBatches(*train, batch_size=batch_size, seed=settings["seed"], shuffle=True),
        epochs=settings["epochs"],
        validation_data=RowBatches(*validation, batch_size=batch_size),
        callbacks=[stopping] if stopping else [],
        class_weight=class_weight,
        verbose=2,
    )
    logs = history.history
    rows = [epoch_row(e, {k: values[e] for k, values in logs.items()}) for e in range(len(logs["loss"]))]
    # The epoch whose weights early stopping restored (min_delta decides which counts).
    return model, rows, stopping.best_epoch + 1 if stopping else len(rows)


# Rows per block when the moments are taken: a float64 block of 2**22 numbers is 32 MB.
BLOCK_VALUES = 2**22
# Standardised features up to this size are fitted in float64, as exactly as lbfgs's
# tolerance asks. Larger ones stay float32: scikit-learn then fits in float32 without
# a copy, and lbfgs stops where float32 resolves the loss (about 1e-7), which moved
# probabilities by up to 3e-4 in tests/test_head.py's small case, 1e-4 on 20,000
# rows x 1,280 features and 2e-3 on 100,000 (l2 0.001).
FLOAT64_BYTES = 2**30


class Standardised(NamedTuple):
    """Pooled features as the linear fit sees them: ``z = (x - mean) / scale``."""

    z: np.ndarray  # (n, d) float64, or float32 when large
    mean: np.ndarray  # (d,) float64
    scale: np.ndarray  # (d,) float64

    def fold(self, coef, intercept):
        """Weights on ``z`` (k, d), (k,) -> (kernel (d, k), bias (k,)) on the raw features."""
        kernel = np.asarray(coef, dtype=np.float64).T / self.scale[:, None]
        return kernel, np.asarray(intercept, dtype=np.float64) - self.mean @ kernel


def standardise(x, owned: bool) -> Standardised:
    """``x`` (n, d) float32 standardised with its own mean and deviation.

    Into a float64 copy when that is at most FLOAT64_BYTES; else float32, in place
    when ``owned`` (``x`` is an array of the caller's, e.g. freshly pooled) and into
    one float32 copy otherwise, so a large matrix is never held twice. The moments
    are summed in float64, block by block.
    """
    n = len(x)
    block = max(1, BLOCK_VALUES // max(1, x.shape[1]))
    blocks = [slice(start, start + block) for start in range(0, n, block)]
    mean = sum(np.sum(x[b], axis=0, dtype=np.float64) for b in blocks) / n
    scale = np.sqrt(sum(np.sum(np.square(x[b] - mean), axis=0) for b in blocks) / n)
    scale[scale < 1e-12] = 1.0  # a constant feature carries nothing; avoid 0/0
    if x.size * 8 <= FLOAT64_BYTES:
        z = np.empty(x.shape, dtype=np.float64)
    else:
        z = x if owned else np.empty(x.shape, dtype=np.float32)
    for b in blocks:
        z[b] = (x[b] - mean) / scale
    return Standardised(z, mean, scale)


def fit_linear(train: Standardised, train_y, l2: float, seed: int, class_weight: dict | None = None):
    """Logistic regression on standardised features, each row's loss weighted by its
    class's ``class_weight`` (None: all 1); returns (kernel (d, k), bias (k,),
    training logits (n, k)). With (n, k) 0/1 ``train_y``, one regression per label.

    ``kernel`` and ``bias`` act on the raw pooled features: the standardisation the
    fit used is folded into them, so ``x @ kernel + bias`` are the fitted logits.
    scikit-learn fits ``train.z`` in its own dtype (no copy).
    """
    from sklearn.linear_model import LogisticRegression

    def fitted(y):
        model = LogisticRegression(
            C=1.0 / (l2 * len(train.z)), max_iter=5000, tol=1e-6, random_state=seed, class_weight=class_weight
        )
        return model.fit(train.z, y)

    with blas.fitting(train.z.nbytes):
        models = [fitted(y) for y in np.asarray(train_y).T] if np.ndim(train_y) == 2 else [fitted(train_y)]
        train_logits = np.column_stack([model.decision_function(train.z) for model in models])
    coef, intercept = (
        np.concatenate([getattr(model, name) for model in models]) for name in ("coef_", "intercept_")
    )
    kernel, bias = train.fold(coef, intercept)
    return kernel, bias, train_logits


def linear_logits(x, weights) -> np.ndarray:
    """Logits of the float32 (kernel, bias) ``weights`` on pooled ``x``, as the saved head."""
    kernel, bias = weights
    return (np.asarray(x, dtype=np.float32) @ kernel + bias).astype(np.float64)


def _scores(logits, labels, n_classes: int) -> dict:
    if np.ndim(labels) == 2:  # per label at 0.5, as Keras's binary accuracy
        return {
            "loss": multilabel.log_loss(logits, labels),
            "accuracy": float(np.mean((logits >= 0) == labels)),
        }
    predicted = calibration.probabilities(logits).argmax(axis=1)
    return {
        "loss": calibration.log_loss(logits, labels),
        "accuracy": float(np.mean(predicted == np.asarray(labels))),
        **imbalance.class_scores(labels, predicted, n_classes),
    }


def select(train, validation, n_classes: int, settings: dict, storage: str):
    """Fit every candidate on rows of ``storage`` and pick one on validation.

    With more training rows than ``settings["search_rows"]``, the candidates are
    fitted on a stratified subsample of them and the winner is fitted again on every
    row (its own row in the table, the one selected), then calibrated.

    The class weights (tlflow.imbalance) come from every training row's label.

    Returns (candidate table rows, winner's row index, winner's fitted state) where
    the state holds what ``finalise`` needs: the fitted weights, history rows, best
    epoch, validation logits and temperature (and thresholds, multi-label).
    Multi-label data: no class weights, the subsample is stratified by label
    combination and ``criterion`` is multilabel.criterion's.
    """
    multi_label = np.ndim(train[1]) == 2
    if multi_label:
        weighting = {"setting": settings["class_weight"], "applied": "none", "weights": None}
        criterion = multilabel.criterion(settings["criterion"])
        strata = np.unique(train[1], axis=0, return_inverse=True)[1].ravel()
    else:
        weighting = imbalance.decide(train[1], n_classes, settings["class_weight"])
        log.info(
            "class weights %s (setting %s): training classes of %d to %d rows, largest/smallest %.1f",
            weighting["applied"],
            weighting["setting"],
            min(weighting["counts"]),
            max(weighting["counts"]),
            weighting["ratio"],
        )
        criterion, strata = settings["criterion"], train[1]
    rows = selection.search_subsample(strata, settings["search_rows"], settings["seed"])
    searched = train if rows is None else (_subset(train[0], rows), train[1][rows])
    if rows is not None:
        log.info(
            "candidates fitted on %d of %d training rows (stratified, seed %d); the "
            "winner is fitted again on all",
            len(rows),
            len(train[1]),
            settings["seed"],
        )
    table, states = search(
        searched, validation, n_classes, {**settings, "criterion": criterion}, storage, weighting
    )
    winner = selection.best(table, criterion)
    if rows is not None:
        candidate = {k: v for k, v in table[winner].items() if k in selection.GRID_KEYS}
        refit, state = fit_candidate(
            candidate, train, validation, n_classes, settings, {}, storage, weighting
        )
        table.append({"candidate": winner, **refit})
        states.append(state)
        winner = len(table) - 1
    for number, row in enumerate(table):
        row["selected"] = number == winner
    return table, winner, {**states[winner], "class_weight": weighting}


def search(train, validation, n_classes: int, settings: dict, storage: str, weighting: dict):
    """Every candidate fitted on ``train`` (rows of ``storage``) with the class
    weights of ``weighting`` (imbalance.decide) and scored on ``validation``:
    (table rows, states)."""
    poolings = pooling.distinct_poolings(train[0], selection.values(settings, "pooling"), storage)
    candidates = selection.candidates(settings, poolings)
    log.info("%d candidate head(s), chosen by validation %s", len(candidates), settings["criterion"])
    pooled, table, states = {}, [], []  # pooled: once per pooling, for all its L2 strengths
    for number, candidate in enumerate(candidates):
        row, state = fit_candidate(
            candidate, train, validation, n_classes, settings, pooled, storage, weighting
        )
        table.append({"candidate": number, **row})
        states.append(state)
        figures = ", ".join(
            f"{key.removeprefix('val_')} {value:.4f}" for key, value in row.items() if key.startswith("val_")
        )
        log.info("candidate %d %s: validation %s (%.1f s)", number, candidate, figures, row["fit_seconds"])
    return table, states


def _pool(rows, how: str, storage: str) -> np.ndarray:
    """Vectors of pooling ``how``: of stored rows block by block, of an array at once."""
    return (
        rows.pooled(how, storage) if isinstance(rows, split_rows.Rows) else pooling.pool(rows, how, storage)
    )


def _subset(rows, positions):
    """The rows at ``positions``: still unread for stored rows, a copy of an array's."""
    return rows.subset(positions) if isinstance(rows, split_rows.Rows) else rows[positions]


def fit_candidate(
    candidate, train, validation, n_classes: int, settings: dict, pooled: dict, storage: str, weighting: dict
):
    """One candidate fitted on ``train`` with ``weighting``'s class weights: (its table
    row without number and choice, its state).

    ``pooled`` holds the standardised training and pooled validation features of the
    last linear candidate's pooling, so one pooled matrix is held at a time (the
    candidates come grouped by pooling).
    """
    (train_x, train_y), (val_x, val_y) = train, validation
    started = time.perf_counter()
    class_weight = imbalance.as_dict(weighting)
    if candidate["kind"] == "linear":
        if candidate["pooling"] not in pooled:
            pooled.clear()  # the previous pooling's matrix goes before the next is made
            train_p, val_p = (_pool(x, candidate["pooling"], storage) for x in (train_x, val_x))
            # A pooling that only reshapes an array returns the caller's rows: standardise a copy.
            owned = isinstance(train_x, split_rows.Rows) or not np.may_share_memory(train_p, train_x)
            pooled[candidate["pooling"]] = standardise(train_p, owned), val_p
        standard, val_p = pooled[candidate["pooling"]]
        kernel, bias, train_logits = fit_linear(
            standard, train_y, candidate["l2"], settings["seed"], class_weight
        )
        weights = [kernel.astype(np.float32), bias.astype(np.float32)]
        val_logits = linear_logits(val_p, weights)
        fit, scores = _scores(train_logits, train_y, n_classes), _scores(val_logits, val_y, n_classes)
        rows = [
            {
                "epoch": 1,
                "loss": fit["loss"],
                "accuracy": fit["accuracy"],
                "val_loss": scores["loss"],
                "val_accuracy": scores["accuracy"],
            }
        ]
        state = {"weights": weights, "best_epoch": 1}
    else:
        model, rows, best_epoch = fit_mlp(
            train, validation, n_classes, candidate, settings, storage, class_weight
        )
        from .row_batches import RowBatches

        val_logits = logits(model, RowBatches(val_x, batch_size=settings["batch_size"]))
        scores = _scores(val_logits, val_y, n_classes)
        state = {"weights": model.get_weights(), "best_epoch": best_epoch}
    if np.ndim(val_y) == 2:
        return _multi_label_row(candidate, val_logits, val_y, settings, state, rows, len(train_y), started)
    # Each candidate is judged as it would be delivered: calibrated, when that is on.
    temperature = calibration.fit_temperature(val_logits, val_y) if settings["calibrate"] else 1.0
    row = {
        **candidate,
        "class_weight": weighting["applied"],
        "train_rows": len(train_y),
        "epochs": len(rows),
        "best_epoch": state["best_epoch"],
        "temperature": temperature,
        "val_accuracy": scores["accuracy"],
        "val_balanced_accuracy": scores["balanced_accuracy"],
        "val_macro_f1": scores["macro_f1"],
        "val_log_loss": calibration.log_loss(val_logits, val_y, temperature),
        "val_log_loss_uncalibrated": scores["loss"],
        "fit_seconds": round(time.perf_counter() - started, 3),
    }
    return row, {**state, "rows": rows, "val_logits": val_logits, "temperature": temperature}


def _multi_label_row(
    candidate, val_logits, val_y, settings: dict, state: dict, rows, train_rows: int, started: float
):
    """fit_candidate's (row, state) of a multi-label candidate: temperatures, then
    thresholds on the calibrated validation probabilities."""
    n_labels = val_y.shape[1]
    temperatures = (
        multilabel.fit_temperatures(val_logits, val_y) if settings["calibrate"] else [1.0] * n_labels
    )
    proba = multilabel.probabilities(val_logits, temperatures)
    thresholds = multilabel.fit_thresholds(proba, val_y)
    row = {
        **candidate,
        "train_rows": train_rows,
        "epochs": len(rows),
        "best_epoch": state["best_epoch"],
        **{f"val_{key}": value for key, value in multilabel.scores(val_y, proba, thresholds).items()},
        "val_log_loss": multilabel.log_loss(val_logits, val_y, temperatures),
        "val_log_loss_uncalibrated": multilabel.log_loss(val_logits, val_y),
        "fit_seconds": round(time.perf_counter() - started, 3),
    }
    return row, {
        **state,
        "rows": rows,
        "val_logits": val_logits,
        "temperature": temperatures,
        "thresholds": thresholds,
    }


def _multi_label_scores(logits, val_y, temperatures, thresholds) -> dict:
    """The winner's validation figures, multi-label (per-label ECE averaged)."""
    before, after = multilabel.probabilities(logits), multilabel.probabilities(logits, temperatures)
    return {
        **multilabel.scores(val_y, after, thresholds),
        "log_loss_before_calibration": multilabel.log_loss(logits, val_y),
        "log_loss": multilabel.log_loss(logits, val_y, temperatures),
        "ece_before_calibration": float(np.mean(multilabel.expected_calibration_errors(val_y, before))),
        "ece": float(np.mean(multilabel.expected_calibration_errors(val_y, after))),
    }


def finalise(
    feature_shape, n_classes: int, settings: dict, candidate: dict, state: dict, val_y, storage: str
):
    """The winner as one Keras model with its temperature, and its validation figures."""
    logits, temperature = state["val_logits"], state["temperature"]
    mlp, multi_label = candidate["kind"] == "mlp", np.ndim(val_y) == 2
    model = assemble(
        feature_shape,
        n_classes,
        candidate["pooling"],
        settings["hidden_units"] if mlp else (),
        settings["activation"],
        candidate.get("dropout", 0.0),
        temperature,
        storage=storage,
        multi_label=multi_label,
    )
    model.set_weights(state["weights"])
    if multi_label:
        return model, temperature, _multi_label_scores(logits, val_y, temperature, state["thresholds"])
    predicted = calibration.probabilities(logits).argmax(axis=1)
    scores = {
        **calibration.scores(logits, val_y, temperature),
        **imbalance.class_scores(val_y, predicted, n_classes),
    }
    return model, temperature, scores


def train_head(features: dict, settings: dict, meta: dict, threads: int, outputs, views=None) -> None:
    """Fit, select and calibrate on ``features`` = {split: (manifest.csv, shard files,
    labels.npy)} (tlflow.split_rows).

    ``views`` (manifest.csv, shard files, labels.npy) of the training images'
    augmented views are trained on after the originals; validation stays originals only.
    """
    import pandas as pd

    configure_threads(threads)
    started = time.perf_counter()
    # The rows stay in the shard files, read as each candidate needs them (tlflow.split_rows).
    sources = {split: [(manifest, shards)] for split, (manifest, shards, _) in features.items()}
    labels = {split: [load_array(path, mmap=False)] for split, (_, _, path) in features.items()}
    if views is not None:
        sources["train"].append(views[:2])
        labels["train"].append(load_array(views[2], mmap=False))
        log.info("%d training images and %d augmented views of them", *map(len, labels["train"]))
    train, validation = (
        (split_rows.Rows(sources[split]), np.concatenate(labels[split])) for split in features
    )
    n_classes = len(meta["classes"])
    log.info("%d training rows, %d validation rows, %d classes", len(train[1]), len(validation[1]), n_classes)
    multi_label = bool(meta.get("multi_label"))
    for split, (_, y) in zip(features, (train, validation)):
        multilabel.check_labels(y, meta["classes"], multi_label, features[split][2], split)
    storage = pooling.stored(meta["backbone"])
    table, winner, state = select(train, validation, n_classes, settings, storage)
    candidate = {k: v for k, v in table[winner].items() if k in selection.GRID_KEYS}
    feature_shape = list(train[0].shape[1:])
    model, temperature, scores = finalise(
        feature_shape, n_classes, settings, candidate, state, validation[1], storage
    )
    log.info(
        "selected candidate %d %s, temperature %s, validation %s", winner, candidate, temperature, scores
    )
    with atomic_path(outputs.model) as tmp:
        model.save(tmp)
    write_history(state["rows"], outputs.history)
    with atomic_path(outputs.candidates) as tmp:
        columns = MULTI_LABEL_CANDIDATE_COLUMNS if multi_label else CANDIDATE_COLUMNS
        pd.DataFrame(table, columns=columns).to_csv(tmp, index=False)
    chosen = {
        "settings": settings,
        "selected": {"candidate": winner, **candidate},
        "fit": LINEAR_FIT if candidate["kind"] == "linear" else MLP_FIT,
        "best_epoch": state["best_epoch"],
        "epochs_run": len(state["rows"]),
        "temperature": temperature,
        "validation": scores,
        "class_weight": state["class_weight"],
        "candidates": len({row["candidate"] for row in table}),
        # Rows of the training split (with views) each candidate and the head were fitted on.
        "search_rows": int(table[0]["train_rows"]),
        "train_rows": int(table[winner]["train_rows"]),
    }
    if multi_label:  # per label, as the classes: what evaluation and prediction decide by
        chosen["criterion"] = multilabel.criterion(settings["criterion"])
        chosen["thresholds"] = state["thresholds"]
    log.info("head stage: %.1f s (candidates, choice, calibration)", time.perf_counter() - started)
    Meta.from_dict({**meta, "feature_shape": feature_shape, "head": chosen}).write(outputs.meta)
