"""The study's grids (experiments/): what `make -C experiments` runs, and that each
grid config validates and plans every run over the shared data."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake, write_config
from dry_run import job_counts

EXPERIMENTS = REPO / "experiments"
SHARED_DATA = REPO.parent / "shared" / "data"
GRIDS = ("ablation", "finalists", "genes", "likelihoods", "panel")


def make_plan(target: str, *args: str, folder: Path = EXPERIMENTS) -> str:
    """The commands `make -n target args` would run in ``folder``."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target, *args],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def grid_flags(*args: str) -> list[str]:
    """The options `make -C experiments ablation` gives Snakemake besides its config."""
    run = make_plan("ablation", *args).splitlines()[0]
    return run.split("--profile profiles/local", 1)[1].split("--configfile")[0].split()


@pytest.mark.parametrize("grid", GRIDS)
def test_each_grid_runs_its_config_from_the_repository_and_reports_it(grid):
    run, report = make_plan(grid).splitlines()[:2]
    assert run.startswith(f"cd {REPO} && ") and f"--configfile experiments/{grid}.yaml" in run
    assert "--keep-going" in run
    assert f"--report results/{grid}/report.html --configfile experiments/{grid}.yaml" in report


def test_grid_jobs_take_the_workflows_threads_and_gpu_requests():
    """Hundreds of small training jobs: the workflow's own defaults run them one per core
    without a GPU (tests/test_faults_workflow.py), so the grids set no threads or GPU
    units of their own, which would give their runs other numbers than the workflow's."""
    assert grid_flags() == ["--cores", "all", "--keep-going"]


def test_datasets_and_extra_configs_narrow_the_run_and_its_report():
    for datasets in ("kang_pbmc,worm_neuron", "kang_pbmc  worm_neuron"):
        run, report = make_plan("ablation", f"DATASETS={datasets}").splitlines()[:2]
        for command in (run, report):
            assert "--config only_datasets=kang_pbmc,worm_neuron" in command
    run, report = make_plan("panel", "METHODS=pca scvi", "DATASETS=a").splitlines()[:2]
    for command in (run, report):
        assert "--config only_datasets=a only_methods=pca,scvi" in command
    confirm = make_plan("confirm")
    assert "only_methods=pca,pca20,vae,scvi,vae_improved,imp_latent20" in confirm
    assert "--configfile experiments/panel.yaml experiments/seeds5.yaml" in confirm
    run, report = make_plan("ablation", "EXTRA=seeds.yaml").splitlines()[:2]
    assert "--configfile experiments/ablation.yaml seeds.yaml" in run
    assert "--configfile experiments/ablation.yaml seeds.yaml" in report


def test_make_report_reports_the_config_it_is_given():
    """The top-level `make report` takes the config and the report's path explicitly
    (defaults: the book's run); make run and make demo pass their own."""
    default = make_plan("report", folder=REPO)
    assert "snakemake --report results/report.html --configfile config/config.yaml" in default
    mine = make_plan("report", "CONFIG=my.yaml", "REPORT=out/r.html", folder=REPO)
    assert "snakemake --report out/r.html --configfile my.yaml" in mine
    demo = make_plan("demo", folder=REPO)
    assert "--configfile config/demo.yaml" in demo
    assert "report CONFIG=config/demo.yaml REPORT=results/demo/report.html" in demo


