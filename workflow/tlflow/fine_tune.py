"""Fine-tuning: the top of the backbone trained on images, under the chosen head.

The model is the deployable one (raw RGB in, resize and preprocessing inside,
see deploy) with the head's layers inlined, so training starts from the head the
head stage chose and calibrated, as the Keras transfer-learning guide requires.
Only the named top layers of the backbone become trainable; BatchNormalization
layers stay frozen and the backbone runs in inference mode (``training=False``),
so their ImageNet statistics are not overwritten by small batches. Training uses
augmented training images, stops early on validation loss and keeps the best
epoch; the temperature is then fitted again on validation (if the head was
calibrated). The test split is never read here.

Resumable: after every epoch one file holds everything the next epoch depends
on, and the next run continues from it, ending with the same model as a run that
was never interrupted (same seed, same machine and threads).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from . import backbones, calibration, deploy
from .atomic import atomic_path
from .history import best_epoch, epoch_row
from .history import write as write_history
from .image_batches import EpochSetter, ImageBatches
from .manifest import file_sha256
from .metadata import Meta
from .probabilities import logits
from .readers import READ_ERRORS, load_model
from .runtime import configure_threads

log = logging.getLogger(__name__)

FIT = (
    "Keras fit of the backbone's top layers and the head on augmented training images "
    "(BatchNormalization frozen, backbone in inference mode); early stopping on "
    "validation loss restores the best epoch; temperature fitted again on validation"
)


class FineTuneError(ValueError):
    """The fine-tuning settings do not fit the backbone; the message says how to fix it."""


def _learns(layer) -> bool:
    """A layer fine-tuning trains: it has trainable weights and is not BatchNormalization.

    Asked of a trainable layer: freezing a layer hides its trainable weights.
    """
    return bool(layer.trainable_weights) and not isinstance(layer, keras.layers.BatchNormalization)


def unfreeze(backbone, what) -> list[str]:
    """Make the top of ``backbone`` trainable; return the names of the layers trained.

    ``what``: a number of layers with weights counted from the top, or a layer-name
    prefix (``block5`` for VGG16). Counting only layers with weights makes a number
    mean about the same in every architecture (3: VGG16's block 5, ResNet50's last
    residual block, EfficientNet's last block and top convolution), whereas counting
    pooling, activation and BatchNormalization layers too does not. BatchNormalization
    layers among them stay frozen.
    """
    before = {layer.name: layer.trainable for layer in backbone.layers}
    backbone.trainable = True
    for layer in backbone.layers:  # each one too, so that _learns sees its weights
        layer.trainable = True
    layers = [layer for layer in backbone.layers if not isinstance(layer, keras.layers.InputLayer)]
    learning = [layer.name for layer in layers if _learns(layer)]
    try:
        trained = _select(layers, learning, what, backbone.name)
    except FineTuneError:  # the backbone stays as it was
        for layer in backbone.layers:
            layer.trainable = before[layer.name]
        raise
    for layer in backbone.layers:
        layer.trainable = layer.name in trained
    return trained


def _select(layers, learning: list[str], what, name: str) -> list[str]:
    """The names in ``learning`` (bottom to top) that ``what`` selects; FineTuneError if none."""
    if isinstance(what, int):
        if what > len(learning):
            raise FineTuneError(
                f"fine_tune.unfreeze is {what} but backbone '{name}' has {len(learning)} "
                f"layers with weights to train; set it to at most {len(learning)}, or to "
                "a layer-name prefix."
            )
        return learning[len(learning) - what :]
    trained = [layer for layer in learning if layer.startswith(what)]
    if not any(layer.name.startswith(what) for layer in layers):
        prefixes = list(dict.fromkeys(layer.name.split("_")[0] for layer in layers))
        raise FineTuneError(
            f"fine_tune.unfreeze is '{what}' but no layer of backbone '{name}' has a name "
            f"starting with it. Its layers' names start with: {', '.join(prefixes[-12:])}; "
            "or give a number of layers."
        )
    if not trained:
        raise FineTuneError(
            f"fine_tune.unfreeze '{what}' selects no layer with weights to train in "
            f"backbone '{name}' (only pooling, activations or BatchNormalization); "
            "select more layers."
        )
    return trained


def build(head_model, meta: Meta, precision: str):
    """(model, backbone): raw RGB -> resize -> preprocess -> backbone -> [pooling] -> head
    layers -> probabilities.

    The head's layers are applied one by one, not nested, so that its ``logits`` and
    ``temperature`` are layers of the model itself.
    """
    spec = meta.backbone
    backbone = backbones.build({**spec.to_dict(), "precision": precision})
    head = load_model(head_model)
    inputs, (x,) = deploy.preprocessed_input(spec)
    x = deploy.features(backbone, spec)(x)
    for layer in head.layers:  # fresh copies: layers of this model alone, so .output is here
        copy = layer.__class__.from_config(layer.get_config())
        x = copy(x)
        copy.set_weights(layer.get_weights())
    # The inlined head already has a layer 'probabilities' (its sigmoid or softmax).
    x = deploy.class_columns(x, len(meta.classes), name="class_probabilities")
    return keras.Model(inputs, x, name=f"{spec.id}_fine_tuned"), backbone


def set_temperature(model, temperature: float) -> None:
    model.get_layer("temperature").scale = 1.0 / temperature


class Checkpoint(keras.callbacks.Callback):
    """After each epoch, one file with all that the next epoch depends on.

    Keras' BackupAndRestore keeps weights and optimizer only; a resumed run would
    then differ from an uninterrupted one in the dropout layers' random state,
    EarlyStopping's counters and best weights, and the history. This keeps them
    all: every model variable (random states included), the optimizer's, the
    early stopping state and the history rows. Written atomically, so a job killed
    while writing leaves the previous epoch's file.
    """

    def __init__(self, path, early_stopping=None):
        super().__init__()
        self.path, self.early_stopping = Path(path), early_stopping
        self.rows: list[dict] = []
        self.state = self._read_state()

    def _read_state(self) -> dict:
        fresh = {"epoch": 0, "stopped": False, "rows": []}
        if not self.path.is_file():
            return fresh
        try:
            with np.load(self.path) as saved:
                return json.loads(str(saved["state"]))
        except READ_ERRORS as error:  # a resume point, not a result: start again
            aside = self.path.with_name(f"{self.path.name}.damaged")
            self.path.replace(aside)
            log.warning(
                "checkpoint %s cannot be read (%s: %s): moved to %s; training starts from the first epoch",
                self.path,
                type(error).__name__,
                error,
                aside,
            )
            return fresh

    def restore(self, model) -> None:
        """Put the saved state into ``model`` (compiled) and the early stopping."""
        if not self.path.is_file():
            return
        optimizer = model.optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        with np.load(self.path) as saved:
            for prefix, variables in (("model", model.variables), ("optimizer", optimizer.variables)):
                for i, variable in enumerate(variables):
                    variable.assign(saved[f"{prefix}_{i}"])
            stopping = self.state.get("early_stopping")
            if self.early_stopping is not None and stopping:
                for key, value in stopping.items():
                    setattr(self.early_stopping, key, value)
                count = len([k for k in saved.files if k.startswith("best_")])
                self.early_stopping.best_weights = [saved[f"best_{i}"] for i in range(count)] or None
        self.rows = list(self.state["rows"])
        log.info("resumed from %s after epoch %d", self.path, self.state["epoch"])

    def on_train_begin(self, logs=None):
        self.restore(self.model)  # after EarlyStopping's own reset (it is listed first)

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append(epoch_row(epoch, logs))
        arrays = {f"model_{i}": np.asarray(v) for i, v in enumerate(self.model.variables)}
        arrays.update((f"optimizer_{i}", np.asarray(v)) for i, v in enumerate(self.model.optimizer.variables))
        state = {"epoch": epoch + 1, "stopped": bool(self.model.stop_training), "rows": self.rows}
        stopping = self.early_stopping
        if stopping is not None:
            state["early_stopping"] = {
                "wait": int(stopping.wait),
                "best": float(stopping.best),
                "best_epoch": int(stopping.best_epoch),
                "stopped_epoch": int(stopping.stopped_epoch),
            }
            arrays.update((f"best_{i}", np.asarray(w)) for i, w in enumerate(stopping.best_weights or []))
        self.state = state
        with atomic_path(self.path) as tmp:
            np.savez(tmp, state=np.array(json.dumps(state)), **arrays)
        log.info(
            "epoch %d: %.1f s, %s; checkpoint written",
            epoch + 1,
            time.perf_counter() - self.started,
            self.rows[-1],
        )


def checkpoint_path(out_model, key: dict) -> Path:
    """Where the checkpoint of these inputs and settings lives: a hidden folder beside the outputs.

    Named by a digest of ``key``, so a checkpoint of other data or settings is never resumed.
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(out_model).parent / ".checkpoint" / f"{digest}.npz"


def _batches(manifest_csv, data_dir, size, settings, threads, shuffle=False, transforms=None):
    return ImageBatches.from_manifest(
        manifest_csv,
        data_dir,
        size,
        settings["batch_size"],
        seed=settings["seed"],
        shuffle=shuffle,
        transforms=transforms,
        workers=threads,
    )


def fine_tune(
    head_model,
    head_meta,
    manifests: dict,
    data_dir,
    settings: dict,
    transforms: dict | None,
    threads: int,
    outputs,
) -> dict:
    """Train, recalibrate and write ``outputs`` (model, meta, history); returns validation scores.

    ``manifests``: {"train": csv, "validation": csv}, the images the features were made of.
    """

    configure_threads(threads)
    meta = Meta.read(head_meta)
    spec = meta.backbone
    key = {
        "settings": settings,
        "transforms": transforms,
        "spec": spec.to_dict(),
        "head": file_sha256(head_model),
        **{s: file_sha256(m) for s, m in manifests.items()},
    }
    path = checkpoint_path(outputs.model, key)
    for other in path.parent.glob("*.npz"):
        if other != path:  # of other data or settings: never resumed
            other.unlink()
    keras.utils.set_random_seed(settings["seed"])
    model, backbone = build(head_model, meta, settings["precision"])
    trained = unfreeze(backbone, settings["unfreeze"])
    log.info("training %d backbone layers (%s ... %s) and the head", len(trained), trained[0], trained[-1])
    train = _batches(manifests["train"], data_dir, spec.image_size, settings, threads, True, transforms)
    validation = _batches(manifests["validation"], data_dir, spec.image_size, settings, threads)
    log.info("%d training and %d validation images", len(train.paths), len(validation.paths))
    model.compile(
        optimizer=keras.optimizers.get(
            {"class_name": settings["optimizer"], "config": {"learning_rate": settings["learning_rate"]}}
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    patience = settings["patience"]
    stopping = (
        keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True)
        if patience > 0
        else None
    )
    checkpoint = Checkpoint(path, stopping)
    done = checkpoint.state["epoch"]
    if checkpoint.state["stopped"] or done >= settings["epochs"]:
        checkpoint.restore(model)  # killed after its last epoch: nothing left to train
        if stopping is not None and stopping.best_weights is not None:
            model.set_weights(stopping.best_weights)
    else:
        model.fit(
            train,
            validation_data=validation,
            epochs=settings["epochs"],
            initial_epoch=done,
            shuffle=False,  # the dataset shuffles, by seed and epoch
            callbacks=[EpochSetter(train), *([stopping] if stopping else []), checkpoint],
            verbose=2,
        )
    rows = checkpoint.rows
    best = best_epoch(rows, bool(stopping))
    val_logits = logits(model, validation)
    val_y = validation.labels
    temperature = (
        calibration.fit_temperature(val_logits, val_y) if meta.head["settings"]["calibrate"] else 1.0
    )
    scores = calibration.scores(val_logits, val_y, temperature)
    log.info("best epoch %d of %d, temperature %.4f, validation %s", best, len(rows), temperature, scores)
    # Saved as deployed: in the features' precision, without optimizer state.
    deployable, _ = build(head_model, meta, spec.precision)
    deployable.set_weights(model.get_weights())
    set_temperature(deployable, temperature)
    with atomic_path(outputs.model) as tmp:
        deployable.save(tmp)
    write_history(rows, outputs.history)
    fine_tuned = {
        "settings": settings,
        "augmentation": transforms,
        "fit": FIT,
        "trained_layers": trained,
        "best_epoch": best,
        "epochs_run": len(rows),
        "head_temperature": meta.head["temperature"],
        "head_validation": meta.head["validation"],
    }
    head = {**meta.head, "temperature": temperature, "validation": scores, "fine_tune": fine_tuned}
    Meta.from_dict({**meta.to_dict(), "head": head}).write(outputs.meta)
    shutil.rmtree(path.parent, ignore_errors=True)  # done: the outputs hold what is needed
    return scores
