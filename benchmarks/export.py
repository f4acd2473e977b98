"""Benchmark: the exports of model.keras (issue 23) and the ONNX predictor.

Runs the workflow on a real image set with EfficientNet-Lite0 at 128x128, every
export format and the int8 LiteRT model on, then prints check.json's figures
(parity, agreement, size, latency at batch 1 and 32, int8 accuracy and log loss
change, export time per format), and times `python -m tlflow.predict` on 10
images as whole processes, model.onnx against model.keras, side by side.

    .venv/bin/python benchmarks/export.py [--data ../shared/data/catsdogs-2k]
        [--backbone ../shared/models/efficientnet_lite0_notop.keras] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from snakemake_command import workflow_command

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run_workflow(workdir: Path, data: Path, backbone: Path) -> None:
    config = {
        "data_dir": str(data.resolve()),
        "splits": ["train", "validation"],
        "image_size": [128, 128],
        "backbones": [{"name": str(backbone.resolve()), "id": "efficientnet_lite0", "preprocessing": "none"}],
        "extraction": {"precision": "float32"},
        "export": {"formats": ["onnx", "tflite", "saved_model"], "int8": True, "threads": 2},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    subprocess.run(
        workflow_command(workdir, "--cores", "2", "results/efficientnet_lite0/export/check.json"),
        check=True,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def predictor_seconds(model: Path, folder: Path, out: Path, repeats: int = 3) -> float:
    """Median wall time of `python -m tlflow.predict` as a whole process (start-up too)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "tlflow.predict", str(model), str(folder), str(out), "--threads", "2"],
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data/catsdogs-2k")
    parser.add_argument("--backbone", type=Path, default=SHARED / "models/efficientnet_lite0_notop.keras")
    parser.add_argument("--workdir", type=Path, help="folder to work in (default: a temporary one)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tlflow-export-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; working in {workdir}")
    started = time.perf_counter()
    run_workflow(workdir, args.data, args.backbone)
    print(f"workflow to the exports: {time.perf_counter() - started:.0f} s")
    results = workdir / "results/efficientnet_lite0"
    check = json.loads((results / "export/check.json").read_text())
    print(f"\nreference: {check['reference']}, {check['images']} validation images\n")
    print(
        "| format | max abs diff | agreement | size (MB) | ms/image batch 1 | ms/image batch 32 | export (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    keras = check["keras"]
    print(
        f"| model.keras | - | - | {keras['size_bytes'] / 1e6:.1f} | {keras['latency_ms']['batch_1']:.2f} "
        f"| {keras['latency_ms']['batch_32']:.2f} | - |"
    )
    for name, figures in check["exports"].items():
        print(
            f"| {name} | {figures['max_abs_diff']:.1e} | {figures['agreement']:.4f} "
            f"| {figures['size_bytes'] / 1e6:.1f} | {figures['latency_ms']['batch_1']:.2f} "
            f"| {figures['latency_ms']['batch_32']:.2f} | {check['export_seconds'][name]:.1f} |"
        )
    int8 = check["exports"]["tflite_int8"]
    print(
        f"\nint8: accuracy change {int8['accuracy_change']:+.4f}, "
        f"log loss change {int8['log_loss_change']:+.4f}"
    )
    folder = workdir / "ten"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for path in sorted((args.data / "validation").rglob("*.jpg"))[::80][:10]:
        shutil.copy(path, folder / f"{path.parent.name}_{path.name}")
    onnx = predictor_seconds(results / "export/model.onnx", folder, workdir / "onnx.csv")
    keras_s = predictor_seconds(results / "model.keras", folder, workdir / "keras.csv")
    print(
        f"\npredictor, start-up + 10 images (median of 3 whole processes): model.onnx {onnx:.2f} s, "
        f"model.keras {keras_s:.2f} s: {keras_s / onnx:.1f}x faster"
    )


if __name__ == "__main__":
    main()
