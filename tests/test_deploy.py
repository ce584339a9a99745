"""The Snakemake workflow catalog's conventions: the `.test` run from the repository root,
`snakedeploy deploy-workflow` from a local clone, and the workflow as a module from a
folder that is not a clone (docs/deployment.md)."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import DEFAULT_PLAN, REPO
from dry_run import job_counts
from snakemake.utils import validate

from scembed.methods import KINDS
from scembed.plan import load_plan
from scembed.schema import SCHEMA_PATH

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SNAKEDEPLOY = str(Path(sys.executable).with_name("snakedeploy"))
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"


def copy_working_tree(dest: Path) -> Path:
    """What a fresh clone of this repository holds (its tracked and not ignored files, as
    they are now), copied to ``dest``; links stay links."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if not source.is_symlink() and not source.exists():
            continue  # deleted in the working tree, not yet in the index
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest / name, follow_symlinks=False)
    return dest


def run(command: list[str], cwd: Path, timeout: int = 900) -> str:
    """Run ``command`` in ``cwd``; it must succeed. Returns its stdout and stderr."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


def plan_of_the_test_config() -> dict[str, int]:
    """The jobs of .test/config/config.yaml, from its plan: each embedding rule (KINDS)
    once per run of its methods."""
    config = yaml.safe_load(TEST_CONFIG.read_text())
    plan = load_plan(config, validate=functools.partial(validate, schema=str(SCHEMA_PATH)))
    datasets, seeds = len(plan.datasets), len(plan.seeds)
    downloads = sum("download" in plan.import_inputs(name) for name in plan.datasets)
    batches = len(plan.batch_datasets)
    counts = {
        "download_zeisel": downloads,
        "import_dataset": datasets,
        "preprocess": datasets,
        **{
            rule: datasets * seeds * len(plan.methods_of_rule(rule))
            for rule in {kind.rule for kind in KINDS.values()}
        },
        "cluster": datasets * seeds * len(plan.methods),
        "integration": batches * seeds * len(plan.methods),
        "summarize": 1,
        "compare": 1,
        "plot_dataset": datasets,
        "plot_integration": batches,
        "provenance": 1,
        "all": 1,
    }
    return {rule: count for rule, count in counts.items() if count}


# --------------------------------------------------------------------------- .test


def test_the_test_results_are_ignored_by_git():
    """`snakemake --directory .test` writes .test/results and .test/.snakemake."""
    for path in (".test/results/summary/metrics.tsv", ".test/.snakemake/log/x.log"):
        ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path])
        assert ignored.returncode == 0, f"{path} is not ignored by .gitignore"


@pytest.mark.workflow
def test_the_catalog_test_run_from_the_repository_root(tmp_path):
    """`snakemake --directory .test --cores 2` in a fresh copy: Snakemake finds
    workflow/Snakefile from the root, reads .test/config/config.yaml and writes
    .test/results, and `--report` (the catalog's `report: true`) builds a zip."""
    root = copy_working_tree(tmp_path / "scembed")
    output = run([*SNAKEMAKE, "--directory", ".test", "--cores", "2"], cwd=root)
    assert job_counts(output) == plan_of_the_test_config()
    config = yaml.safe_load(TEST_CONFIG.read_text())
    summary = root / ".test" / "results" / "summary"
    metrics = pd.read_csv(summary / "metrics.tsv", sep="\t")
    runs = {(m, s) for m in config["methods"] for s in config["seeds"]}
    assert set(zip(metrics["method"], metrics["seed"], strict=True)) == runs
    assert metrics["ari"].between(-1, 1).all()
    for name in ("comparison.tsv", "summary.md", "provenance.json"):
        assert (summary / name).stat().st_size > 0, name
    assert sorted(p.name for p in (root / "results").iterdir()) == [".gitkeep"]

    run([*SNAKEMAKE, "--directory", ".test", "--report", "results/report.zip"], cwd=root)
    assert (root / ".test" / "results" / "report.zip").stat().st_size > 0


# --------------------------------------------------------------------------- snakedeploy


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A git repository of the working tree (branch main, one commit): the local clone
    that a user deploys from."""
    root = copy_working_tree(tmp_path_factory.mktemp("clone") / "scembed")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    git += ["-c", "commit.gpgsign=false"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "tree"]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)
    return root


@pytest.mark.workflow
def test_snakedeploy_deploys_from_a_local_clone(clone, tmp_path):
    """`snakedeploy deploy-workflow <clone> <dest> --branch main` copies config/, profiles/
    and the LICENSE and writes a Snakefile that uses every rule of the module. For a
    local path (snakedeploy 0.17.1) it writes the module's snakefile as
    "workflow/Snakefile", which Snakemake reads relative to dest/workflow/, so the user
    points it at the clone (docs/deployment.md); then the deployed default config plans
    the book's run, and the catalog's test config its small one."""
    dest = tmp_path / "analysis"
    deploy = [SNAKEDEPLOY, "deploy-workflow", str(clone), str(dest), "--name", "scembed"]
    run([*deploy, "--branch", "main"], cwd=tmp_path)
    for name in ("config.yaml", "README.md", "test.yaml", "demo.yaml"):
        assert (dest / "config" / name).read_bytes() == (clone / "config" / name).read_bytes()
    for name in ("local", "slurm"):
        assert (dest / "profiles" / name / "config.yaml").is_file()
    assert (dest / "LICENSE").read_bytes() == (clone / "LICENSE").read_bytes()
    snakefile = dest / "workflow" / "Snakefile"
    text = snakefile.read_text()
    assert 'configfile: "config/config.yaml"' in text
    assert "module scembed:" in text and "use rule * from scembed" in text
    assert '"workflow/Snakefile"' in text

    broken = subprocess.run([*SNAKEMAKE, "-n"], cwd=dest, capture_output=True, text=True)
    assert broken.returncode != 0
    assert str(dest / "workflow" / "workflow" / "Snakefile") in broken.stdout + broken.stderr

    snakefile.write_text(text.replace('"workflow/Snakefile"', f'"{clone}/workflow/Snakefile"'))
    assert job_counts(run([*SNAKEMAKE, "-n"], cwd=dest)) == DEFAULT_PLAN
    shutil.copy(TEST_CONFIG, dest / "config" / "config.yaml")
    output = run([*SNAKEMAKE, "-n", "--cores", "2"], cwd=dest)
    assert job_counts(output) == plan_of_the_test_config()
    assert "results/synthetic/vae/seed1/metrics.json" in output
    assert not (dest / "results").exists()

    # a file:// URL matches no provider of snakedeploy: give the clone's path
    deploy[2:4] = [clone.as_uri(), str(tmp_path / "other")]
    url = subprocess.run([*deploy, "--branch", "main"], capture_output=True, text=True)
    assert url.returncode != 0 and "No matching provider" in url.stdout + url.stderr


HOST_SNAKEFILE = """\
configfile: "config/config.yaml"


module scembed:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from scembed
"""


@pytest.mark.workflow
def test_a_module_from_a_workflow_folder_outside_any_clone(clone, tmp_path):
    """workflow/ alone copied elsewhere (as `cp -r`: its schemas link dangles; no git, no
    requirements.txt, no src/ beside it) works as a module with the installed library:
    the plan is the catalog's test run, and the provenance would record no commit."""
    shared = tmp_path / "shared" / "scembed"
    shutil.copytree(clone / "workflow", shared / "workflow", symlinks=True)
    assert not (shared / "workflow" / "schemas" / "config.schema.yaml").exists()
    host = tmp_path / "host"
    (host / "config").mkdir(parents=True)
    shutil.copy(TEST_CONFIG, host / "config" / "config.yaml")
    (host / "Snakefile").write_text(HOST_SNAKEFILE.format(snakefile=shared / "workflow/Snakefile"))
    output = run([*SNAKEMAKE, "-n", "--cores", "2"], cwd=host)
    assert job_counts(output) == plan_of_the_test_config()
    assert "Warning" not in output  # no pins beside it: nothing to compare, nothing to warn

    from scembed.provenance import git_commit

    assert git_commit(str(shared / "workflow")) == {"commit": None, "dirty": None}
