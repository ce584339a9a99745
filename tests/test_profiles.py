"""The execution profiles: what they plan, and that the Slurm plugin accepts its profile."""

from __future__ import annotations

import os
import re
from pathlib import Path

import dry_run
import pytest
import yaml
from conftest import DEFAULT_PLAN, REPO
from snakemake.cli import parse_set_resources, parse_set_threads, parse_size_in_bytes
from snakemake.resources import Resources
from snakemake_executor_plugin_slurm.validation import (
    get_forbidden_slurm_options,
)

from scembed.methods import KINDS

PROFILES = REPO / "profiles"


def load_profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


# --------------------------------------------------------------------------- plans

EXPECTED_PLANS = {
    "config/config.yaml": DEFAULT_PLAN,
    "config/demo.yaml": {k: v for k, v in DEFAULT_PLAN.items() if k != "download_zeisel"},
    "experiments/likelihoods.yaml": {
        **{k: v for k, v in DEFAULT_PLAN.items() if k != "train_scvi"},
        "train_vae": 20,
        "cluster": 25,
    },
}


@pytest.fixture(scope="module")
def plans():
    """The plans of `make dry-run`: every shipped config with every profile."""
    return dry_run.plans()


@pytest.mark.workflow
@pytest.mark.parametrize("config", list(EXPECTED_PLANS))
def test_plan(plans, config):
    local = plans[(config, "profiles/local")]
    slurm = plans[(config, "profiles/slurm")]
    assert local == EXPECTED_PLANS[config]
    assert slurm == local


