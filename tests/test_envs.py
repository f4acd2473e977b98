"""envs/*.yaml: the conda environments of the rules parse, pin every package, and
pin the same versions as requirements.txt (which the venv and these tests use);
the rules name them as Snakemake reads the workflow, the GPU one exactly when
the config asks for GPUs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
# Tools of the environment itself, not packages the workflow imports.
UNPINNED_OK = {"pip"}
# A CUDA build (envs/keras-gpu.yaml) is pinned like the CPU build requirements.txt holds.
CPU_BUILD = {"tensorflow": "tensorflow-cpu"}
# The TensorFlow rules whose environment follows each config section's `gpus:`.
GPU_RULES = {
    "extraction": {"extract_shard", "extract_views"},
    "head": {"train_head"},
    "fine_tune": {"fine_tune", "evaluate_fine_tuned"},
    "predict": {"predict"},
}
# Prints {rule: its conda env file, or ""} of the workflow as Snakemake reads it (a fresh
# Python: Snakemake changes the working directory and sys.path as it reads).
READ_ENVS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

snakefile, workdir, config = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    rules = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[workdir / "config.yaml"], config=config),
        snakefile=Path(snakefile),
        workdir=workdir,
    )._workflow.rules
    envs = {
        r.name: str((Path(r.snakefile).parent / r.conda_env).resolve()) if r.conda_env else ""
        for r in rules
        if not r.norun  # a target list such as rule all runs nothing
    }
print(json.dumps(envs))
"""


def normalise(name: str) -> str:
    """PyPI's name normalisation (PEP 503), extras dropped: Pillow == pillow."""
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def requirements() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.txt: '{line}' is not pinned with =="
            pins[normalise(name)] = version.strip()
    return pins


def env_packages(path: Path) -> dict[str, tuple[str, str]]:
    """{name: (version, 'conda' or 'pip')} of one environment file."""
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and env.get("dependencies"), f"{path.name}: no dependencies"
    assert env.get("channels"), f"{path.name}: name the channels, e.g. conda-forge"
    packages = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert list(dep) == ["pip"], f"{path.name}: unexpected section {dep}"
            for line in dep["pip"]:
                name, sep, version = line.partition("==")
                assert sep, f"{path.name}: pip package '{line}' is not pinned with =="
                packages[normalise(name)] = (version.strip(), "pip")
        else:
            match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)\s*(?:=+\s*([^\s=]+))?", dep.strip())
            assert match, f"{path.name}: cannot read the conda dependency '{dep}'"
            name, version = match.groups()
            if normalise(name) not in UNPINNED_OK:
                assert version, f"{path.name}: conda package '{dep}' has no version"
            packages[normalise(name)] = (version or "", "conda")
    return packages


@pytest.fixture(scope="module")
def rule_envs(tmp_path_factory) -> dict[str | None, dict[str, str]]:
    """{section given gpus: 1 (None: none): {rule: env file}} on the .test case,
    the four read side by side."""
    reads = {}
    for section in (None, *GPU_RULES):
        workdir = tmp_path_factory.mktemp(f"envs-{section}")
        shutil.copy(REPO / ".test/config/config.yaml", workdir / "config.yaml")
        shutil.copytree(REPO / ".test/data", workdir / ".test/data")  # as the config names it
        config = {section: {"gpus": 1}} if section else {}
        command = [sys.executable, "-c", READ_ENVS, str(REPO / "Snakefile"), str(workdir), json.dumps(config)]
        reads[section] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    envs = {}
    for section, process in reads.items():
        out, err = process.communicate()
        assert process.returncode == 0, err[-3000:]
        envs[section] = json.loads(out.splitlines()[-1])
    return envs


def test_there_are_environments():
    assert ENVS, "envs/*.yaml: no environment files"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_environment_pins_agree_with_requirements(path):
    pins = requirements()
    packages = env_packages(path)
    assert "python" in packages, f"{path.name}: pin python (the venv's minor version)"
    for name, (version, source) in packages.items():
        if name in ("python", *UNPINNED_OK):
            continue
        name = CPU_BUILD.get(name, name)
        assert name in pins, f"{path.name}: {name} is not in requirements.txt; add it there too"
        if source == "pip":
            assert version == pins[name], (
                f"{path.name}: {name}=={version}, requirements.txt says {pins[name]}"
            )
        else:  # conda: "1.2" pins 1.2.*, so compare as a prefix
            assert pins[name] == version or pins[name].startswith(version + "."), (
                f"{path.name}: {name}={version}, requirements.txt says {pins[name]}"
            )


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_environment_python_can_run_snakemakes_script_preamble(path):
    """A script: job imports Snakemake's own snakemake.script in the env's Python,
    so that Python must be one Snakemake supports (3.11 or later for Snakemake 9)."""
    version, _ = env_packages(path)["python"]
    major, minor = (int(part) for part in version.split(".")[:2])
    assert (major, minor) >= (3, 11), f"{path.name}: python={version} is older than 3.11"


def test_every_rule_names_an_existing_environment(rule_envs):
    for section, envs in rule_envs.items():
        assert envs, "no rules found"
        missing = sorted(rule for rule, env in envs.items() if not env)
        assert not missing, f"rules without a conda: directive: {missing}"
        for rule, env in envs.items():
            assert Path(env).exists(), f"rule {rule} ({section} on GPUs): conda env {env} does not exist"
            assert Path(env).parent == REPO / "envs", f"rule {rule}: keep environments in envs/"


def test_every_environment_is_used(rule_envs):
    used = {env for envs in rule_envs.values() for env in envs.values()}
    unused = [p.name for p in ENVS if str(p.resolve()) not in used]
    assert not unused, f"envs not used by any rule: {unused}"


def test_the_gpu_environment_is_used_exactly_where_the_config_asks_for_gpus(rule_envs):
    gpu = str(REPO / "envs/keras-gpu.yaml")
    assert gpu not in rule_envs[None].values(), "no GPUs asked for, yet the CUDA build is used"
    for section, rules in GPU_RULES.items():
        on_gpu = {name for name, env in rule_envs[section].items() if env == gpu}
        assert on_gpu == rules, f"{section}: gpus: 1 gives the CUDA build to {on_gpu}"
        for rule in rules:
            assert rule_envs[None][rule] == str(REPO / "envs/keras.yaml")


def test_the_gpu_environment_is_the_cpu_one_with_tensorflows_cuda_build():
    cpu, gpu = (env_packages(REPO / f"envs/{name}.yaml") for name in ("keras", "keras-gpu"))
    assert gpu.pop("tensorflow") == cpu.pop("tensorflow-cpu")
    assert gpu == cpu
    dependencies = yaml.safe_load((REPO / "envs/keras-gpu.yaml").read_text())["dependencies"]
    assert "tensorflow[and-cuda]==" in str(dependencies), "the CUDA libraries come with this extra"
