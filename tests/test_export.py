"""Exports of model.keras (ONNX, LiteRT, SavedModel) compute what it computes; the
ONNX predictor runs without TensorFlow; the export rule reruns when model.keras changes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CONFIG, snakemake, planned_jobs, write_config
from tlflow.synthetic import make_dataset

# Runs ``python -m tlflow.predict ...`` with TensorFlow and Keras unimportable.
BLOCKED = """
import runpy, sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "tensorboard"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Blocker())
sys.argv = ["tlflow.predict", *sys.argv[1:]]
runpy.run_module("tlflow.predict", run_name="__main__")
"""


def predict_without_tensorflow(model, folder, out_csv) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED, str(model), str(folder), str(out_csv)],
        capture_output=True,
        text=True,
        env=os.environ,
    )


def read_rows(path) -> dict:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def small_model(folder: Path, classes: list[str], precision: str = "float32") -> Path:
    """A model.keras of MobileNetV2 (random weights, 32x32) and a random linear head."""
    import keras
    from tlflow import backbones, deploy
    from tlflow.metadata import BackboneSpec, Meta

    spec = backbones.resolve({"name": "mobilenetv2", "weights": "none"}, [32, 32], precision)
    keras.utils.set_random_seed(0)
    units = 1 if len(classes) == 2 else len(classes)
    head = keras.Sequential(
        [
            keras.Input((2, 1280)),
            keras.layers.Flatten(),  # avg and max pooled
            keras.layers.Dense(units, name="logits"),
            keras.layers.Activation("sigmoid" if units == 1 else "softmax"),
        ]
    )
    head.save(folder / "head.h5")
    Meta(classes, BackboneSpec.from_dict(spec), [2, 1280]).write(folder / "head.json")
    deploy.deploy_model(
        folder / "head.h5", folder / "head.json", folder / "model.keras", folder / "model.json"
    )
    return folder / "model.keras"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A three-class model.keras exported in every format (export/), with its check."""
    from tlflow import export, export_check

    folder = tmp_path_factory.mktemp("export")
    model = small_model(folder, ["cat", "dog", "owl"])
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3)).astype(np.uint8)
    export.export_model(model, folder / "export", list(export.FORMATS), calibration=images[:8])
    export_check.check(
        model,
        folder / "export",
        list(export.FORMATS),
        images,
        np.arange(40) % 3,
        folder / "export/check.json",
        int8=True,
    )
    return folder


def test_every_float32_export_agrees_with_model_keras_three_classes(exported):
    check = json.loads((exported / "export/check.json").read_text())
    assert check["reference"] == "model.keras" and check["images"] == 40
    for fmt in ("onnx", "tflite", "saved_model"):
        figures = check["exports"][fmt]
        assert figures["passed"] and figures["max_abs_diff"] <= 1e-4, (fmt, figures)
        assert figures["agreement"] == 1.0 and figures["size_bytes"] > 1e6
        assert set(figures["latency_ms"]) == {"batch_1", "batch_32"}
    int8 = check["exports"]["tflite_int8"]
    assert {"accuracy_change", "log_loss_change"} <= set(int8) and "passed" not in int8
    assert int8["size_bytes"] < check["exports"]["tflite"]["size_bytes"] / 2


def test_the_exported_graph_computes_in_float32_and_rebuilds_only_another_precision(tmp_path):
    """A bfloat16 model is rebuilt in float32 for export; a float32 one is exported with
    its own layers (no second copy of its weights), the same probabilities as model.keras."""
    import keras
    from tlflow import export

    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    for precision in ("float32", "bfloat16"):
        folder = tmp_path / precision
        folder.mkdir()
        saved = keras.models.load_model(small_model(folder, ["cat", "dog"], precision), compile=False)
        fixed = export.exportable(saved, (32, 32))
        assert {layer.dtype_policy.name for layer in fixed._flatten_layers()} == {"float32"}
        shared = {id(layer) for layer in saved._flatten_layers()} & {id(x) for x in fixed._flatten_layers()}
        assert bool(shared) == (precision == "float32"), precision
        if precision == "float32":
            np.testing.assert_allclose(
                fixed.predict(images, verbose=0), saved.predict(images, verbose=0), atol=1e-6
            )


def test_a_mismatching_export_fails_with_its_figures(exported, tmp_path):
    """The export of a model whose head moved must fail the check against the
    original, naming the format and its figures, and leave no check.json."""
    import shutil

    import keras
    from tlflow import export, export_check

    model = keras.models.load_model(exported / "model.keras", compile=False)
    head = model.layers[-1]  # the head: the model's last layer without test-time views
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias + [3.0, 0.0, 0.0]])  # favours the first class
    model.save(tmp_path / "shifted.keras")
    shutil.copy(exported / "model.json", tmp_path / "shifted.json")
    export.export_model(tmp_path / "shifted.keras", tmp_path / "export", ["onnx"])
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    with pytest.raises(export_check.ExportMismatchError, match=r"(?s)onnx differ from .*max_abs_diff"):
        export_check.check(
            exported / "model.keras",
            tmp_path / "export",
            ["onnx"],
            images,
            np.zeros(8, int),
            tmp_path / "check.json",
        )
    assert not (tmp_path / "check.json").exists()


