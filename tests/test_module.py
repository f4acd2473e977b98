"""Deployed as Snakemake workflows are used: `snakedeploy deploy-workflow` writes a
user folder whose Snakefile pulls this workflow in as a module, and the user's own
config and images (here the .test case) run the whole workflow there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, SNAKEMAKE, run

SNAKEDEPLOY = str(Path(sys.executable).with_name("snakedeploy"))
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
NAME = "tlflow"


def tagged_repository(path: Path, version: str = VERSION) -> Path:
    """This checkout's files (tracked and new, not ignored) as a git repository
    tagged v<version>, what a release on GitHub is."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO)
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO / name).is_file():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, path / name)
    pyproject = path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'version = "{VERSION}"', f'version = "{version}"'))  # fmt: skip
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    run([*git, "init", "--quiet"], path)
    run([*git, "add", "--all"], path)
    run([*git, "commit", "--quiet", "--message", f"release {version}"], path)
    run([*git, "tag", f"v{version}"], path)
    return path


def deploy(tmp_path: Path, version: str = VERSION) -> Path:
    """snakedeploy's folder for the tagged repository, with the .test case as the
    user's config and images."""
    repository = tagged_repository(tmp_path / NAME, version)
    user = tmp_path / "project"
    run([SNAKEDEPLOY, "deploy-workflow", repository, user, "--tag", f"v{version}"], tmp_path)
    snakefile = user / "workflow/Snakefile"
    text = snakefile.read_text()
    assert f"module {NAME}:" in text and f"use rule * from {NAME}" in text, text
    # From GitHub, snakedeploy names the tagged file: github("owner/name",
    # path="Snakefile", tag=...). From a local folder it writes the bare
    # "Snakefile", which Snakemake reads beside the deployed file, i.e. itself:
    # name the repository's instead.
    snakefile.write_text(text.replace('"Snakefile"', f'"{repository}/Snakefile"'))
    shutil.copy(REPO / ".test/config/config.yaml", user / "config/config.yaml")
    shutil.copytree(REPO / ".test/data", user / ".test/data")  # as the config names it
    return user


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    user = deploy(tmp_path_factory.mktemp("module"))
    return user, run([SNAKEMAKE, "--cores", "2"], user)


def test_snakedeploy_writes_the_users_folder(deployed):
    user, _ = deployed
    assert (user / "LICENSE").read_text().startswith("MIT License")
    assert (user / "profiles/default/config.yaml").exists()
    assert (user / "config/README.md").exists(), "the config's documentation comes along"


def test_the_module_runs_the_whole_workflow_in_the_users_folder(deployed):
    user, result = deployed
    assert f"tlflow workflow version {VERSION}" in result.stderr + result.stdout
    results = user / "results/vgg16"
    for path in ("model.keras", "head/head.h5", "evaluation/metrics.json",
                 "plots/loss.png", "audit/audit.json"):  # fmt: skip
        assert (results / path).stat().st_size > 0, path
    assert f"tlflow {VERSION}" in (results / "evaluation/summary.html").read_text()
    repository = user.parent / NAME
    assert not (repository / "results").exists() and not (repository / ".snakemake").exists()


def test_the_users_config_is_checked_by_the_workflows_schema(deployed):
    user, _ = deployed
    result = run([SNAKEMAKE, "-n", "--config", "image_size=large"], user, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error validating config file" in output
    # The workflow's schema, with its description of the key.
    assert "schema['properties']['image_size']" in output
    assert "height and width every image is resized" in output


def test_a_module_of_another_version_than_the_installed_package_stops_with_the_fix(tmp_path):
    user = deploy(tmp_path, version="9.9.9")
    result = run([SNAKEMAKE, "-n"], user, check=False)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert f"the workflow is version 9.9.9 ({tmp_path / NAME}/workflow/rules/../../pyproject.toml)" in output  # fmt: skip
    assert f"is {VERSION}; install the same version" in output
