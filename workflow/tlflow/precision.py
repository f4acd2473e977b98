"""``extraction.precision: auto``: the faster of float32 and bfloat16, by measurement.

What bfloat16 pays depends on the backbone as much as on the hardware: on one AMX
CPU it ran VGG16 6x as fast as float32 but EfficientNet-Lite0 at 0.78x, and where
bfloat16 is emulated it gains nothing. So ``auto`` times the backbone itself in
both precisions, one batch at the configured size after a warm-up, on the
machine that plans the run (the submit host), and keeps the faster. The timing
runs in a child process, so the planning process never holds TensorFlow; the
decision is cached per (backbone spec without its precision, batch size, this
machine's CPU and GPU models, TensorFlow and Keras versions), so each is timed
once, and never depends on resources (threads, GPUs requested), which rerun
nothing. The choice is recorded in the spec, so every job computes the same
features even on compute nodes that differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from .atomic import atomic_path
from .backbones import BackboneError

PRECISIONS = ("float32", "bfloat16")
# bfloat16 is kept only when it is this much faster: float32 is the more exact, and
# a smaller difference is within the noise of one batch on a shared machine.
BFLOAT16_GAIN = 1.05
# Timed rounds after the warm-up, each precision's batch in turn: at least
# MIN_ROUNDS, then more until TIMED_SECONDS are spent (at most MAX_ROUNDS). The
# fastest batch of each counts: a fast backbone gets many tries, so another
# process busy on the same cores for a moment does not decide.
MIN_ROUNDS, MAX_ROUNDS, TIMED_SECONDS = 3, 25, 4.0
# Where the decisions are kept, unless TLFLOW_PRECISION_CACHE names another file
# (one cache shared by several working directories of a machine).
CACHE_ENV = "TLFLOW_PRECISION_CACHE"


def machine() -> dict:
    """What the timing ran on: the CPU model and the NVIDIA GPUs' names (if any)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # macOS, Windows
        import platform

        cpu = platform.processor() or platform.machine()
    try:
        gpus = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        gpus = []
    return {"cpu": cpu, "gpus": [gpu.strip() for gpu in gpus if gpu.strip()]}


def versions() -> dict:
    """Installed versions of what computes the features, read without importing them."""
    found = {}
    for package in ("tensorflow", "tensorflow-cpu", "keras"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def cache_key(spec: dict, batch_size: int) -> str:
    """The digest that names a decision: of the spec without its id and precision
    (neither changes the arithmetic), the batch size, machine() and versions()."""
    shaping = {k: v for k, v in spec.items() if k not in ("id", "precision")}
    key = {"spec": shaping, "batch_size": batch_size, "machine": machine(), "versions": versions()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(state_dir) -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(state_dir, "precision.json"))


def _read_cache(path: Path) -> dict:
    """The cached decisions; an unreadable cache is only bookkeeping: time again."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def timed(spec: dict, batch_size: int) -> dict[str, float]:
    """Seconds per batch of ``spec`` in each precision, timed in a child process.

    Raises BackboneError when the backbone cannot be built (the child's message).
    """
    workflow = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [workflow, os.environ.get("PYTHONPATH")])),
    }
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = subprocess.run(
        [sys.executable, "-m", "tlflow.precision", json.dumps(spec), str(batch_size)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = result.stdout.strip().splitlines()
    answer = json.loads(lines[-1]) if result.returncode == 0 and lines else {}
    if "refused" in answer:
        raise BackboneError(answer["refused"])
    if "seconds" not in answer:
        raise RuntimeError(result.stderr.strip()[-2000:] or f"exit status {result.returncode}")
    return answer["seconds"]


def choose(seconds: dict[str, float]) -> str:
    """bfloat16 when it is BFLOAT16_GAIN times as fast as float32, else float32."""
    return "bfloat16" if seconds["float32"] >= BFLOAT16_GAIN * seconds["bfloat16"] else "float32"


def _figures(seconds: dict[str, float], batch_size: int) -> str:
    return ", ".join(f"{p} {batch_size / seconds[p]:.1f} images/s" for p in PRECISIONS)


def decide(requested: str, spec: dict, batch_size: int, state_dir) -> tuple[str, str]:
    """(``float32`` or ``bfloat16``, why) of backbone ``spec`` for the configured precision.

    An explicit ``float32`` or ``bfloat16`` is kept and nothing is timed. ``auto``
    reads the cache (cache_path) and times the backbone (``timed``) only when it
    has no decision for this key. Where the timing cannot run (TensorFlow not
    installed where ``snakemake`` runs), float32 is chosen and not cached.
    """
    if requested != "auto":
        return requested, "set in the config"
    path, key = cache_path(state_dir), cache_key(spec, batch_size)
    cached = _read_cache(path).get(key)
    if cached:
        chosen, seconds = cached["precision"], cached["seconds"]
        return (
            chosen,
            f"the faster where timed on this machine: {_figures(seconds, batch_size)}; cached in {path}",
        )
    try:
        seconds = timed(spec, batch_size)
    except RuntimeError as error:
        return "float32", (
            f"bfloat16 could not be timed here ({(str(error).splitlines() or [''])[-1][:200]}); set "
            "'extraction: precision:' to pin it"
        )
    chosen = choose(seconds)
    decisions = {**_read_cache(path), key: {"precision": chosen, "seconds": seconds}}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(decisions, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return chosen, f"the faster on this machine, timed now: {_figures(seconds, batch_size)}"


def _time_both(spec: dict, batch_size: int) -> dict[str, float]:
    """In this process: build the backbone in each precision, warm each up on two
    batches, then time them in turns; each precision's fastest batch."""
    import numpy as np

    from . import backbones

    # Speed does not depend on the weights' values: time a keras.applications
    # backbone with random ones, so planning downloads and reads nothing.
    timing = {**spec, "weights": "none"} if "application" in spec else spec
    timing.pop("weights_sha256", None)
    height, width = spec["image_size"]
    batch = np.random.default_rng(0).uniform(0, 255, (batch_size, height, width, 3)).astype(np.float32)
    batch = backbones.preprocess_function(spec["preprocessing"])(batch)
    models = {p: backbones.build({**timing, "precision": p}) for p in PRECISIONS}
    for model in [*models.values()] * 2:
        model.predict_on_batch(batch)
    seconds = {p: [] for p in PRECISIONS}
    started = time.perf_counter()
    for rounds in range(1, MAX_ROUNDS + 1):
        for p, model in models.items():
            start = time.perf_counter()
            model.predict_on_batch(batch)
            seconds[p].append(time.perf_counter() - start)
        if rounds >= MIN_ROUNDS and time.perf_counter() - started > TIMED_SECONDS:
            break
    return {p: min(found) for p, found in seconds.items()}


def main(argv=None) -> None:
    """The timing child: ``python -m tlflow.precision SPEC_JSON BATCH_SIZE`` prints
    one JSON line, ``{"seconds": {...}}`` or ``{"refused": message}``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("spec", type=json.loads)
    parser.add_argument("batch_size", type=int)
    args = parser.parse_args(argv)
    try:
        print(json.dumps({"seconds": _time_both(args.spec, args.batch_size)}))
    except BackboneError as error:
        print(json.dumps({"refused": str(error)}))


if __name__ == "__main__":
    main()
