"""Prediction pieces that need no trained model: preprocessing, folders, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tlflow import backbones, deploy, predict
from tlflow.metadata import BackboneSpec, Meta


@pytest.mark.parametrize("preprocessing", backbones.PREPROCESSING)
def test_built_in_preprocessing_equals_preprocess_input(preprocessing):
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    expected = np.asarray(backbones.preprocess_function(preprocessing)(pixels.copy()))
    affine = deploy.affine_preprocessing(preprocessing)
    if affine is None:  # the model has its preprocessing built in
        np.testing.assert_array_equal(expected, pixels)
    else:
        kernel, bias = affine
        np.testing.assert_allclose(pixels @ kernel + bias, expected, rtol=1e-5, atol=1e-5)


def test_channel_flip_of_caffe_preprocessing_is_kept():
    kernel, bias = deploy.affine_preprocessing("vgg16")
    np.testing.assert_array_equal(kernel, np.eye(3)[::-1])  # RGB -> BGR
    np.testing.assert_allclose(bias, [-103.939, -116.779, -123.68], rtol=1e-6)
    assert deploy.affine_preprocessing("none") is None


def test_list_images_walks_sub_folders_and_skips_other_files(tmp_path):
    (tmp_path / "a/b").mkdir(parents=True)
    for name in ("x.jpg", "a/y.PNG", "a/b/z.webp", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"")
    assert predict.list_images(tmp_path) == (
        ["a/b/z.webp", "a/y.PNG", "x.jpg"],
        [(".hidden.jpg", "hidden"), ("notes.txt", "not an image file (by its extension)")],
    )


def test_folder_and_model_errors_say_what_to_do(tmp_path):
    with pytest.raises(predict.PredictError, match="does not exist"):
        predict.list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(predict.PredictError, match="no image files below"):
        predict.list_images(tmp_path / "empty")
    (tmp_path / "model.keras").write_bytes(b"")
    with pytest.raises(predict.PredictError, match=r"model\.json' not found"):
        predict.predict(tmp_path / "model.keras", tmp_path, tmp_path / "out.csv")


def test_metadata_that_is_not_the_workflows_is_named_with_the_fix(tmp_path):
    (tmp_path / "model.json").write_text('{"classes": ["a", "b"]}')
    with pytest.raises(predict.PredictError, match=r"cannot read .*model\.json \(KeyError: 'backbone'\)"):
        predict.read_meta(tmp_path / "model.keras")


def test_command_line_reports_a_missing_folder(tmp_path, capsys):
    spec = {"id": "m", "image_size": [8, 8], "precision": "float32", "preprocessing": "none"}
    Meta(["a", "b"], BackboneSpec(**spec)).write(tmp_path / "model.json")
    with pytest.raises(SystemExit) as stop:
        predict.main([str(tmp_path / "model.keras"), str(tmp_path / "nope"), str(tmp_path / "o.csv")])
    assert stop.value.code == 2
    assert "image folder" in capsys.readouterr().err
