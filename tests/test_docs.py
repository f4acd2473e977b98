"""The documentation stays true: every command it shows still parses, every
relative link leads to a file and heading that exist, and the README stays a door.

Commands are the lines of shell blocks (```bash, ```sh, ``` with no language), and
the code spans of the prose, that run `snakemake`, `python -m tlflow.<module>` or
`[python] benchmarks/<script>.py`.
Snakemake's lines are parsed by Snakemake's own argument parser and the files
they name (`--configfile`, `--workflow-profile`) must exist; a module's or a
script's by its own argparse parser, stopped right after parsing, so nothing runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "config/README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^```(\S*)\s*$")
SHELL = {"", "bash", "sh", "shell", "console"}
PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")

# Runs each command's module or script with argparse stopped right after a
# successful parse; prints {command: error or ""} as JSON.
PARSE_ONLY = r"""
import argparse, contextlib, io, json, runpy, sys
from pathlib import Path

class Parsed(Exception):
    pass

real = argparse.ArgumentParser.parse_args

def parse_args(self, args=None, namespace=None):
    real(self, args, namespace)
    raise Parsed

argparse.ArgumentParser.parse_args = parse_args
results = {}
for key, (kind, target, argv) in json.loads(sys.argv[1]).items():
    sys.argv = [target, *argv]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if kind == "module":
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                sys.path.insert(0, str(Path(target).parent))
                runpy.run_path(target, run_name="__main__")
        results[key] = "ran without parsing its arguments"
    except Parsed:
        results[key] = ""
    except SystemExit as exit:
        results[key] = err.getvalue().strip() or f"exit {exit.code}"
