"""What a run leaves, by config (tlflow.targets), and that a finished run has it all."""

from __future__ import annotations

import pytest
from test_plan import validated
from tlflow import targets


def test_the_targets_follow_the_switches_of_the_config():
    plain = targets.final(validated(), ["vgg16"])
    assert "results/vgg16/model.keras" in plain and "results/vgg16/audit/review.html" in plain
    assert not [path for path in plain if "fine_tuned" in path or "export" in path or "comparison" in path]
    audit_off = targets.final(validated(audit={"enabled": False}), ["vgg16"])
    assert not [path for path in audit_off if "/audit/" in path]
    tuned = targets.final(validated(fine_tune={"enabled": True}, export={"formats": ["onnx"]}), ["a", "b"])
    assert tuned[:2] == ["results/comparison.csv", "results/comparison.png"]
    for backbone in ("a", "b"):
        for path in ("fine_tuned/model.keras", "export/check.json", "fine_tuned/export/check.json"):
            assert f"results/{backbone}/{path}" in tuned


def test_the_export_files_name_each_format_and_the_int8_model():
    files = targets.export_files(validated(export={"formats": ["onnx", "tflite"], "int8": True}), "out")
    assert set(files) == {"onnx", "tflite", "int8", "meta", "check"}
    assert files["onnx"] == "out/model.onnx" and files["check"] == "out/check.json"
    assert not targets.exports(validated(export={"formats": []}))


@pytest.mark.workflow
def test_a_finished_run_has_every_target(finished_run):
    missing = [path for path in targets.final(validated(), ["vgg16"]) if not (finished_run / path).exists()]
    assert not missing
