"""The synthetic workflow through a real Slurm cluster, compared with a local run.

Needs the one-node cluster of tests/slurm/cluster.sh (partitions `debug` and `gpu`, one
fake GPU, no slurmdbd); `make test-slurm` starts it, runs this module and stops it. The
Slurm run uses profiles/slurm with CI's account and partitions on the command line; the
local run uses profiles/local. Both run config/test.yaml with the same thread counts, so
the metrics must be equal.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile")]
SLURM_TIMEOUT = 600  # seconds, per snakemake run (the test's budget is 8 minutes in all)
LOCAL_TIMEOUT = 600

# CI's settings. --default-resources replaces the profile's whole list (its
# placeholders); --set-resources replaces the profile's whole list as well, so the
# training rule's routing is repeated here with this cluster's `gpu` partition.
THREADS = ["--set-threads", "train_vae=1"]  # the same in both runs
SLURM_ARGS = [
    "--default-resources",
    "slurm_account=ci",
    "slurm_partition=debug",
    "mem_mb=1000*attempt",
    "runtime=30",
    "--set-resources",
    "train_vae:slurm_partition=gpu",
    "train_vae:gpu=1",
    "train_vae:cpus_per_gpu=1",
    "train_vae:mem_mb=2000*attempt",
    "train_vae:runtime=30",
    *THREADS,
    "--retries",
    "0",  # fail fast in CI instead of resubmitting
    "--latency-wait",
    "5",  # one node, one file system
    "--seconds-between-status-checks",
    "1",
    # no slurmdbd: sacct fails, and the plugin would wait forever (tests/slurm/README.md)
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--slurm-keep-successful-logs",
]
LOCAL_ARGS = ["--cores", "2", *THREADS]


def cluster_problem() -> str | None:
    """Why this module cannot run here, or None."""
    if not os.environ.get("SLURM_CONF"):
        return "SLURM_CONF is not set: run `make test-slurm` (starts a one-node Slurm cluster)"
    if not shutil.which("sinfo"):
        return "sinfo not found (Slurm client missing): run `make test-slurm`"
    try:
        result = subprocess.run(
            ["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 15 s: is the cluster of tests/slurm/cluster.sh up?"
    if result.returncode != 0:
        return f"sinfo failed: {result.stderr.strip()}"
    partitions = set(result.stdout.split())
    if not {"debug", "gpu"} <= partitions:
        return (
            f"partitions {sorted(partitions)}: this test needs the `debug` and `gpu` "
            "partitions of tests/slurm/cluster.sh"
        )
    return None


PROBLEM = cluster_problem()
if PROBLEM and os.environ.get("SCEMBED_REQUIRE_SLURM") == "1":
    # `make test-slurm` started a cluster: a skip there would pass CI without a test
    pytest.fail(f"SCEMBED_REQUIRE_SLURM=1, but {PROBLEM}", pytrace=False)
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or ""),
]


# --------------------------------------------------------------------------- helpers

# A job's block in Snakemake's log: "rule NAME:" (or "localrule NAME:") ... "jobid: N"
JOB_BLOCK = re.compile(r"^(local)?rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", re.MULTILINE)
SUBMITTED = re.compile(
    r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+)\)\.$", re.MULTILINE
)
RUN_ID = re.compile(r"^SLURM run ID: (\S+)$", re.MULTILINE)
JOB_STATS = re.compile(r"^Job stats:\n.*\n-+\s+-+\n((?:\S+\s+\d+\n)+)", re.MULTILINE)


def job_counts(output: str) -> dict[str, int]:
    match = JOB_STATS.search(output)
    assert match, output[-5000:]
    counts = dict(line.split() for line in match.group(1).splitlines())
    return {rule: int(n) for rule, n in counts.items() if rule != "total"}


def local_rules() -> set[str]:
    """Rules Snakemake runs on the submitting host: `localrules:` and the target `all`."""
    names = {"all"}
    for smk in [
        REPO / "workflow" / "Snakefile",
        *sorted((REPO / "workflow" / "rules").glob("*.smk")),
    ]:
        for block in re.findall(r"^localrules:\s*\n((?:[ \t]+\S.*\n)+)", smk.read_text(), re.M):
            names |= {name for name in re.split(r"[\s,]+", block) if name}
    return names


def squeue(run_id: str) -> dict[str, dict[str, str]]:
    """{slurm jobid: {partition, state, tres, account}} of the run's jobs, finished included."""
    result = subprocess.run(
        [
            "squeue",
            "-h",
            "-t",
            "all",
            "--name",
            run_id,
            "-O",
            "JobID:|,Partition:|,State:|,tres-per-job:|,Account:|",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    jobs = {}
    for line in result.stdout.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) >= 5 and fields[0]:
            jobs[fields[0]] = dict(
                zip(["partition", "state", "tres", "account"], fields[1:5], strict=True)
            )
    return jobs


class SqueuePoller(threading.Thread):
    """Record the last state squeue shows for every job of the run, while it runs.

    Without slurmdbd there is no sacct, and squeue forgets finished jobs after MinJobAge
    (300 s on the test cluster), which is shorter than the run: so watch as it goes.
    """

    def __init__(self, log: Path):
        super().__init__(daemon=True)
        self.log = log
        self.run_id: str | None = None
        self.seen: dict[str, dict[str, str]] = {}
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def poll(self):
        if self.run_id is None and self.log.exists():
            match = RUN_ID.search(self.log.read_text(errors="replace"))
            self.run_id = match.group(1) if match else None
        if self.run_id is not None:
            try:
                self.seen.update(squeue(self.run_id))
            except (subprocess.SubprocessError, OSError) as err:
                self.errors.append(str(err))

    def run(self):
        while not self._stop_event.wait(2):
            self.poll()

    def stop(self):
        self._stop_event.set()
        self.join(timeout=60)
        self.poll()  # the final states


@dataclass
class Runs:
    slurm_dir: Path
    local_dir: Path
    slurm: subprocess.CompletedProcess
    local: subprocess.CompletedProcess
    plan: dict[str, int]
    run_id: str | None
    squeue: dict[str, dict[str, str]]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def slurm_log(self) -> str:
        return self.slurm.stdout

    def context(self) -> str:
        return (
            f"Slurm run in {self.slurm_dir}, local run in {self.local_dir}\n"
            f"--- Slurm run (rc {self.slurm.returncode}), end of log:\n{self.slurm_log[-6000:]}"
        )

    def submitted(self) -> dict[str, tuple[str, str]]:
        """{slurm jobid: (rule, Slurm log file)} from the 'has been submitted' lines."""
        rule_of = {jobid: rule for _, rule, jobid in JOB_BLOCK.findall(self.slurm_log)}
        return {
            slurm_id: (rule_of.get(jobid, "?"), logfile)
            for jobid, slurm_id, logfile in SUBMITTED.findall(self.slurm_log)
        }


def workdir_with_config(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config" / "test.yaml", path / "config.yaml")
    return path


def snakemake_cmd(workdir: Path, profile: str, *args: str) -> list[str]:
    return [
        *SNAKEMAKE,
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--profile",
        str(REPO / "profiles" / profile),
        *args,
    ]


def timed(cmd: list[str], timeout: int) -> list[str]:
    return ["timeout", "-k", "10", str(timeout), *cmd]


# --------------------------------------------------------------------------- the runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    """Plan, then run the workflow on Slurm and locally at the same time.

    The Slurm run spends most of its time waiting for polls and job start-up, so the
    local reference run goes alongside it instead of after it.
    """
    slurm_dir = workdir_with_config(tmp_path_factory.mktemp("slurm_run"))
    local_dir = workdir_with_config(tmp_path_factory.mktemp("local_run"))
    seconds = {}

    start = time.monotonic()
    dry = subprocess.run(
        timed(snakemake_cmd(slurm_dir, "slurm", "-n", *SLURM_ARGS), 300),
        cwd=slurm_dir,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stdout[-5000:] + dry.stderr[-5000:]
    plan = job_counts(dry.stdout + dry.stderr)
    seconds["dry run"] = time.monotonic() - start

    slurm_log = slurm_dir / "snakemake.out"
    start = time.monotonic()
    with open(slurm_log, "w") as out:
        slurm_proc = subprocess.Popen(
            timed(snakemake_cmd(slurm_dir, "slurm", *SLURM_ARGS), SLURM_TIMEOUT),
            cwd=slurm_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    poller = SqueuePoller(slurm_log)
    poller.start()
    try:
        local = subprocess.run(
            timed(snakemake_cmd(local_dir, "local", *LOCAL_ARGS), LOCAL_TIMEOUT),
            cwd=local_dir,
            capture_output=True,
            text=True,
        )
        seconds["local run"] = time.monotonic() - start
        slurm_rc = slurm_proc.wait(timeout=SLURM_TIMEOUT + 30)
        seconds["slurm run"] = time.monotonic() - start
    finally:
        if slurm_proc.poll() is None:
            slurm_proc.kill()
        poller.stop()
        if poller.run_id and slurm_proc.returncode != 0:
            # a killed Snakemake leaves its jobs behind
            subprocess.run(["scancel", "--name", poller.run_id], timeout=30, check=False)

    slurm = subprocess.CompletedProcess(
        slurm_proc.args, slurm_rc, slurm_log.read_text(errors="replace"), ""
    )
    result = Runs(slurm_dir, local_dir, slurm, local, plan, poller.run_id, poller.seen, seconds)
    print(
        "\n"
        + ", ".join(f"{name}: {sec:.0f} s" for name, sec in seconds.items())
        + f" (Slurm run in {slurm_dir})"
    )
    return result


# --------------------------------------------------------------------------- the checks


def test_both_runs_succeed(runs):
    assert runs.slurm.returncode == 0, runs.context()
    assert runs.local.returncode == 0, runs.local.stdout[-5000:] + runs.local.stderr[-5000:]
    assert "Falling back to 'sacct'" not in runs.slurm_log


def test_every_job_went_through_sbatch(runs):
    assert runs.slurm.returncode == 0, runs.context()
    submitted = runs.submitted()
    local = local_rules()
    expected = {rule: n for rule, n in runs.plan.items() if rule not in local}
    counts: dict[str, int] = {}
    for rule, _ in submitted.values():
        counts[rule] = counts.get(rule, 0) + 1
    assert counts == expected, runs.context()
    # the jobs Snakemake ran itself are only those that must not be submitted
    ran_locally = {rule for is_local, rule, _ in JOB_BLOCK.findall(runs.slurm_log) if is_local}
    assert ran_locally <= local, runs.context()
    assert len(submitted) == sum(expected.values())


def test_every_job_completed(runs):
    assert runs.slurm.returncode == 0, runs.context()
    assert runs.run_id, runs.context()
    submitted = runs.submitted()
    states = {slurm_id: job["state"] for slurm_id, job in runs.squeue.items()}
    assert states == dict.fromkeys(submitted, "COMPLETED"), runs.context()
    assert {job["account"] for job in runs.squeue.values()} == {"ci"}
    for slurm_id, (rule, logfile) in submitted.items():
        # kept by --slurm-keep-successful-logs: the job step's own Snakemake log
        log = Path(logfile)
        assert log.is_file(), f"{rule}: no Slurm log {log}"
        assert log.parent.parent.name == f"rule_{rule}" or log.parent.name == f"rule_{rule}"
        assert log.name == f"{slurm_id}.log"
        text = log.read_text(errors="replace")
        assert "1 of 1 steps (100%) done" in text, f"{log}:\n{text[-3000:]}"


def test_training_went_to_the_gpu_partition(runs):
    assert runs.slurm.returncode == 0, runs.context()
    partitions = {
        slurm_id: (rule, runs.squeue[slurm_id]["partition"], runs.squeue[slurm_id]["tres"])
        for slurm_id, (rule, _) in runs.submitted().items()
    }
    training = [p for p in partitions.values() if p[0] == "train_vae"]
    assert training, partitions
    assert all(part == "gpu" and "gpu:1" in tres for _, part, tres in training), partitions
    others = [p for p in partitions.values() if p[0] != "train_vae"]
    assert all(part == "debug" for _, part, _ in others), partitions


def decoded_args(command: str, option: str) -> list[str]:
    """The values of `option` in a spawned Snakemake command line (base64// encoded)."""
    match = re.search(rf"{option} ((?:base64//\S+ ?)+)", command)
    if not match:
        return []
    return [base64.b64decode(v.removeprefix("base64//")).decode() for v in match.group(1).split()]


def test_training_threads_inside_the_job(runs):
    """The training step inside the Slurm job runs with the same threads as locally."""
    assert runs.slurm.returncode == 0, runs.context()
    logs = [Path(log) for rule, log in runs.submitted().values() if rule == "train_vae"]
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        commands = re.findall(r"^  Command: (.*)$", text, re.MULTILINE)
        assert len(commands) == 2, text[-3000:]  # the job step, then the rule under srun
        for command in commands:
            assert "--set-threads" in command and "--cores all" in command, command
            assert decoded_args(command, "--set-threads") == ["train_vae=1"], command
        # Snakemake prints "threads: N" in the job's block only when N > 1
        assert not re.search(r"^    threads: (?!1$)", text, re.MULTILINE), text[-3000:]


def test_metrics_equal_to_the_local_run(runs):
    assert runs.slurm.returncode == 0 and runs.local.returncode == 0, runs.context()
    table = "results/summary/metrics.tsv"
    on_slurm = pd.read_csv(runs.slurm_dir / table, sep="\t")
    local = pd.read_csv(runs.local_dir / table, sep="\t")
    assert list(on_slurm.columns) == list(local.columns)
    assert len(on_slurm) == len(local) == 4  # synthetic x {pca, vae} x seeds {0, 1}
    for column in local.columns:
        if pd.api.types.is_float_dtype(local[column]):
            np.testing.assert_allclose(on_slurm[column], local[column], rtol=0, atol=1e-9)
        else:  # integers, names, device, flags: exactly
            assert on_slurm[column].tolist() == local[column].tolist(), column
    assert set(local["device"]) == set(on_slurm["device"])


def test_clusters_equal_to_the_local_run(runs):
    """Cell by cell: the cluster assignments of every run are the same on Slurm."""
    assert runs.slurm.returncode == 0 and runs.local.returncode == 0, runs.context()
    files = sorted(p.relative_to(runs.local_dir) for p in runs.local_dir.glob("results/*/*/*/*"))
    clusters = [p for p in files if p.name == "clusters.tsv"]
    assert len(clusters) == 4, files
    for path in clusters:
        pd.testing.assert_frame_equal(
            pd.read_csv(runs.slurm_dir / path, sep="\t"),
            pd.read_csv(runs.local_dir / path, sep="\t"),
        )