print(json.dumps(results))
"""


def _blocks(text: str):
    """(language, lines) of each fenced block."""
    language, lines = None, []
    for line in text.splitlines():
        fence = FENCE.match(line.strip())
        if fence and language is None:
            language, lines = fence.group(1), []
        elif fence:
            yield language, lines
            language = None
        elif language is not None:
            lines.append(line)


def _prose(text: str) -> str:
    """``text`` without its fenced blocks (a `# comment` there is no heading)."""
    kept, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            inside = not inside
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def shell_commands(text: str) -> list[list[str]]:
    """Every command line of the shell blocks, split as the shell would."""
    commands = []
    for language, lines in _blocks(text):
        if language not in SHELL:
            continue
        joined = "\n".join(lines).replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            try:
                argv = shlex.split(line, comments=True)
            except ValueError:
                continue  # not shell (a layout sketch, say)
            if argv:
                commands.append(argv)
    return commands


def inline_commands(text: str) -> list[list[str]]:
    """Commands in `code spans` of the prose (the benchmark tables name theirs so)."""
    commands = []
    for span in INLINE.findall(_prose(text)):
        try:
            argv = shlex.split(span)
        except ValueError:
            continue
        if argv and classify(argv):
            commands.append(argv)
    return commands


def classify(argv: list[str]):
    """("snakemake", args), ("module", name, args), ("script", path, args) or None."""
    if re.match(r"^benchmarks/\w+\.py$", argv[0]):  # a script named without its python
        return "script", argv[0], argv[1:]
    program = Path(argv[0]).name
    if program == "snakemake":
        return "snakemake", argv[1:]
    if PYTHON.match(program) and len(argv) > 2 and argv[1] == "-m" and argv[2].startswith("tlflow"):
        return "module", argv[2], argv[3:]
    if PYTHON.match(program) and len(argv) > 1 and argv[1].endswith(".py"):
        return "script", argv[1], argv[2:]
    return None


def documented_commands():
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for argv in shell_commands(text) + inline_commands(text):
            kind = classify(argv)
            if kind:
                found.append((doc.relative_to(REPO).as_posix(), shlex.join(argv), kind))
    return found


COMMANDS = documented_commands()


def _ids(kind):
    return [f"{doc}: {line}" for doc, line, k in COMMANDS if k[0] == kind]


@pytest.fixture(scope="module")
def snakemake_parser():
    from snakemake.cli import get_argument_parser

    return get_argument_parser()


def test_the_docs_show_each_kind_of_command():
    kinds = {kind[0] for _, _, kind in COMMANDS}
    assert kinds == {"snakemake", "module", "script"}, f"commands found: {COMMANDS}"


@pytest.mark.parametrize(
    "doc, line, args",
    [(doc, line, kind[1]) for doc, line, kind in COMMANDS if kind[0] == "snakemake"],
    ids=_ids("snakemake"),
)
def test_snakemake_commands_parse(snakemake_parser, doc, line, args):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parsed = snakemake_parser.parse_args(args)
    except (SystemExit, Exception) as error:  # some options fail in their own type's parser
        pytest.fail(f"{doc}: `{line}` no longer parses: {err.getvalue().strip()[-300:] or error}")
    named = [*parsed.configfile, *([parsed.workflow_profile] if parsed.workflow_profile else [])]
    missing = [str(path) for path in named if not (REPO / path).exists()]
    assert not missing, f"{doc}: `{line}` names files that do not exist: {missing}"


def test_tlflow_and_benchmark_commands_parse():
    jobs, problems = {}, []
    for doc, line, kind in COMMANDS:
        if kind[0] == "module":
            try:
                spec = importlib.util.find_spec(kind[1])
            except ModuleNotFoundError:
                spec = None
            if spec is None:
                problems.append(f"{doc}: `{line}`: no module {kind[1]}")
                continue
            source = Path(spec.origin).read_text()
        elif kind[0] == "script":
            path = REPO / kind[1]
            if not path.is_file():
                problems.append(f"{doc}: `{line}`: no file {kind[1]}")
                continue
            source = path.read_text()
        else:
            continue
        if "parse_args" in source:
            jobs[f"{doc}: `{line}`"] = [
                kind[0],
                str(REPO / kind[1]) if kind[0] == "script" else kind[1],
                kind[2],
            ]
        elif kind[2]:
            problems.append(f"{doc}: `{line}`: {kind[1]} takes no arguments")
    assert jobs, "no tlflow or benchmark command found in the docs"
    problems += [
        f"{key} no longer parses: {error[-300:]}" for key, error in parse_only(jobs).items() if error
    ]
    assert not problems, "\n".join(problems)


def parse_only(jobs: dict) -> dict:
    """{key: argparse's error or ""} for each (kind, module or script, args)."""
    run = subprocess.run(
        [sys.executable, "-c", PARSE_ONLY, json.dumps(jobs)], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_command_that_no_longer_parses_is_caught(snakemake_parser):
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        snakemake_parser.parse_args(["--cores", "4", "--no-such-option"])
    predict = ["model.keras", "images/", "out.csv"]
    results = parse_only(
        {
            "good": ["module", "tlflow.predict", predict],
            "bad": ["module", "tlflow.predict", [*predict, "--no-such-option"]],
            "script": ["script", str(REPO / "benchmarks/heads.py"), ["data", "--holdout", "half"]],
        }
    )
    assert results["good"] == ""
    assert "unrecognized arguments: --no-such-option" in results["bad"]
    assert "invalid float value: 'half'" in results["script"]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in _prose(doc.read_text()).splitlines():
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
    return result


def test_relative_links_lead_to_files_and_headings_that_exist():
    broken = []
    for doc in DOCS:
        for target in LINK.findall(_prose(doc.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            where = f"{doc.relative_to(REPO)}: ({target})"
            if not file.exists():
                broken.append(f"{where}: no file {file}")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{where}: no heading '#{anchor}' in {file.relative_to(REPO)}")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    readme = REPO / "README.md"
    linked = {(readme.parent / t.partition("#")[0]).resolve() for t in LINK.findall(readme.read_text())}
    unlinked = [p.name for p in (REPO / "docs").glob("*.md") if p.resolve() not in linked]
    assert not unlinked, f"link these from README.md's 'Where to read on': {unlinked}"


def test_readme_is_a_door():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; keep it at most {README_MAX_LINES} and move details to a page in docs/"
    )


def test_shell_commands_are_split_as_the_shell_would():
    text = "```bash\n.venv/bin/snakemake --cores 4 \\\n  -n   # dry run\n$ python -m tlflow.x 'a b'\n```\n"
    assert shell_commands(text) == [
        [".venv/bin/snakemake", "--cores", "4", "-n"],
        ["python", "-m", "tlflow.x", "a b"],
    ]
    assert classify([".venv/bin/python", "benchmarks/heads.py", "d"]) == (
        "script",
        "benchmarks/heads.py",
        ["d"],
    )
    assert classify(["python3.11", "-m", "venv", "x"]) is None
    assert slug("Heads: the default against the tutorial's") == "heads-the-default-against-the-tutorials"
    assert slug("After `git checkout` or a copy") == "after-git-checkout-or-a-copy"
