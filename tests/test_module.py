"""Deployed as Snakemake workflows are used: `snakedeploy deploy-workflow` writes a
user folder whose Snakefile pulls this workflow in as a module, and the user's own
config and images (here the .test case) run the whole workflow there.

The tests have no internet: git fetches the GitHub address from a local tagged
copy of this checkout (``url.<copy>.insteadOf``), for snakedeploy and for
Snakemake's own fetch of the module alike, so the user's folder is exactly what
a deployment from GitHub writes, used without an edit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, SNAKEMAKE, run

# Every test here runs Snakemake (`make unit` leaves them out).
pytestmark = pytest.mark.workflow

SNAKEDEPLOY = str(Path(sys.executable).with_name("snakedeploy"))
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
NAME = "tlflow"
GITHUB = f"https://github.com/example/{NAME}"


def tagged_repository(path: Path, version: str = VERSION) -> Path:
    """This checkout's files (tracked and new, not ignored) as a git repository
    tagged v<version>, what a release on GitHub is."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO)
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO / name).is_file():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, path / name)
    pyproject = path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'version = "{VERSION}"', f'version = "{version}"'))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    run([*git, "init", "--quiet"], path)
    run([*git, "add", "--all"], path)
    run([*git, "commit", "--quiet", "--message", f"release {version}"], path)
    run([*git, "tag", f"v{version}"], path)
    return path


def offline_github(repository: Path, cache: Path) -> dict:
    """An environment in which git fetches GITHUB from ``repository``, and
    Snakemake keeps its fetched sources in ``cache``."""
    return {
        **os.environ,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{repository.as_uri()}.insteadOf",
        "GIT_CONFIG_VALUE_0": GITHUB,
        "XDG_CACHE_HOME": str(cache),
    }


def deploy(tmp_path: Path, version: str = VERSION) -> tuple[Path, dict]:
    """snakedeploy's folder for the tagged repository "on GitHub", with the .test
    case as the user's config and images; and the environment to run it in."""
    env = offline_github(tagged_repository(tmp_path / NAME, version), tmp_path / "cache")
    user = tmp_path / "project"
    run([SNAKEDEPLOY, "deploy-workflow", GITHUB, user, "--tag", f"v{version}"], tmp_path, env=env)
    text = (user / "workflow/Snakefile").read_text()
    assert f"module {NAME}:" in text and f"use rule * from {NAME}" in text, text
    # The catalog's layout: snakedeploy names workflow/Snakefile of the tag.
    assert f'github("example/{NAME}", path="workflow/Snakefile", tag="v{version}")' in text, text
    shutil.copy(REPO / ".test/config/config.yaml", user / "config/config.yaml")
    shutil.copytree(REPO / ".test/data", user / ".test/data")  # as the config names it
    return user, env


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    user, env = deploy(tmp_path_factory.mktemp("module"))
    return user, env, run([SNAKEMAKE, "--cores", "2"], user, env=env)


def test_snakedeploy_writes_the_users_folder(deployed):
    user, _, _ = deployed
    assert (user / "LICENSE").read_text().startswith("MIT License")
    assert (user / "profiles/default/config.yaml").exists()
    assert (user / "config/README.md").exists(), "the config's documentation comes along"


def test_the_module_runs_the_whole_workflow_in_the_users_folder(deployed):
    user, _, result = deployed
    assert f"tlflow workflow version {VERSION}" in result.stderr + result.stdout
    results = user / "results/vgg16"
    for path in (
        "model.keras",
        "head/head.h5",
        "evaluation/metrics.json",
        "plots/loss.png",
        "audit/audit.json",
    ):
        assert (results / path).stat().st_size > 0, path
    assert f"tlflow {VERSION}" in (results / "evaluation/summary.html").read_text()
    repository = user.parent / NAME
    assert not (repository / "results").exists() and not (repository / ".snakemake").exists()
    assert not (user / "workflow/rules").exists(), "the rules come from the tag, not a copy"


def test_the_users_config_is_checked_by_the_workflows_schema(deployed):
    user, env, _ = deployed
    result = run([SNAKEMAKE, "-n", "--config", "image_size=large"], user, check=False, env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error validating config file" in output
    # The workflow's schema, with its description of the key.
    assert "schema['properties']['image_size']" in output
    assert "height and width every image is resized" in output


def test_a_module_of_another_version_than_the_installed_package_stops_with_the_fix(tmp_path):
    user, env = deploy(tmp_path, version="9.9.9")
    result = run([SNAKEMAKE, "-n"], user, check=False, env=env)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    pyproject = f"https://raw.githubusercontent.com/example/{NAME}/v9.9.9/pyproject.toml"
    assert f"the workflow is version 9.9.9 ({pyproject})" in output
    assert f"is {VERSION}; install the same version" in output
