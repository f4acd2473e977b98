"""The deployable model: raw RGB images of any size in, one probability per class out
(per label, of multi-label data: the labels' thresholds are in ``model.json``).

Backbone and trained head are joined behind a resize and the backbone's own
preprocessing, all built from standard Keras layers, so ``model.keras`` loads with
plain ``keras.models.load_model`` (no custom objects, safe mode on). The class
names and the backbone spec go beside it in ``model.json``. With test-time views
(tlflow.views), the model averages the head's probabilities over the image and its
views, as the evaluation does.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import backbones, pooling, views
from .atomic import atomic_path
from .metadata import Meta
from .readers import load_model


def affine_preprocessing(preprocessing: str):
    """``(kernel, bias)`` with ``preprocess_input(x) == x @ kernel + bias`` per pixel, or None.

    Every keras.applications preprocess_input is such a map on the RGB values (a
    scale, mean/std, or a channel flip with mean subtraction). Measuring it from the
    function itself, instead of copying its constants, keeps the two from drifting;
    None means it is the identity. Raises BackboneError if it is not affine.
    """
    function = backbones.preprocess_function(preprocessing)

    def apply(pixels):  # copies: some preprocess_input functions work in place
        return np.asarray(function(np.array(pixels, dtype=np.float64)), dtype=np.float64)

    bias = apply(np.zeros((1, 1, 1, 3)))[0, 0, 0]
    kernel = apply(np.eye(3)[None, None])[0, 0] - bias  # row k: response to channel k
    probe = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3))
    if not np.allclose(apply(probe), probe @ kernel + bias, rtol=1e-6, atol=1e-4):
        raise backbones.BackboneError(
            f"preprocessing '{preprocessing}' is not a per-pixel affine map, so it "
            "cannot be built into the deployable model with standard layers."
        )
    if np.allclose(kernel, np.eye(3), atol=1e-9) and np.allclose(bias, 0, atol=1e-9):
        return None
    return kernel.astype(np.float32), bias.astype(np.float32)


def test_time_layer(name: str):
    """The test-time view ``name`` of tlflow.views (its order along views.AXIS) from
    standard layers, for images (batch, height, width, channels): a fixed permutation
    matrix on that axis (exact in float32: each output is one input times 1, plus zeros)."""
    import keras

    axis = views.AXIS + 1  # of the batch
    to_last = (*(d for d in (1, 2, 3) if d != axis), axis)  # Dense acts on the last axis
    back = tuple(int(d) + 1 for d in np.argsort(to_last))

    def apply(x):
        length = x.shape[axis]
        permute = keras.layers.Dense(length, use_bias=False, trainable=False, name=f"{name}_view")
        permute.build((None, length))
        permute.set_weights([np.eye(length, dtype=np.float32)[:, views.TEST_TIME[name](length)]])
        x = keras.layers.Permute(to_last, name=f"{name}_axis_last")(x)
        return keras.layers.Permute(back, name=f"{name}_axis_back")(permute(x))

    return apply


def preprocessed_input(spec, test_time=()):
    """(raw RGB input of any size, [the tensor resized and preprocessed as in
    training, then each test-time view of it])."""
    import keras

    height, width = spec.image_size
    inputs = keras.Input(shape=(None, None, 3), name="image")
    # Antialiased bilinear is what PIL's bilinear does when shrinking, as in training.
    x = keras.layers.Resizing(height, width, antialias=True, name="resize")(inputs)
    # Views are made from the resized image, as tlflow.views makes them from the decoded one.
    branches = [x, *(test_time_layer(name)(x) for name in test_time)]
    affine = affine_preprocessing(spec.preprocessing)
    if affine is not None:
        preprocess = keras.layers.Dense(3, trainable=False, name="preprocess")
        preprocess.build((None, 3))
        preprocess.set_weights(list(affine))
        branches = [preprocess(branch) for branch in branches]
    return inputs, branches


def class_columns(x, n_classes: int, name: str = "probabilities"):
    """One probability per class: a sigmoid head gives p(second class) alone."""
    import keras

    if n_classes != 2:
        return x
    return keras.layers.Concatenate(name=name)(
        [keras.layers.Rescaling(-1.0, offset=1.0, name="complement")(x), x]
    )


def features(backbone, spec):
    """A function from image tensors to what the head reads, as it was stored: the
    backbone's map, or its average and maximum stacked (pooling.summary)."""
    summary = pooling.summary(backbone.output.shape[1:]) if spec.storage == "pooled" else None

    def apply(x):
        x = backbone(x, training=False)  # BatchNormalization in inference mode, always
        return summary(x) if summary else x

    return apply


def build(head_model, meta: Meta, test_time=()):
    """Resize -> [views] -> preprocess -> frozen backbone -> [pooling] -> head ->
    probabilities (keras.Model)."""
    import keras

    spec = meta.backbone
    backbone = backbones.build(spec.to_dict())  # sets the global dtype policy to the spec's
    # Resize, preprocessing and head in float32, as during extraction and training.
    keras.config.set_dtype_policy("float32")
    head = load_model(head_model)
    inputs, branches = preprocessed_input(spec, test_time)
    stored = features(backbone, spec)
    outputs = [head(stored(branch)) for branch in branches]
    x = outputs[0] if len(outputs) == 1 else keras.layers.Average(name="test_time")(outputs)
    if not meta.multi_label:  # a multi-label head gives one probability per label already
        x = class_columns(x, len(meta.classes))
    return keras.Model(inputs, x, name=f"{spec.id}_classifier")


def deploy_model(head_model, head_meta, out_model, out_meta, test_time=()) -> None:
    """Write ``model.keras`` and ``model.json`` (the head's metadata: classes, spec,
    and the test-time views averaged over, if any)."""
    meta = Meta.read(head_meta)
    model = build(head_model, meta, test_time)
    if test_time:
        meta = replace(meta, augmentation={**meta.augmentation, "test_time": list(test_time)})
    with atomic_path(out_model) as tmp:
        model.save(tmp)
    meta.write(out_meta)
