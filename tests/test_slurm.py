"""The workflow on a real SLURM, through profiles/slurm and the SLURM executor plugin.

Needs root and a running SLURM (``.ci/slurm-local.sh start``; ``.ci/run`` does it);
skipped otherwise. One module-scoped fixture makes three runs on the same tiny
generated images, and the tests below read them:

1. a local run (profiles/default), the reference;
2. a SLURM run with one image of the validation split broken, which must fail
   that shard's cluster job, show its log and still finish the other shards;
3. a SLURM rerun after the image is repaired, which must resume: only the failed
   shard and what depends on it are submitted, and the results equal the local run.

Each cluster job's SLURM record (``scontrol show job``) is read right after its
run: the cluster keeps finished jobs for MinJobAge (600 s with the CI script).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from conftest import REPO, SNAKEMAKE, TINY_CONFIG, make_workdir, snakemake

from tlflow import manifest

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

COUNTS = {"train": 13, "validation": 7}
# One thread per job, so two shards run side by side on a 2-CPU CI node; the local
# reference run uses the same thread counts, so TensorFlow computes the same way.
CONFIG = copy.deepcopy(TINY_CONFIG)
CONFIG["splits"] = list(COUNTS)
CONFIG["extraction"].update(threads=1, mem_mb=1500)
CONFIG["head"].update(threads=1)
# The model group asks for the most its steps need at once (evaluation and
# deployment side by side): it must fit the CI node's 2 CPUs.
CONFIG["evaluation"] = {"threads": 1}
SLURM_ARGS = [
    "--workflow-profile",
    str(REPO / "profiles/slurm"),
    # No accounting database in CI: sacct fails, squeue sees jobs for MinJobAge.
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--slurm-keep-successful-logs",
    "--jobs",
    "4",
]
RESULTS = "results/vgg16"


def slurm_missing() -> str | None:
    """Why SLURM cannot be used here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (the CI starts SLURM daemons as root: .ci/run)"
    if not shutil.which("sbatch") or not shutil.which("scontrol"):
        return "SLURM is not installed; start it with `.ci/slurm-local.sh start`"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return "slurmctld is not running; start it with `.ci/slurm-local.sh start`"
    nodes = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    if not re.search(r"^(idle|mix|alloc)", nodes.stdout, re.M):
        return f"no SLURM node is up (sinfo: {nodes.stdout.strip() or nodes.stderr.strip()})"
    return None


@dataclass
class Job:
    """One job as Snakemake's log tells it, with its SLURM record when it was submitted."""

    rule: str
    message: str  # the rule's one-line message: backbone, split, shard, images
    slurm_id: str | None = None
    slurm_log: str | None = None
    record: dict = field(default_factory=dict)


@dataclass
class Run:
    returncode: int
    output: str
    run_id: str
    jobs: dict[str, Job]  # by Snakemake job id

    def cluster_jobs(self, rule=None):
        return [j for j in self.jobs.values() if j.slurm_id and rule in (None, j.rule)]

    def local_jobs(self):
        return [j for j in self.jobs.values() if not j.slurm_id]


def parse_log(text: str) -> tuple[str, dict[str, Job]]:
    """Jobs by Snakemake job id, from their message lines and SLURM submissions.

    A group's jobs are listed (indented) under "Group job <name>"; the group is
    then submitted as one job under an id of its own, which all of them share.
    """
    run_id = re.search(r"SLURM run ID: (\S+)", text)
    jobs, group, block = {}, [], None
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("Logfile ") and line.endswith(":"):
            # A failed job's log, printed between two equal rulers: the job's own
            # Snakemake output is in there, with job ids of its own.
            ruler = next(lines, "")
            for line in lines:
                if line == ruler:
                    break
            continue
        if re.match(r"^(\[.*\] )?Group job ", line):
            group = []
        info = re.match(r"^( *)Job (\d+): (\w+): (.*)$", line)
        if info:
            indent, jobid, rule, message = info.groups()
            jobs[jobid] = Job(rule=rule, message=message)
            if indent:
                group.append(jobs[jobid])
        # A rule without a message gets Snakemake's block: "rule x:", "    jobid: n".
        header = re.match(r"^(?:local)?rule (\w+):$", line)
        jobid = re.match(r"^    jobid: (\d+)$", line)
        if header:
            block = header.group(1)
        elif block and jobid:
            jobs[jobid.group(1)] = Job(rule=block, message="")
        elif not line.startswith("    "):
            block = None
        submitted = re.match(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (.*)\)\.", line)
        if submitted:
            jobid, slurm_id, slurm_log = submitted.groups()
            for job in [jobs[jobid]] if jobid in jobs else group:
                job.slurm_id, job.slurm_log = slurm_id, slurm_log
    return run_id.group(1) if run_id else "", jobs