@pytest.mark.workflow
def test_dry_run_table(plans):
    lines = dry_run.table(plans).splitlines()
    assert lines[0].split() == [
        "rule",
        *(f"{c}/{p}" for c in ("config", "demo", "likelihoods") for p in ("local", "slurm")),
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["download_zeisel"] == ["1", "1", "-", "-", "1", "1"]
    assert rows["train_vae"] == ["10", "10", "10", "10", "20", "20"]
    assert rows["train_scvi"] == ["5", "5", "5", "5", "-", "-"]
    assert rows["total"] == ["48", "48", "47", "47", "58", "58"]


@pytest.mark.workflow
def test_slurm_dry_run_submits_nothing(tmp_path, monkeypatch):
    """The Slurm profile's dry run calls no Slurm command (CI may have none, or a real one)."""
    calls = tmp_path / "calls"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for command in ("sbatch", "srun", "salloc", "scancel", "squeue", "sacct", "sacctmgr", "sshare"):
        script = fake_bin / command
        script.write_text(f'#!/bin/sh\necho "{command} $*" >> {calls}\nexit 1\n')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    counts = dry_run.plan("config/demo.yaml", "profiles/slurm")
    assert counts == EXPECTED_PLANS["config/demo.yaml"]
    assert not calls.exists(), calls.read_text()


def test_job_counts_parser():
    output = (
        "Building DAG of jobs...\nJob stats:\njob         count\n----------  -------\n"
        "preprocess        1\ncluster          10\ntotal            11\n\nReasons:\n"
    )
    assert dry_run.job_counts(output) == {"preprocess": 1, "cluster": 10}
    with pytest.raises(ValueError):
        dry_run.job_counts("Nothing to be done (all requested files are present).")


# --------------------------------------------------------------------------- Slurm profile


@pytest.fixture(scope="module")
def slurm_profile() -> dict:
    return load_profile("slurm")


def evaluate(resource, attempt: int, threads: int = 4):
    return resource.evaluate(
        wildcards={}, input=[], attempt=attempt, threads=threads, rulename="x", async_run=None
    ).value


def default_resources(profile: dict) -> Resources:
    return Resources.parse(profile.get("default-resources", []), allow_expressions=True)


def set_resources(profile: dict) -> dict[str, Resources]:
    return parse_set_resources(profile.get("set-resources", []))


def test_slurm_profile_basics(slurm_profile):
    assert slurm_profile["executor"] == "slurm"
    assert int(slurm_profile["jobs"]) >= 1
    assert int(slurm_profile["latency-wait"]) >= 5  # shared file systems lag
    assert int(slurm_profile["retries"]) >= 1


def test_both_profiles_keep_a_copied_again_input_from_rerunning(slurm_profile):
    """The Slurm profile sets the checksum limit that the workflow test of profiles/local
    exercises (`test_a_source_copied_again_with_the_same_bytes_reruns_nothing`)."""
    limit = load_profile("local")["max-checksum-file-size"]
    assert slurm_profile["max-checksum-file-size"] == limit
    assert parse_size_in_bytes(limit) > 1_000_000  # above Snakemake's own 1 MB


def test_slurm_profile_leaves_managed_options_to_the_plugin(slurm_profile):
    forbidden = get_forbidden_slurm_options()
    extras = [
        ("default", res)
        for name, res in default_resources(slurm_profile).items()
        if name == "slurm_extra"
    ]
    extras += [
        (rule, res)
        for rule, resources in set_resources(slurm_profile).items()
        for name, res in resources.items()
        if name == "slurm_extra"
    ]
    for rule, res in extras:
        value = str(evaluate(res, attempt=1))
        for pattern, option in forbidden.items():
            assert not re.search(pattern, value), f"{rule}: slurm_extra sets the {option}"
    # the same, said plainly, for every value (comments aside): the plugin derives
    # these sbatch options from resources
    values = [str(v) for v in slurm_profile.values() if not isinstance(v, list)]
    values += [str(item) for v in slurm_profile.values() if isinstance(v, list) for item in v]
    for option in ("--gres", "--gpus", "--mem", "--time", "--partition", "--account"):
        assert not [v for v in values if option in v], option


def rule_declares_gpu(rule: str) -> int | None:
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        block = re.search(rf"^rule {rule}:\n((?:[ \t]+.*\n|\n)+)", smk.read_text(), re.M)
        if block:
            gpu = re.search(r"^\s+gpu=(\d+)", block.group(1), re.M)
            return int(gpu.group(1)) if gpu else None
    return None


def test_slurm_profile_routes_training_to_a_gpu(slurm_profile):
    defaults = default_resources(slurm_profile)
    training = set_resources(slurm_profile)["train_vae"]
    for name in ("slurm_account", "slurm_partition", "mem_mb", "runtime"):
        assert name in defaults, f"default-resources lacks {name}"
    for name in ("slurm_partition", "cpus_per_gpu", "runtime"):
        assert name in training, f"set-resources lacks train_vae:{name}"
    # memory follows the data (the rule's own mem_mb estimate); an override would hide it
    for rule in ("import_dataset", "preprocess", "embed_pca", "train_vae", "train_scvi", "cluster"):
        assert "mem_mb" not in set_resources(slurm_profile).get(rule, {}), rule
    gpu = evaluate(training["gpu"], 1) if "gpu" in training else rule_declares_gpu("train_vae")
    assert gpu == 1
    partition = evaluate(training["slurm_partition"], 1)
    assert partition and partition != evaluate(defaults["slurm_partition"], 1)
    assert evaluate(training["cpus_per_gpu"], 1) >= 1
    assert evaluate(training["runtime"], 1) > evaluate(defaults["runtime"], 1)


TRAINING_RULES = [kind.rule for kind in KINDS.values() if kind.trains]


def set_threads(profile: dict) -> dict[str, int]:
    return {
        rule: resource.evaluate(
            wildcards={}, input=[], attempt=1, rulename=rule, async_run=None
        ).value
        for rule, resource in parse_set_threads(profile.get("set-threads", [])).items()
    }


def test_slurm_profile_gives_every_training_rule_a_gpu_and_its_cpus(slurm_profile):
    """Each training kind's rule (scembed.methods.KINDS) goes to the GPU partition with
    one GPU, and Snakemake gives its job the CPUs Slurm gives it beside the GPU."""
    resources, threads = set_resources(slurm_profile), set_threads(slurm_profile)
    gpu_partition = evaluate(resources["train_vae"]["slurm_partition"], 1)
    for rule in TRAINING_RULES:
        assert evaluate(resources[rule]["gpu"], 1) == 1, rule
        assert evaluate(resources[rule]["slurm_partition"], 1) == gpu_partition, rule
        assert threads[rule] == evaluate(resources[rule]["cpus_per_gpu"], 1) >= 1, rule


@pytest.mark.parametrize("name", ["local", "slurm"])
def test_clustering_threads_follow_the_cells_in_every_profile(name):
    """No profile fixes the clustering job's threads, which would replace the rule's
    (1 below 10^5 cells, 4 from there: tests/test_resources.py)."""
    profile = load_profile(name)
    assert "cluster" not in set_threads(profile)
    assert "_cores" not in set_resources(profile).get("cluster", {})


def test_local_profile_leaves_training_to_the_rules_defaults():
    """On one machine a training job's threads follow compute_threads.train and its gpu
    unit whether it will train on a GPU here: a fixed value would replace both."""
    local = load_profile("local")
    for rule in TRAINING_RULES:
        assert rule not in set_threads(local)
        assert "gpu" not in set_resources(local).get(rule, {})


def test_slurm_profile_memory_grows_on_retry(slurm_profile):
    defaults = default_resources(slurm_profile)
    assert evaluate(defaults["mem_mb"], 2) > evaluate(defaults["mem_mb"], 1)
    for rule, resources in set_resources(slurm_profile).items():
        if "mem_mb" in resources:
            first, second = (evaluate(resources["mem_mb"], a) for a in (1, 2))
            assert second > first, f"{rule}: mem_mb does not grow with attempt"


# --------------------------------------------------------------------------- other profiles


def test_local_profile_serialises_gpu_jobs():
    local = load_profile("local")
    assert local["cores"] == "all"
    assert "executor" not in local or local["executor"] == "local"
    resources = dict(item.split("=", 1) for item in local["resources"])
    assert int(resources["gpu"]) == 1


# Snakemake loads profiles/default/ (next to the Snakefile) as the workflow profile in
# every run, on every machine: it must not pick an executor, cores or cluster resources.
PLATFORM_KEYS = {
    "executor",
    "cores",
    "jobs",
    "local-cores",
    "resources",
    "default-resources",
    "set-resources",
    "set-threads",
    "latency-wait",
    "max-jobs-per-second",
    "max-status-checks-per-second",
}


def platform_keys(profile: Path) -> set[str]:
    """Keys of ``profile``/config.yaml that pick a platform (none when it does not exist)."""
    files = sorted(profile.glob("config.y*ml")) if profile.exists() else []
    keys = set(yaml.safe_load(files[0].read_text()) or {}) if files else set()
    return {k for k in keys if k in PLATFORM_KEYS or k.startswith(("slurm-", "cluster-"))}


def test_platform_keys_are_found(tmp_path):
    (tmp_path / "config.yaml").write_text("executor: slurm\nprintshellcmds: true\nslurm-x: 1\n")
    assert platform_keys(tmp_path) == {"executor", "slurm-x"}


def test_no_platform_keys_in_a_default_profile():
    assert platform_keys(PROFILES / "default") == set()
