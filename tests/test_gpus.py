"""GPUs shared between jobs: every process that imports tlflow (a job's script, the
prediction command) has TensorFlow allocate GPU memory as it needs it."""

import os
import subprocess
import sys

import pytest

SHOW = "import os, tlflow; print(os.environ['TF_FORCE_GPU_ALLOW_GROWTH'])"


@pytest.mark.parametrize(("given", "seen"), [(None, "true"), ("false", "false")])
def test_tensorflow_grows_gpu_memory_unless_told_otherwise(given, seen):
    env = {k: v for k, v in os.environ.items() if k != "TF_FORCE_GPU_ALLOW_GROWTH"}
    if given:
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = given
    shown = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True)
    assert shown.stdout.strip() == seen, shown.stderr