def slurm_record(job_id: str) -> dict:
    """``scontrol show job`` as a dict (one line, key=value)."""
    text = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", text))


def run_on_slurm(workdir: Path) -> Run:
    result = subprocess.run(
        [
            SNAKEMAKE,
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            *SLURM_ARGS,
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    output = result.stdout + result.stderr
    (workdir / f"snakemake-{len(list(workdir.glob('snakemake-*')))}.txt").write_text(output)
    run_id, jobs = parse_log(output)
    for job in jobs.values():
        if job.slurm_id:
            job.record = slurm_record(job.slurm_id)
    return Run(result.returncode, output, run_id, jobs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    reason = slurm_missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    local = make_workdir(root / "local", CONFIG, COUNTS)
    cluster = root / "cluster"
    shutil.copytree(local, cluster)  # the very same images and config
    snakemake(local)

    # Break one validation image: its shard's cluster job must fail.
    images = sorted((cluster / "data/validation").rglob("*.jpg"))
    broken = images[0]
    relpath = broken.relative_to(cluster / "data").as_posix()
    shard = manifest.shard_of(relpath, CONFIG["extraction"]["shards"])
    original = broken.read_bytes()
    broken.write_bytes(b"not a JPEG")
    failed = run_on_slurm(cluster)

    broken.write_bytes(original)  # repaired: the same bytes as before
    resumed = run_on_slurm(cluster)
    return {
        "local": local,
        "cluster": cluster,
        "failed": failed,
        "resumed": resumed,
        "broken": relpath,
        "shard": shard,
    }


def minutes(limit: str) -> int:
    """SLURM's [D-]HH:MM:SS as minutes."""
    days, _, clock = limit.rpartition("-")
    hours, mins, secs = (int(part) for part in clock.split(":"))
    return (int(days or 0) * 24 + hours) * 60 + mins + (secs > 0)


def test_every_cluster_job_went_through_sbatch_with_its_rules_resources(runs):
    seen_rules, local_rules = set(), set()
    for run in (runs["failed"], runs["resumed"]):
        assert run.run_id, run.output[-3000:]
        for job in run.cluster_jobs():
            record = job.record
            assert record["JobId"] == job.slurm_id
            # The plugin names jobs by run and comments them with rule (or group).
            assert record["JobName"] == run.run_id
            assert record["Comment"].startswith("rule_")
            assert record["WorkDir"] == str(runs["cluster"])
            assert "gres/gpu" not in record["TRES"]  # the config asks for no GPU
            # Its SLURM log is where the plugin said (kept with --slurm-keep-successful-logs).
            assert Path(job.slurm_log).name == f"{job.slurm_id}.log"
            assert Path(job.slurm_log).exists()
            seen_rules.add(job.rule)
        local_rules |= {job.rule for job in run.local_jobs()}
    assert {"extract_shard", "train_head", "evaluate", "deploy_model"} <= seen_rules
    # Bookkeeping rules ran on the submit host, never through sbatch.
    assert {"publish_manifest", "join_split", "plot_curves", "summarise_run"} <= local_rules
    assert not local_rules & seen_rules

    # What the rules declare, from the config: one thread, extraction.mem_mb and
    # 10 minutes for a shard of fewer than 300 images.
    for job in runs["failed"].cluster_jobs("extract_shard"):
        assert int(job.record["CPUs/Task"]) == 1
        assert job.record["MinMemoryNode"] == f"{CONFIG['extraction']['mem_mb']}M"
        assert minutes(job.record["TimeLimit"]) == 10


def test_training_evaluation_and_deployment_are_one_cluster_job(runs):
    jobs = {j.rule: j for j in runs["resumed"].cluster_jobs() if j.rule not in ("extract_shard", "audit")}
    assert set(jobs) == {"train_head", "evaluate", "deploy_model"}
    assert len({job.slurm_id for job in jobs.values()}) == 1, jobs
    record = jobs["train_head"].record
    assert record["JobState"] == "COMPLETED"
    # The group asks for what its steps need: the head's 2000 MB at least, and the
    # time of training followed by evaluation (10 minutes each here).
    assert int(record["MinMemoryNode"].rstrip("M")) >= 2000
    assert minutes(record["TimeLimit"]) >= 20


def test_shards_run_as_parallel_cluster_jobs(runs):
    shards = runs["failed"].cluster_jobs("extract_shard")
    assert len(shards) == 4  # 2 splits x 2 shards, one sbatch job each
    assert len({job.slurm_id for job in shards}) == 4
    spans = [
        (datetime.fromisoformat(j.record["StartTime"]), datetime.fromisoformat(j.record["EndTime"]))
        for j in shards
    ]
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1 :] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, f"no two shard jobs ran at the same time: {spans}"


def test_failed_cluster_job_fails_the_run_and_shows_the_rules_log(runs):
    run = runs["failed"]
    assert run.returncode != 0
    failed_log = f"logs/vgg16/extract_shard/validation/shard-{runs['shard']}.log"
    (job,) = [j for j in run.cluster_jobs("extract_shard") if j.record["JobState"] == "FAILED"]
    assert f"split validation, shard {runs['shard']}," in job.message
    assert "Error in rule extract_shard" in run.output
    assert f"SLURM jobid {job.slurm_id}" in run.output
    # show-failed-logs (profiles/slurm) prints the rule's log: the broken file and the fix.
    assert f"Logfile {failed_log}:" in run.output
    assert runs["broken"] in run.output and "could not be decoded" in run.output
    # ... and no other image: jobs print one line each, never their image list.
    others = [p.name for p in (runs["cluster"] / "data").rglob("*.jpg")]
    assert not [name for name in others if name in run.output.replace(runs["broken"], "")]
    # keep-going: the other three shards finished anyway.
    done = [j for j in run.cluster_jobs("extract_shard") if j.record["JobState"] == "COMPLETED"]
    assert len(done) == 3


def test_rerun_resumes_with_the_failed_shard_only(runs):
    run = runs["resumed"]
    assert run.returncode == 0, run.output[-5000:]
    (shard,) = run.cluster_jobs("extract_shard")
    assert f"split validation, shard {runs['shard']}," in shard.message
    assert {j.rule for j in run.cluster_jobs()} >= {"extract_shard", "train_head"}
    assert (runs["cluster"] / RESULTS / "head/head.h5").exists()


def test_results_equal_a_local_run(runs):
    """Every feature array, label array and manifest is byte-identical to the local run's."""
    local, cluster = runs["local"], runs["cluster"]
    compared = []
    for pattern in (
        "results/manifests/*/shard-*.csv",
        f"{RESULTS}/features/shards/*/*",
        f"{RESULTS}/features/*.npy",
        f"{RESULTS}/features/*.csv",
        f"{RESULTS}/head/history.csv",
        f"{RESULTS}/head/head.json",
    ):
        mine = sorted(p.relative_to(local) for p in local.glob(pattern))
        theirs = sorted(p.relative_to(cluster) for p in cluster.glob(pattern))
        assert mine and mine == theirs, pattern
        for path in mine:
            assert (local / path).read_bytes() == (cluster / path).read_bytes(), path
            compared.append(path)
    assert len(compared) >= 20