def test_tables_copies_only_finished_grids(tmp_path):
    """`make -C experiments tables` puts each finished grid's workflow-written tables in
    place and names the grids that have not run."""
    repo = tmp_path / "repo"
    (repo / "experiments").mkdir(parents=True)
    (repo / "experiments" / "Makefile").write_text((EXPERIMENTS / "Makefile").read_text())
    summary = repo / "results" / "genes" / "summary"
    summary.mkdir(parents=True)
    for name in ("summary.md", "effects.md", "comparison.tsv", "paired_effects.png"):
        (summary / name).write_text(f"{name} of genes\n")
    result = subprocess.run(
        ["make", "-s", "tables"], cwd=repo / "experiments", capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    copied = repo / "experiments" / "results" / "genes" / "effects.md"
    assert copied.read_text() == "effects.md of genes\n"
    assert "ablation: no finished run" in result.stdout
    assert not (repo / "experiments" / "results" / "ablation").exists()


@pytest.mark.workflow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")
@pytest.mark.parametrize("grid", ["ablation", "finalists", "genes", "panel"])
def test_grid_config_plans_every_run(tmp_path, grid):
    """Each grid's config validates and plans every dataset x method x seed, the real
    datasets read in place from ../shared/data (paths relative to the repository)."""
    config = yaml.safe_load((EXPERIMENTS / f"{grid}.yaml").read_text())
    for dataset in config["datasets"].values():
        if "path" in dataset:
            dataset["path"] = str((REPO / dataset["path"]).resolve())
            assert Path(dataset["path"]).is_file(), dataset["path"]
    configfile = write_config(tmp_path / "grid.yaml", config)
    result = snakemake(tmp_path, "-n", "--configfile", str(configfile), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    plan = job_counts(result.stdout)
    n_runs = len(config["datasets"]) * len(config["methods"]) * len(config["seeds"])
    kinds = [spec["kind"] for spec in config["methods"].values()]
    n_per_method = len(config["datasets"]) * len(config["seeds"])
    assert plan["cluster"] == n_runs and plan["preprocess"] == len(config["datasets"])
    assert plan.get("train_vae", 0) == kinds.count("vae") * n_per_method
    assert plan["compare"] == 1


def fake_grid(folder: Path) -> None:
    """metrics.tsv of a grid of 4 datasets, 2 seeds: `good` beats PCA by 0.1 on three
    datasets and loses by 0.3 on `d3`; `plain` is level with PCA everywhere."""
    import pandas as pd

    rows = []
    for dataset in ("d0", "d1", "d2", "d3"):
        for seed in (0, 1):
            for method, gain in (("pca", 0.0), ("vae", -0.05), ("plain", 0.0), ("good", 0.1)):
                gain = -0.3 if (method, dataset) == ("good", "d3") else gain
                ari = 0.5 + gain + 0.01 * seed
                rows.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "seed": seed,
                        "matched_ari": ari,
                        "kmeans_ari": ari,
                    }
                )
    (folder / "summary").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "summary" / "metrics.tsv", sep="\t", index=False)


def test_selection_rule_chooses_by_mean_rank_and_judges_each_pick_on_the_left_out_set(tmp_path):
    import pandas as pd

    fake_grid(tmp_path / "grid")
    result = subprocess.run(
        [
            str(REPO / ".venv/bin/python"),
            str(EXPERIMENTS / "choose.py"),
            "fakegrid",
            "--results",
            str(tmp_path / "grid"),
        ],
        capture_output=True,
        text=True,
    )
    out = EXPERIMENTS / "results" / "fakegrid"
    try:
        assert result.returncode == 0, result.stderr
        table = pd.read_csv(out / "selection.tsv", sep="\t").set_index("held_out")
        text = (out / "selection.md").read_text()
    finally:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    # in sample: `good` ranks first on three of four datasets
    assert "The rule applied to every dataset chooses `good`" in text
    # every fold picks `good` (it still leads on the other three) and is judged on the
    # left-out set: +0.1 over PCA on d0..d2, -0.3 on d3, and 0.15 / -0.25 over the book
    assert (table["chosen_on_the_others"] == "good").all()
    assert table.loc["d0", "kmeans_ari - pca"] == pytest.approx(0.1)
    assert table.loc["d3", "matched_ari - pca"] == pytest.approx(-0.3)
    assert table.loc["d3", "kmeans_ari - vae"] == pytest.approx(-0.25)
    assert "3 of 4" in text  # held-out datasets won against PCA
