"""Backbone names, preprocessing, specs and the errors that say how to fix them."""

import numpy as np
import pytest

from tlflow.backbones import (
    APPLICATIONS,
    BackboneError,
    build,
    preprocess_function,
    resolve,
    spec_digest,
)


def test_table_matches_keras_applications():
    import keras

    constructors = {n for n in dir(keras.applications) if n[0].isupper()}
    assert set(APPLICATIONS.values()) == constructors


def test_each_application_gets_its_own_preprocess_input():
    import keras

    for key, constructor in APPLICATIONS.items():
        spec = resolve({"name": key, "weights": "none"}, [32, 32], "float32")
        module = getattr(keras.applications, constructor).__module__.rsplit(".", 1)[-1]
        assert spec["preprocessing"] == module, key


def test_vgg16_preprocessing_is_caffe_style_not_rescaling():
    pixel = np.array([[[[255.0, 0.0, 0.0]]]], dtype=np.float32)  # pure red, RGB
    out = preprocess_function("vgg16")(pixel.copy())
    # BGR order with the ImageNet means subtracted: blue first, red last
    np.testing.assert_allclose(out[0, 0, 0], [-103.939, -116.779, 255 - 123.68], atol=1e-3)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(BackboneError, match="unknown backbone 'vgg-16'.*vgg16.*xception"):
        resolve({"name": "vgg-16"}, [150, 150], "bfloat16")


def test_saved_model_needs_its_preprocessing_named(tmp_path):
    (tmp_path / "net.keras").write_bytes(b"zip")
    with pytest.raises(BackboneError, match="needs 'preprocessing:'"):
        resolve({"name": "net.keras"}, [64, 64], "float32", base_dir=tmp_path)
    spec = resolve({"name": "net.keras", "preprocessing": "none"}, [64, 64], "float32", tmp_path)
    assert spec["id"] == "net" and len(spec["model_sha256"]) == 64


def test_spec_digest_changes_with_what_shapes_features(tmp_path):
    base = resolve({"name": "vgg16", "weights": "none"}, [64, 64], "bfloat16")
    assert spec_digest(base) == spec_digest({**base, "id": "renamed"})
    assert base["features"] == "pooled"
    changes = (
        {"image_size": [65, 64]},
        {"precision": "float32"},
        {"weights": "imagenet"},
        {"features": "map"},
    )
    for change in changes:
        assert spec_digest({**base, **change}) != spec_digest(base)
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"1")
    first = resolve({"name": "vgg16", "weights": str(weights)}, [64, 64], "bfloat16")
    weights.write_bytes(b"2")  # same path, new content: new spec
    second = resolve({"name": "vgg16", "weights": str(weights)}, [64, 64], "bfloat16")
    assert spec_digest(first) != spec_digest(second)


def test_weights_file_that_does_not_fit_says_so(tmp_path):
    import keras

    other = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "mobilenet.weights.h5"
    other.save_weights(path)
    spec = resolve({"name": "vgg16", "weights": str(path)}, [32, 32], "float32")
    with pytest.raises(BackboneError, match="does not fit vgg16"):
        build(spec)


def test_random_weights_are_the_same_in_every_build():
    spec = resolve({"name": "vgg16", "weights": "none"}, [32, 32], "float32")
    first, second = build(spec), build(spec)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