def test_onnx_predictor_runs_without_tensorflow_and_carries_class_names(exported, tmp_path):
    from tlflow import predict

    make_dataset(tmp_path / "data", {"new": 3}, classes=3, size=40)
    folder = tmp_path / "data/new"
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    result = predict_without_tensorflow(exported / "export/model.onnx", folder, tmp_path / "onnx.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    predict.predict(exported / "model.keras", folder, tmp_path / "keras.csv")
    onnx, keras = read_rows(tmp_path / "onnx.csv"), read_rows(tmp_path / "keras.csv")
    assert list(onnx) == list(keras) and len(onnx) == len([p for p in folder.rglob("*") if p.is_file()])
    assert "cannot identify image file" in onnx["broken.jpg"]["error"]
    columns = ["prob_cat", "prob_dog", "prob_owl"]
    for name, row in keras.items():
        if name != "broken.jpg":
            assert onnx[name]["predicted_class"] == row["predicted_class"]
            np.testing.assert_allclose(
                [float(onnx[name][c]) for c in columns], [float(row[c]) for c in columns], atol=1e-4
            )


def test_onnx_predictor_names_a_damaged_model(exported, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    (tmp_path / "model.json").write_text((exported / "export/model.json").read_text())
    (tmp_path / "a.png").write_bytes(b"")
    result = predict_without_tensorflow(tmp_path / "model.onnx", tmp_path, tmp_path / "o.csv")
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "model.onnx" in result.stderr
    assert "is blocked" not in result.stderr


@pytest.mark.workflow
def test_export_rule_two_classes_with_test_time_views_and_its_reruns(tmp_path):
    """The workflow's exports of a two-class model that averages over the flip; the
    rule reruns when model.keras changes, and not otherwise."""
    workdir = tmp_path / "run"
    make_dataset(workdir / "data", {"train": 10, "validation": 6}, classes=2, size=32)
    config = {
        **TINY_CONFIG,
        "splits": ["train", "validation"],
        "augmentation": {"test_time": ["flip"]},
        "export": {
            "formats": ["onnx", "tflite", "saved_model"],
            "int8": True,
            "calibration_images": 8,
            "check_images": 9,
        },
    }
    write_config(workdir, config)
    snakemake(workdir)
    export = workdir / "results/vgg16/export"
    check = json.loads((export / "check.json").read_text())
    manifest = workdir / "results/vgg16/features/validation_manifest.csv"  # no test split
    assert check["images"] == 9 < len(read_rows(manifest))  # check_images of the 12
    assert all(check["exports"][f]["passed"] for f in ("onnx", "tflite", "saved_model")), check
    assert json.loads((export / "model.json").read_text())["augmentation"]["test_time"] == ["flip"]
    assert planned_jobs(workdir) == {}
    write_config(workdir, {**config, "export": {**config["export"], "check_images": 8}})
    assert planned_jobs(workdir) == {"export_model": 1}  # an export setting: the exports only
    write_config(workdir, config)
    os.utime(workdir / "results/vgg16/model.keras")  # as a redeployed model
    assert planned_jobs(workdir) == {"export_model": 1}


def test_the_check_images_are_spread_over_the_classes(tmp_path):
    """A manifest lists its rows class by class: the check's sample takes every class,
    and a split no larger than the count is taken whole."""
    from tlflow import export_check, manifest

    make_dataset(tmp_path / "data", {"test": 10}, classes=3, size=16)
    rows = [
        {
            "file": str(path.relative_to(tmp_path / "data")),
            "class": path.parent.name,
            "label": label,
            "sha256": "",
        }
        for label, folder in enumerate(sorted((tmp_path / "data/test").iterdir()))
        for path in sorted(folder.iterdir())
    ]
    (tmp_path / "manifest.csv").write_text(manifest.manifest_text(rows, manifest.MANIFEST_FIELDS))
    images, labels = export_check.manifest_images(tmp_path / "manifest.csv", tmp_path / "data", (16, 16), 6)
    assert images.shape == (6, 16, 16, 3) and sorted(labels) == [0, 0, 1, 1, 2, 2]
    _, whole = export_check.manifest_images(tmp_path / "manifest.csv", tmp_path / "data", (16, 16), 30)
    assert len(whole) == 30
