"""Frozen feature extractors: what the config names, and how to build it.

A backbone is either a ``keras.applications`` model (``include_top=False``) with
ImageNet, random or file weights and its own ``preprocess_input``, or a saved
``.keras`` model used as it is, with the preprocessing the config names.

Everything that shapes the features is collected in a *spec* (a plain dict): it is
recorded beside the features and the head, and keys the feature cache.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from pathlib import Path

from .images import DECODE
from .manifest import file_sha256

# keras.applications constructors by config name (lower case). Kept as a table so
# that reading the config does not import TensorFlow; a unit test checks it against
# keras.applications itself.
APPLICATIONS = {
    name.lower(): name
    for name in [
        "ConvNeXtBase",
        "ConvNeXtLarge",
        "ConvNeXtSmall",
        "ConvNeXtTiny",
        "ConvNeXtXLarge",
        "DenseNet121",
        "DenseNet169",
        "DenseNet201",
        "EfficientNetB0",
        "EfficientNetB1",
        "EfficientNetB2",
        "EfficientNetB3",
        "EfficientNetB4",
        "EfficientNetB5",
        "EfficientNetB6",
        "EfficientNetB7",
        "EfficientNetV2B0",
        "EfficientNetV2B1",
        "EfficientNetV2B2",
        "EfficientNetV2B3",
        "EfficientNetV2L",
        "EfficientNetV2M",
        "EfficientNetV2S",
        "InceptionResNetV2",
        "InceptionV3",
        "MobileNet",
        "MobileNetV2",
        "MobileNetV3Large",
        "MobileNetV3Small",
        "NASNetLarge",
        "NASNetMobile",
        "ResNet101",
        "ResNet101V2",
        "ResNet152",
        "ResNet152V2",
        "ResNet50",
        "ResNet50V2",
        "VGG16",
        "VGG19",
        "Xception",
    ]
}

# Modules of keras.applications that hold a preprocess_input, for saved models.
PREPROCESSING = (
    "convnext",
    "densenet",
    "efficientnet",
    "efficientnet_v2",
    "inception_resnet_v2",
    "inception_v3",
    "mobilenet",
    "mobilenet_v2",
    "mobilenet_v3",
    "nasnet",
    "resnet",
    "resnet50",
    "resnet_v2",
    "vgg16",
    "vgg19",
    "xception",
)

PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


class BackboneError(ValueError):
    """A backbone entry of the config cannot be used; the message says how to fix it."""


def resolve(
    entry: dict, image_size, precision: str, base_dir=".", sha256=file_sha256, features: str = "pooled"
) -> dict:
    """Turn one ``backbones:`` entry of the config into a spec, or raise BackboneError.

    Paths are taken relative to ``base_dir``. Files are hashed with ``sha256(path)``
    (the workflow passes a cache), so that replacing a weights file or a saved model
    changes the spec and so reruns its features. ``features`` is what is stored
    per image (pooling.storage): ``pooled`` or the whole ``map``.
    """
    name = str(entry["name"])
    size = list(entry.get("image_size") or image_size)
    if name.lower().endswith(".keras"):
        path = Path(base_dir, name)
        if not path.is_file():
            raise BackboneError(
                f"backbone model file '{path}' not found. Give the path of a saved "
                "Keras model (.keras), relative to the working directory."
            )
        preprocessing = entry.get("preprocessing")
        if preprocessing not in (*PREPROCESSING, "none"):
            raise BackboneError(
                f"backbone '{name}' needs 'preprocessing:' in the config: 'none' if the "
                "model has its preprocessing built in, or the keras.applications module "
                f"whose preprocess_input it expects, one of: {', '.join(PREPROCESSING)}."
            )
        spec = {
            "id": entry.get("id") or re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem),
            "model": str(path),
            "model_sha256": sha256(str(path)),
            "preprocessing": preprocessing,
        }
    else:
        key = name.lower()
        if key not in APPLICATIONS:
            raise BackboneError(
                f"unknown backbone '{name}'. Use a saved model file ending in .keras, or "
                f"one of the keras.applications models: {', '.join(sorted(APPLICATIONS))}."
            )
        weights = str(entry.get("weights", "imagenet"))
        spec = {"id": entry.get("id") or key, "application": key, "weights": weights}
        if weights not in ("imagenet", "none"):
            path = Path(base_dir, weights)
            if not path.is_file():
                raise BackboneError(
                    f"weights file '{path}' for backbone '{name}' not found. Set "
                    "'weights' to 'imagenet', 'none' (random) or an existing weights file."
                )
            spec["weights"] = str(path)
            spec["weights_sha256"] = sha256(str(path))
        # The preprocessing is the application's own; recorded so prediction repeats it.
        spec["preprocessing"] = entry.get("preprocessing") or _application_default(key)
    spec.update(image_size=size, precision=precision, decode=DECODE, features=features)
    return spec


def _application_default(key: str) -> str:
    """Module of ``key``'s preprocess_input, from its constructor name without keras."""
    overrides = {
        "resnet50": "resnet",
        "resnet101": "resnet",
        "resnet152": "resnet",
        "resnet50v2": "resnet_v2",
        "resnet101v2": "resnet_v2",
        "resnet152v2": "resnet_v2",
        "mobilenetv2": "mobilenet_v2",
        "mobilenetv3large": "mobilenet_v3",
        "mobilenetv3small": "mobilenet_v3",
        "nasnetlarge": "nasnet",
        "nasnetmobile": "nasnet",
        "inceptionresnetv2": "inception_resnet_v2",
        "inceptionv3": "inception_v3",
    }
    if key in overrides:
        return overrides[key]
    for prefix in ("convnext", "densenet", "efficientnetv2", "efficientnet"):
        if key.startswith(prefix):
            return prefix.replace("efficientnetv2", "efficientnet_v2")
    return key  # vgg16, vgg19, xception, mobilenet


