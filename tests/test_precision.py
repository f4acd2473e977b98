"""`extraction.precision: auto`: chosen from the hardware's flags, kept when pinned."""

import pytest

from tlflow.precision import cpu_flags, resolve

INTEL_SPR = "fpu vme avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
ICELAKE = "fpu vme avx2 avx512f avx512_vnni"  # AVX-512 without bfloat16
AMD_ZEN3 = "fpu vme avx2 fma sha_ni"
ZEN4 = "fpu avx2 avx512f avx512_bf16"


@pytest.mark.parametrize(
    "flags, expected",
    [(INTEL_SPR, "bfloat16"), (ZEN4, "bfloat16"), (ICELAKE, "float32"), (AMD_ZEN3, "float32"), ("", "float32")],
)
def test_auto_follows_the_cpu_flags(flags, expected):
    chosen, why = resolve("auto", flags=flags.split(), capabilities=[])
    assert chosen == expected
    assert ("natively" in why) == (expected == "bfloat16")


@pytest.mark.parametrize("pinned", ["float32", "bfloat16"])
def test_a_pinned_precision_is_kept_whatever_the_hardware(pinned):
    for flags in (INTEL_SPR, AMD_ZEN3):
        assert resolve(pinned, flags=flags.split(), capabilities=[])[0] == pinned
    assert resolve(pinned, capabilities=[7.0])[0] == pinned


def test_a_machine_with_gpus_follows_their_compute_capability_not_the_cpu():
    assert resolve("auto", flags=AMD_ZEN3.split(), capabilities=[8.0, 9.0])[0] == "bfloat16"
    assert resolve("auto", flags=INTEL_SPR.split(), capabilities=[7.5, 8.6])[0] == "float32"


def test_cpu_flags_reads_intel_and_arm_cpuinfo(tmp_path):
    intel = tmp_path / "intel"
    intel.write_text(f"processor\t: 0\nmodel name\t: Xeon\nflags\t\t: {INTEL_SPR}\n\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 sve\n")
    assert {"amx_bf16", "avx512_bf16"} <= cpu_flags(intel)
    assert "bf16" in cpu_flags(arm) and resolve("auto", cpu_flags(arm), [])[0] == "float32"
    assert cpu_flags(tmp_path / "missing") == set()
