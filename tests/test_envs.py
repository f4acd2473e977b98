"""envs/*.yaml: the conda environments of the rules parse, pin every package, and
pin the same versions as requirements.txt (which the venv and these tests use)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
# Tools of the environment itself, not packages the workflow imports.
UNPINNED_OK = {"pip"}


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


def rule_envs() -> dict[str, str]:
    """{rule: env file named by its conda: directive} across workflow/rules/*.smk."""
    found = {}
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            rule = block.split(":", 1)[0].strip()
            conda = re.search(r"^    conda:\n\s+\"([^\"]+)\"", block, re.M)
            found[rule] = str((smk.parent / conda.group(1)).resolve()) if conda else ""
    return found


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
        assert name in pins, f"{path.name}: {name} is not in requirements.txt; add it there too"
        if source == "pip":
            assert version == pins[name], f"{path.name}: {name}=={version}, requirements.txt says {pins[name]}"  # fmt: skip
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


def test_every_rule_names_an_existing_environment():
    envs = rule_envs()
    assert envs, "no rules found"
    missing = sorted(rule for rule, env in envs.items() if not env)
    assert not missing, f"rules without a conda: directive: {missing}"
    for rule, env in envs.items():
        assert Path(env).exists(), f"rule {rule}: conda env {env} does not exist"
        assert Path(env).parent == REPO / "envs", f"rule {rule}: keep environments in envs/"


def test_every_environment_is_used():
    used = set(rule_envs().values())
    unused = [p.name for p in ENVS if str(p.resolve()) not in used]
    assert not unused, f"envs not used by any rule: {unused}"