def spec_digest(spec: dict) -> str:
    """Short stable hash of everything that shapes the features (the id excluded)."""
    shaping = {k: v for k, v in spec.items() if k != "id"}
    blob = json.dumps(shaping, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def preprocess_function(preprocessing: str):
    """``preprocess_input`` of a keras.applications module, or identity for 'none'."""
    if preprocessing == "none":
        return lambda batch: batch
    module = importlib.import_module(f"keras.applications.{preprocessing}")
    return module.preprocess_input


def build(spec: dict):
    """The frozen extractor of ``spec`` (a keras.Model); raises BackboneError with the fix.

    It computes in ``spec["precision"]``; the global dtype policy is restored after,
    so a head trained later in the same process stays float32.
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[spec["precision"]])
    try:
        return _build(spec)
    finally:
        keras.config.set_dtype_policy(previous)


def _build(spec: dict):
    import keras

    height, width = spec["image_size"]
    if "model" in spec:
        model = keras.models.load_model(spec["model"], compile=False)
        if spec["precision"] != "float32":
            model = _with_policy(model, PRECISIONS[spec["precision"]])
    else:
        constructor = getattr(keras.applications, APPLICATIONS[spec["application"]])
        weights = spec["weights"]
        if weights == "none":  # the same random network in every job and every run
            keras.utils.set_random_seed(0)
        try:
            model = constructor(
                include_top=False,
                weights="imagenet" if weights == "imagenet" else None,
                input_shape=(height, width, 3),
            )
        except Exception as error:  # download refused, or size too small for the net
            raise BackboneError(
                f"could not build {spec['application']} with weights '{weights}' at "
                f"image size {height}x{width}: {error}. ImageNet weights are downloaded "
                "once by Keras and need internet; offline, set 'weights' to a local "
                "weights file or 'none'."
            ) from error
        if weights not in ("imagenet", "none"):
            try:
                model.load_weights(weights)
            except Exception as error:
                raise BackboneError(
                    f"weights file '{weights}' does not fit {spec['application']} "
                    f"(include_top=False): {error}. Use weights saved from that "
                    "architecture without its top."
                ) from error
    model.trainable = False
    return model


def _with_policy(model, policy: str):
    """Clone a loaded model so that every layer computes in ``policy``."""
    import keras

    def clone(layer):
        config = layer.get_config()
        if "dtype" in config and not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    clone_model = keras.models.clone_model(model, clone_function=clone)
    clone_model.set_weights(model.get_weights())
    return clone_model
