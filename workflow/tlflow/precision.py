"""``extraction.precision: auto``: bfloat16 where the hardware computes it natively.

On a CPU with AMX or AVX512_BF16, TensorFlow's oneDNN kernels run a bfloat16
convolution about 3-5x as fast as float32; elsewhere bfloat16 is emulated and
gains nothing. The choice is made once, on the machine that reads the workflow
(the submit host), and recorded in the backbone spec, so every job computes the
same features even on compute nodes that differ.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# Flags of /proc/cpuinfo that mean native bfloat16 arithmetic.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# NVIDIA GPUs compute bfloat16 natively from compute capability 8.0 (Ampere).
BF16_GPU_CAPABILITY = 8.0


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags; empty where /proc/cpuinfo does not exist (macOS)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    return {
        flag
        for line in text.splitlines()
        if line.startswith(("flags", "Features"))
        for flag in line.split(":", 1)[1].split()
    }


def gpu_capabilities() -> list[float]:
    """Compute capabilities of the NVIDIA GPUs this host sees (none without nvidia-smi)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
        return [float(line) for line in out.split()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


def resolve(requested: str, flags=None, capabilities=None) -> tuple[str, str]:
    """(``float32`` or ``bfloat16``, why) for the configured precision.

    ``auto`` follows this machine's hardware, never the config's resources, so
    that asking for a GPU or more threads reruns nothing: its GPUs if it has any,
    else its CPU. ``flags`` and ``capabilities`` default to this host's; tests
    pass their own. An explicit ``float32`` or ``bfloat16`` is kept as it is.
    """
    if requested != "auto":
        return requested, "set in the config"
    capabilities = gpu_capabilities() if capabilities is None else capabilities
    if capabilities:
        if min(capabilities) >= BF16_GPU_CAPABILITY:
            return "bfloat16", f"this machine's GPUs (compute capability {min(capabilities)}) compute bfloat16"
        return "float32", (
            f"this machine's GPUs have compute capability {min(capabilities)}; "
            "bfloat16 needs 8.0 (Ampere) or newer"
        )
    flags = cpu_flags() if flags is None else set(flags)
    native = sorted(flags.intersection(BF16_CPU_FLAGS))
    if native:
        return "bfloat16", f"this CPU computes bfloat16 natively ({', '.join(native)})"
    return "float32", "this CPU has neither amx_bf16 nor avx512_bf16: bfloat16 would be emulated"
