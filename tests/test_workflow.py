"""The Snakemake workflow: lint, planning, config validation, downloads and one real run."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    DEFAULT_PLAN,
    REPO,
    closed_port_url,
    h5ad_config,
    labelled_h5ad,
    serve,
    snakemake,
    synthetic_config,
    write_config,
    write_zeisel,
)
from dry_run import job_counts
from sklearn.metrics import adjusted_rand_score

pytestmark = pytest.mark.workflow


def with_default_config(workdir: Path) -> Path:
    """A working directory holding config/config.yaml, as the repository root does."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config" / "config.yaml", workdir / "config" / "config.yaml")
    return workdir


def run_config(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    configfile = write_config(workdir / "run.yaml", config)
    return snakemake(workdir, "--configfile", str(configfile), *args, timeout=600)


def run_failing(workdir: Path, config: dict, *args: str) -> str:
    """``run_config`` that must fail; returns its stdout and stderr."""
    result = run_config(workdir, config, "--cores", "1", *args)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    return output


# --------------------------------------------------------------------------- lint, plans


def test_dry_run_default_config(tmp_path):
    workdir = with_default_config(tmp_path)
    result = snakemake(workdir, "-n")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert counts == DEFAULT_PLAN
    assert "results/cortex/download/expression.txt" in result.stdout
    assert not (workdir / "results").exists()


def test_dry_run_demo_config(tmp_path):
    workdir = with_default_config(tmp_path)
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "demo.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert counts == {rule: n for rule, n in DEFAULT_PLAN.items() if rule != "download_zeisel"}
    assert "results/demo/pbmc68k/raw.h5ad" in result.stdout  # apart from the book's results/
    assert "cortex" not in result.stdout


def test_dry_run_plans_integration_scores_only_for_a_dataset_with_a_batch(tmp_path):
    config = synthetic_config(seeds=[0, 1])  # pca and vae
    plain = config["datasets"]["synthetic"]
    config["datasets"] = {
        "plain": plain,
        "batched": {**plain, "n_batches": 2, "batch_key": "batch"},
        "named": {**plain, "n_batches": 3, "batch_key": "batch"},
    }
    result = run_config(tmp_path, config, "-n")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert counts["integration"] == 2 * 2 * 2  # 2 datasets x 2 methods x 2 seeds
    assert counts["plot_integration"] == 2 and counts["plot_dataset"] == 3
    for dataset in ("batched", "named"):
        assert f"results/{dataset}/vae/seed1/integration.tsv" in result.stdout
        assert f"results/summary/{dataset}/integration.png" in result.stdout
    assert "results/plain/pca/seed0/integration.tsv" not in result.stdout
    assert "results/summary/plain/integration.png" not in result.stdout


def test_configfile_replaces_default_config(tmp_path):
    workdir = with_default_config(tmp_path)
    config = synthetic_config(seeds=[3])
    result = run_config(workdir, config, "-n")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert "download_zeisel" not in counts
    assert "cortex" not in result.stdout
    assert counts["import_dataset"] == 1
    assert counts["cluster"] == 2  # pca and vae, seed 3 only: the default's seeds are gone
    assert "results/synthetic/pca/seed3/metrics.json" in result.stdout
    assert "seed0" not in result.stdout


# --------------------------------------------------------------------------- bad configs


def zeisel_dataset(**extra) -> dict:
    return {"source": "zeisel2015", "urls": [closed_port_url()], **extra}


BAD_CONFIGS = {
    "unknown top-level key": ({"clusters": {"resolution": 2.0}}, "clusters"),
    "unknown dataset key": (
        {"datasets": {"synthetic": {"source": "synthetic", "n_cell": 100}}},
        "n_cell",
    ),
    "unknown source": ({"datasets": {"synthetic": {"source": "zeisel2016"}}}, "zeisel2016"),
    "unknown method kind": ({"methods": {"pca": {"kind": "tsne"}}}, "tsne"),
    "key of another source": ({"datasets": {"synthetic": zeisel_dataset(n_cells=50)}}, "n_cells"),
    "unknown preprocess key": (
        {"preprocess": {"n_top_gene": 100}},
        "n_top_gene",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_fails_before_any_job(tmp_path, case):
    change, name = BAD_CONFIGS[case]
    config = synthetic_config(**change)
    output = run_failing(tmp_path, config, "results/synthetic/raw.h5ad")
    errors = [line for line in output.splitlines() if line.startswith("ValidationError")]
    assert errors, output
    assert f"'{name}'" in errors[0]
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- Zeisel download


def test_zeisel_download_through_the_workflow(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    data = write_zeisel(served / "expression.txt")
    body = data["path"].read_bytes()
    workdir = tmp_path / "run"
    workdir.mkdir()
    with serve({"/mirror/expression.txt": (body, None)}) as base:
        urls = [f"{base}/gone/expression.txt", f"{base}/mirror/expression.txt"]
        config = {
            "datasets": {
                "tiny": {
                    "source": "zeisel2015",
                    "urls": urls,
                    "preprocess": {"n_top_genes": 20, "min_genes": 5},
                    "cluster": {"n_neighbors": 5},
                }
            },
            "methods": {"pca": {"kind": "pca", "n_components": 3}},
            "seeds": [0],
        }
        result = run_config(workdir, config, "--cores", "1", "results/tiny/raw.h5ad")
    assert result.returncode == 0, result.stdout + result.stderr
    raw = ad.read_h5ad(workdir / "results" / "tiny" / "raw.h5ad")
    np.testing.assert_array_equal(raw.X.toarray(), data["counts"])
    assert list(raw.obs_names) == data["cell_ids"]
    assert list(raw.obs["level1class"]) == data["level1"]  # the schema's default label_key
    provenance = raw.uns["provenance"]
    assert provenance["url"] == urls[1]
    assert provenance["sha256"] == hashlib.sha256(body).hexdigest()
    assert int(provenance["bytes"]) == len(body)
    download = json.loads((workdir / "results/tiny/download/download.json").read_text())
    assert download["url"] == urls[1]
    assert download["sha256"] == provenance["sha256"]
    assert sorted(p.name for p in (workdir / "results/tiny/download").iterdir()) == [
        "download.json",
        "expression.txt",
    ]


def test_zeisel_download_every_mirror_fails(tmp_path):
    with serve({}) as base:
        urls = [f"{base}/gone/expression.txt", closed_port_url()]
        config = {
            "datasets": {"tiny": {"source": "zeisel2015", "urls": urls}},
            "methods": {"pca": {"kind": "pca"}},
        }
        output = run_failing(tmp_path, config, "--show-failed-logs", "results/tiny/raw.h5ad")
    assert "download_zeisel" in output
    for url in urls:
        assert url in output
    assert "404" in output and "refused" in output.lower()
    assert "path: /where/you/saved/it` under datasets.tiny" in output
    download = tmp_path / "results" / "tiny" / "download"
    assert not (download / "expression.txt").exists()
    assert not (tmp_path / "results" / "tiny" / "raw.h5ad").exists()
    assert not download.exists() or not [p for p in download.iterdir() if p.suffix == ".part"]


def test_missing_label_column_through_the_workflow(tmp_path):
    labelled_h5ad(tmp_path / "cells.h5ad")
    config = {
        "datasets": {"mine": {"source": "h5ad", "path": "cells.h5ad", "label_key": "celltype"}},
        "methods": {"pca": {"kind": "pca"}},
    }
    output = run_failing(tmp_path, config, "--show-failed-logs", "results/mine/raw.h5ad")
    assert "no label column 'celltype'" in output
    assert "['cell_type', 'batch']" in output
    assert not (tmp_path / "results" / "mine" / "raw.h5ad").exists()


# --------------------------------------------------------------------------- one real run

METHODS = {
    "pca": {"kind": "pca", "n_components": 10},
    "vae": {"kind": "vae", "preset": "book", "max_epochs": 3, "patience": 2, "device": "cpu"},
    "scvi": {"kind": "scvi", "max_epochs": 3, "n_hidden": 32, "device": "cpu"},
}
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """One synthetic run of PCA and a short VAE over two seeds, then its HTML report."""
    workdir = tmp_path_factory.mktemp("synthetic_run")
    config = synthetic_config(methods=METHODS, seeds=SEEDS)
    result = run_config(workdir, config, "--cores", "2", "--show-failed-logs")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    report = run_config(workdir, config, "--report", "results/report.html")
    assert report.returncode == 0, report.stdout[-5000:] + report.stderr[-5000:]
    return workdir, config


def test_run_metrics_table(synthetic_run):
    workdir, config = synthetic_run
    dataset = config["datasets"]["synthetic"]
    table = pd.read_csv(workdir / "results/summary/metrics.tsv", sep="\t")
    columns = ["dataset", "method", "seed", "n_cells", "n_genes", "n_labels", "n_scored"]
    assert list(table.columns[: len(columns) + 2]) == [*columns, "ari", "n_clusters"]
    grid = sorted(zip(table["dataset"], table["method"], table["seed"], strict=True))
    assert grid == [("synthetic", m, s) for m in sorted(METHODS) for s in SEEDS]
    pre = ad.read_h5ad(workdir / "results/synthetic/preprocessed.h5ad", backed="r")
    assert (table["n_cells"] == pre.n_obs).all()
    assert 10 <= pre.n_obs <= dataset["n_cells"]
    assert (table["n_genes"] == dataset["preprocess"]["n_top_genes"]).all()
    assert (table["n_labels"] == dataset["n_types"]).all()
    assert (table["n_clusters"] >= 1).all() and (table["n_clusters"] <= pre.n_obs).all()
    assert table["ari"].between(-0.5, 1).all() and table["nmi"].between(0, 1).all()
    assert (table.loc[table["method"] == "pca", "ari"] > 0).all()


def test_run_per_run_outputs(synthetic_run):
    workdir, config = synthetic_run
    pre = ad.read_h5ad(workdir / "results/synthetic/preprocessed.h5ad")
    for method in METHODS:
        for seed in SEEDS:
            folder = workdir / "results" / "synthetic" / method / f"seed{seed}"
            clusters = pd.read_csv(folder / "clusters.tsv", sep="\t")
            assert list(clusters.columns[:3]) == ["cell", "label", "cluster"]
            assert list(clusters["cell"]) == list(pre.obs_names)
            assert list(clusters["label"]) == list(pre.obs["cell_type"])
            assert (folder / "umap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            metrics = json.loads((folder / "metrics.json").read_text())
            assert (metrics["dataset"], metrics["method"], metrics["seed"]) == (
                "synthetic",
                method,
                seed,
            )
            # the reported ARI is that of the clusters written next to it
            ari = adjusted_rand_score(clusters["label"], clusters["cluster"])
            assert metrics["ari"] == pytest.approx(ari)
            assert metrics["n_clusters"] == clusters["cluster"].nunique()
    for method in ("vae", "scvi"):
        folder = workdir / f"results/synthetic/{method}/seed0"
        history = pd.read_csv(folder / "history.tsv", sep="\t")
        assert 1 <= len(history) <= METHODS[method]["max_epochs"]
        assert (folder / "model.pt").stat().st_size > 0
    embedding = ad.read_h5ad(workdir / "results/synthetic/scvi/seed0/embedding.h5ad")
    assert embedding.obsm["X_emb"].shape == (pre.n_obs, 10)  # scVI's default n_latent
    assert embedding.uns["embedding"]["kind"] == "scvi"
    log = (workdir / "results/logs/train_scvi/synthetic/scvi/seed0.log").read_text()
    n_split = pre.obs["split"].value_counts()
    assert f"{n_split['train']} train cells, {n_split['validation']} validation cells" in log


def test_run_preprocessed(synthetic_run):
    workdir, config = synthetic_run
    pre = ad.read_h5ad(workdir / "results/synthetic/preprocessed.h5ad")
    raw = ad.read_h5ad(workdir / "results/synthetic/raw.h5ad")
    counts = pre.layers["counts"]
    assert np.issubdtype(counts.dtype, np.integer)
    expected = raw[pre.obs_names, pre.var_names].X.toarray()
    np.testing.assert_array_equal(counts.toarray(), expected)
    assert set(pre.obs["split"].cat.categories) == {"train", "validation", "test"}
    fractions = pre.obs["split"].value_counts(normalize=True)
    assert fractions["validation"] == pytest.approx(0.1, abs=0.01)
    assert fractions["test"] == pytest.approx(0.05, abs=0.01)
    # X is log1p of counts normalised to 10,000 per cell
    np.testing.assert_allclose(np.expm1(pre.X.toarray()).sum(axis=1), 1e4, rtol=1e-3)
    assert raw.uns["provenance"]["source"] == "synthetic"


def test_run_summary_outputs(synthetic_run):
    """comparison.tsv, summary.md, provenance.json and figures agree with metrics.tsv."""
    workdir, config = synthetic_run
    summary = workdir / "results" / "summary"
    metrics = pd.read_csv(summary / "metrics.tsv", sep="\t")
    for column in ("ami", "matched_ari", "matched_nmi", "kmeans_ari", "silhouette", "knn_accuracy"):
        assert metrics[column].notna().all(), column
    assert (metrics["device"] == "cpu").all()

    comparison = pd.read_csv(summary / "comparison.tsv", sep="\t")
    ari = comparison[(comparison["metric"] == "ari")].set_index("method")
    for method in METHODS:
        runs = metrics.loc[metrics["method"] == method, "ari"]
        assert ari.loc[method, "mean"] == pytest.approx(runs.mean(), abs=1e-4)
        assert ari.loc[method, "n_seeds"] == len(SEEDS)
    paired = metrics.pivot(index="seed", columns="method", values="ari")
    diffs = paired["vae"] - paired["pca"]
    assert ari.loc["vae", "diff_mean"] == pytest.approx(diffs.mean(), abs=1e-4)
    assert ari.loc["vae", "wins"] == (diffs > 0).sum()
    assert ari.loc["vae", "diff_ci_low"] <= ari.loc["vae", "diff_ci_high"]

    headline = (summary / "summary.md").read_text()
    pca_ari = metrics.loc[metrics["method"] == "pca", "ari"]
    headline_number = f"{pca_ari.mean():.3f} ± {pca_ari.std(ddof=1):.3f}"
    assert headline_number in headline

    # the paired-effects table and figure of the comparison stage, against pca
    from scembed.compare import compare_methods

    exact = compare_methods(metrics, "auto").set_index(["metric", "method"])
    effects = (summary / "effects.md").read_text()
    assert "## synthetic: difference from pca" in effects
    for method in ("vae", "scvi"):
        row = exact.loc[("matched_ari", method)]
        cell = f"{row.diff_mean:+.3f} [{row.diff_ci_low:+.3f}, {row.diff_ci_high:+.3f}]"
        assert cell in effects, (method, cell)
    assert (summary / "paired_effects.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    variants = pd.read_csv(summary / "variants.tsv", sep="\t")  # no variant_of: no rows
    assert variants.empty and {"variant_of", "diff_mean"} <= set(variants.columns)
    assert "Dataset variants" not in effects

    provenance = json.loads((summary / "provenance.json").read_text())
    assert provenance["data"]["synthetic"]["source"] == "synthetic"
    assert provenance["packages"]["torch"].startswith("2.13")
    assert provenance["packages"]["scvi-tools"] == "1.4.2"  # the scvi runs' version
    assert provenance["devices"]["synthetic/vae"] == ["cpu"]
    assert set(provenance["config"]["methods"]) == set(METHODS)
    for figure in ("metrics", "umaps", "losses", "heatmap"):
        png = summary / "synthetic" / f"{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure

    # the self-contained HTML report embeds summary.md (base64 data URI) with its numbers
    html = (workdir / "results" / "report.html").read_text()
    embedded = re.search(r"data:text/markdown;[^,]*filename=summary\.md;base64,([^\"]+)", html)
    assert embedded, "summary.md is not embedded in the report"
    assert headline_number in base64.b64decode(embedded.group(1)).decode()
    for figure in ("metrics", "umaps", "losses", "heatmap"):
        assert f"results/summary/synthetic/{figure}.png" in html


# --------------------------------------------------------------------------- valid input


def run_with_report(workdir: Path, config: dict) -> Path:
    """Run ``config`` to the end and build its report; return the summary folder."""
    results = workdir / config.get("results_dir", "results")
    result = run_config(workdir, config, "--cores", "2", "--show-failed-logs")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    report = run_config(workdir, config, "--report", str(results / "report.html"))
    assert report.returncode == 0, report.stdout[-5000:] + report.stderr[-5000:]
    assert (results / "report.html").stat().st_size > 0
    return results / "summary"


SHORT_VAE = {"kind": "vae", "max_epochs": 2, "patience": 2, "device": "cpu"}


def test_realistic_size_run(tmp_path):
    """20,000 cells: approximate neighbours (scanpy's path crashed from 8192 cells; `auto`
    takes them from 10^5), the silhouette's 10,000-cell sample and many inference
    batches."""
    config = {
        "datasets": {
            "large": {
                "source": "synthetic",
                "n_cells": 20_000,
                "n_genes": 120,
                "n_types": 6,
                "preprocess": {"n_top_genes": 100, "min_genes": 5},
            }
        },
        "methods": {"pca": {"kind": "pca", "n_components": 10}, "vae": SHORT_VAE},
        "seeds": [0],
        # leidenalg run to convergence costs minutes per Leiden run at this size (README,
        # "Large datasets"); igraph's two iterations are scanpy's coming default
        "cluster": {
            "knn_search": "approximate",
            "leiden_flavor": "igraph",
            "leiden_directed": False,
            "leiden_n_iterations": 2,
            "umap_max_cells": 5000,  # the UMAP (figures only) of a seeded sample
        },
    }
    summary = run_with_report(tmp_path, config)
    metrics = pd.read_csv(summary / "metrics.tsv", sep="\t").set_index("method")
    assert (metrics["n_cells"] > 19_000).all() and (metrics["n_scored"] == metrics["n_cells"]).all()
    # cells, labels and clusters stay aligned: far above chance (1/6) for both methods
    assert (metrics["knn_accuracy"] > 0.5).all() and (metrics["kmeans_ari"] > 0.1).all()
    assert metrics[["silhouette", "knn_accuracy", "matched_ari"]].notna().all().all()
    clusters = pd.read_csv(tmp_path / "results/large/vae/seed0/clusters.tsv", sep="\t")
    assert len(clusters) == metrics.loc["vae", "n_cells"] and clusters["cluster"].notna().all()
    assert clusters["umap_1"].notna().sum() == 5000 == clusters["umap_2"].notna().sum()
    log = (tmp_path / "results/logs/cluster/large/vae/seed0.log").read_text()
    assert f"UMAP of a seeded sample of 5000 of {len(clusters)} cells" in log
    embedding = ad.read_h5ad(tmp_path / "results/large/vae/seed0/embedding.h5ad")
    assert np.isfinite(embedding.obsm["X_emb"]).all()


def partly_labelled_h5ad(path: Path, n_cells: int = 300, n_missing: int = 30) -> None:
    from scembed.synthetic import simulate_counts

    adata = simulate_counts(n_cells, 100, 3, seed=2)
    labels = adata.obs["cell_type"].astype(object)
    labels.iloc[np.random.default_rng(0).choice(n_cells, n_missing, replace=False)] = np.nan
    adata.obs["cell_type"] = labels
    adata.write_h5ad(path)


def test_partly_labelled_data_without_pca_one_seed(tmp_path):
    """VAEs only (no `pca`), one seed, 30 of 300 cells without a label."""
    partly_labelled_h5ad(tmp_path / "cells.h5ad")
    methods = {"vae": SHORT_VAE, "vae_nb": {**SHORT_VAE, "likelihood": "nb"}}
    config = h5ad_config("cells.h5ad", methods)
    summary = run_with_report(tmp_path, config)
    metrics = pd.read_csv(summary / "metrics.tsv", sep="\t")
    pre = ad.read_h5ad(tmp_path / "results/mine/preprocessed.h5ad")
    n_labelled = int(pre.obs["cell_type"].notna().sum())
    assert 0 < n_labelled < pre.n_obs
    assert (metrics["n_labels"] == 3).all()  # not 4: unlabelled cells are not a type "nan"
    assert (metrics["n_scored"] == n_labelled).all() and (metrics["n_cells"] == pre.n_obs).all()
    clusters = pd.read_csv(tmp_path / "results/mine/vae/seed0/clusters.tsv", sep="\t")
    assert (
        clusters["cluster"].notna().all()
        and clusters["label"].isna().sum() == pre.n_obs - n_labelled
    )
    scored = clusters["label"].notna()
    ari = adjusted_rand_score(clusters.loc[scored, "label"], clusters.loc[scored, "cluster"])
    assert metrics.set_index("method").loc["vae", "ari"] == pytest.approx(ari, abs=1e-4)
    log = (tmp_path / "results/logs/cluster/mine/vae/seed0.log").read_text()
    assert f"scored {n_labelled} of {pre.n_obs} cells against 3 labels" in log
    headline = (summary / "summary.md").read_text()
    assert "no paired comparison: no baseline method" in headline
    assert f"{n_labelled} of them labelled and scored" in headline
    comparison = pd.read_csv(summary / "comparison.tsv", sep="\t")
    assert set(comparison["method"]) == {"vae", "vae_nb"} and comparison["diff_mean"].isna().all()


def test_a_dataset_variant_is_compared_with_the_dataset_it_varies(tmp_path):
    """`variant_of`: the same synthetic counts with seurat_v3 genes instead of the book's
    variance; variants.tsv and effects.md pair each method on the variant with the same
    method on the original, seed by seed, exactly as the metrics table says."""
    base = synthetic_config()["datasets"]["synthetic"]
    variant = {
        **base,
        "variant_of": "synthetic",
        "preprocess": {**base["preprocess"], "gene_selection": "seurat_v3"},
    }
    config = synthetic_config(
        datasets={"synthetic": base, "synthetic_hvg": variant},
        methods={"pca": {"kind": "pca"}},
        seeds=[0, 1],
        cluster={"umap_max_cells": 0},  # as in the ablations: no UMAP, empty UMAP panels
    )
    result = run_config(tmp_path, config, "--cores", "2")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    summary = tmp_path / "results" / "summary"
    metrics = pd.read_csv(summary / "metrics.tsv", sep="\t")
    genes = [
        ad.read_h5ad(tmp_path / f"results/{d}/preprocessed.h5ad", backed="r").var_names
        for d in ("synthetic", "synthetic_hvg")
    ]
    assert len(genes[0]) == len(genes[1]) and set(genes[0]) != set(genes[1])  # other genes
    variants = pd.read_csv(summary / "variants.tsv", sep="\t")
    assert set(variants["dataset"]) == {"synthetic_hvg"}
    assert set(variants["variant_of"]) == {"synthetic"} and set(variants["method"]) == {"pca"}
    wide = metrics.pivot(index="seed", columns="dataset", values="kmeans_ari")
    diffs = wide["synthetic_hvg"] - wide["synthetic"]
    row = variants.set_index("metric").loc["kmeans_ari"]
    assert row["diff_mean"] == pytest.approx(diffs.mean(), abs=1e-4)
    assert row["wins"] == (diffs > 0).sum() and row["paired_seeds"] == 2
    effects = (summary / "effects.md").read_text()
    assert "## synthetic_hvg: difference from synthetic (same method, same seed)" in effects
    for dataset in ("synthetic", "synthetic_hvg"):
        assert (summary / dataset / "umaps.png").read_bytes()[:4] == b"\x89PNG"
    # the source is the same: the variant's import reads the same counts
    raw = [ad.read_h5ad(tmp_path / f"results/{d}/raw.h5ad") for d in ("synthetic", "synthetic_hvg")]
    assert (raw[0].X != raw[1].X).nnz == 0


def test_a_variant_of_an_unknown_dataset_fails_before_any_job(tmp_path):
    config = synthetic_config()
    config["datasets"]["synthetic"]["variant_of"] = "synthetc"
    output = run_failing(tmp_path, config, "-n")
    assert "dataset 'synthetic': variant_of 'synthetc' is not another dataset" in output


def test_an_unknown_baseline_fails_before_any_job(tmp_path):
    config = synthetic_config(baseline="pcaa")
    output = run_failing(tmp_path, config, "-n")
    assert "baseline 'pcaa' is not one of the methods ['pca', 'vae']" in output


# --------------------------------------------------------------------------- reruns, results


def planned(result: subprocess.CompletedProcess) -> dict[str, int]:
    """{rule: jobs} that a dry run plans ({} when it has nothing to do)."""
    assert result.returncode == 0, result.stdout + result.stderr
    if "Nothing to be done" in result.stdout + result.stderr:
        return {}
    return job_counts(result.stdout)


SUMMARIES = {"summarize": 1, "compare": 1, "plot_dataset": 1, "provenance": 1}


def test_a_changed_key_reruns_exactly_what_depends_on_it(synthetic_run):
    """Dry runs on the finished shared run: each changed key plans exactly its dependants."""
    workdir, config = synthetic_run
    assert planned(run_config(workdir, config, "-n")) == {}

    def plan_with(change) -> dict[str, int]:
        changed = copy.deepcopy(config)
        change(changed)
        return planned(run_config(workdir, changed, "-n"))

    def cluster_key(c):
        c["datasets"]["synthetic"]["cluster"] = {"resolution": 0.8}

    def preprocess_key(c):
        c["datasets"]["synthetic"]["preprocess"]["min_genes"] = 11

    def method_key(c):
        c["methods"]["vae"]["max_epochs"] = 4

    def source_key(c):
        c["datasets"]["synthetic"]["seed"] = 1

    seeds, runs = len(SEEDS), len(METHODS) * len(SEEDS)
    trainings = {"embed_pca": seeds, "train_vae": seeds, "train_scvi": seeds}
    everything_after_import = {"preprocess": 1, **trainings, "cluster": runs}
    assert plan_with(cluster_key) == {"cluster": runs, **SUMMARIES, "all": 1}
    assert plan_with(method_key) == {"train_vae": seeds, "cluster": seeds, **SUMMARIES, "all": 1}
    assert plan_with(preprocess_key) == {**everything_after_import, **SUMMARIES, "all": 1}
    source = plan_with(source_key)
    assert source == {"import_dataset": 1, **everything_after_import, **SUMMARIES, "all": 1}
    assert planned(run_config(workdir, config, "-n")) == {}  # and back: nothing to do


def reordered(value):
    """``value`` with every mapping's keys in reverse order and every float that is a
    whole number written as an int (1.0 -> 1), as a YAML formatter or a user may."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def test_a_config_in_another_key_order_reruns_nothing(synthetic_run):
    """The finished run's config written back with every key in another order, its
    methods and seeds listed the other way round and whole floats as ints (a number key
    such as cluster.resolution: 1 for 1.0) plans nothing: rule params are canonical."""
    workdir, config = synthetic_run
    equivalent = reordered(config)
    equivalent["seeds"] = list(reversed(config["seeds"]))
    equivalent["cluster"] = {"resolution": 1, "umap_min_dist": 0.5}  # the schema's 1.0, 0.5
    equivalent["preprocess"] = {"target_sum": 10000, "validation_fraction": 0.1}
    assert list(equivalent["methods"]) != list(config["methods"])
    assert planned(run_config(workdir, equivalent, "-n")) == {}
    # the test can fail: an equivalent value, but another number, reruns the clustering
    equivalent["cluster"]["resolution"] = 1.01
    assert planned(run_config(workdir, equivalent, "-n"))["cluster"] == len(METHODS) * len(SEEDS)


def test_a_source_copied_again_with_the_same_bytes_reruns_nothing(tmp_path):
    """A data file copied again (or re-mounted) gets a new mtime. profiles/local compares
    the checksums of inputs up to 256 MB, so the same bytes rerun nothing, where Snakemake's
    own limit (1 MB) reruns the whole dataset; changed bytes still rerun it."""
    from scembed.synthetic import simulate_counts

    adata = simulate_counts(600, 600, 3, seed=3)
    adata.X = adata.X.toarray().astype(np.float32)  # dense: above Snakemake's 1 MB
    source = tmp_path / "cells.h5ad"
    adata.write_h5ad(source)
    assert source.stat().st_size > 1_000_000
    config = h5ad_config("cells.h5ad", {"pca": {"kind": "pca", "n_components": 10}}, 100)
    profile = ("--profile", str(REPO / "profiles" / "local"))
    result = run_config(tmp_path, config, *profile, "--cores", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    def copy_again(path: Path) -> None:
        shutil.copyfile(path, tmp_path / "copy.h5ad")
        os.replace(tmp_path / "copy.h5ad", path)
        later = (tmp_path / "results/mine/pca/seed0/metrics.json").stat().st_mtime + 60
        os.utime(path, (later, later))

    copy_again(source)
    assert planned(run_config(tmp_path, config, *profile, "-n")) == {}
    assert "import_dataset" in planned(run_config(tmp_path, config, "-n"))  # without it
    adata.X[0, 0] += 1
    adata.write_h5ad(source)
    copy_again(source)
    everything = {"import_dataset": 1, "preprocess": 1, "embed_pca": 1, "cluster": 1}
    assert planned(run_config(tmp_path, config, *profile, "-n")) == {
        **everything,
        **SUMMARIES,
        "all": 1,
    }


def test_only_datasets_runs_some_datasets_and_shares_their_finished_runs(synthetic_run):
    """`only_datasets` (`make ... DATASETS=`): a second dataset in the config plans its
    own jobs only, and the finished dataset's runs are reused, not rerun."""
    workdir, config = synthetic_run
    two = copy.deepcopy(config)
    two["datasets"]["other"] = {**config["datasets"]["synthetic"], "seed": 1}
    runs = len(METHODS) * len(SEEDS)
    other = {"import_dataset": 1, "preprocess": 1, "embed_pca": len(SEEDS)}
    other |= {"train_vae": len(SEEDS), "train_scvi": len(SEEDS), "cluster": runs}
    everything = {**other, **SUMMARIES, "plot_dataset": 2, "all": 1}
    assert planned(run_config(workdir, two, "-n")) == everything
    only_other = planned(run_config(workdir, two, "-n", "--config", "only_datasets=other"))
    assert only_other == {**other, **SUMMARIES, "all": 1}
    # the finished dataset alone: its runs and figures are reused; the summary files that
    # record the config (provenance) are written again
    only_synthetic = planned(
        run_config(workdir, two, "-n", "--config", "only_datasets=[synthetic]")
    )
    assert set(only_synthetic) <= {"provenance", "all"}, only_synthetic
    # `only_methods` (`make ... METHODS=`): the new dataset's PCA runs alone, the other
    # methods plan nothing; the summary is written again for the methods run
    only_pca = planned(
        run_config(workdir, two, "-n", "--config", "only_datasets=other", "only_methods=pca")
    )
    assert only_pca == {
        "import_dataset": 1,
        "preprocess": 1,
        "embed_pca": len(SEEDS),
        "cluster": len(SEEDS),
        **SUMMARIES,
        "all": 1,
    }
    assert planned(run_config(workdir, config, "-n")) == {}


def test_pca_only_in_its_own_results_dir(tmp_path):
    """One method (no paired comparison), two seeds, its own results_dir; every output
    gets the permissions the umask gives any file."""
    config = synthetic_config(methods={"pca": {"kind": "pca"}}, seeds=[0, 1], results_dir="out/a")
    summary = run_with_report(tmp_path, config)
    a = tmp_path / "out" / "a"
    assert summary == a / "summary"
    assert (a / "synthetic" / "raw.h5ad").exists() and (a / "logs").is_dir()
    assert not (tmp_path / "results").exists()
    metrics = pd.read_csv(summary / "metrics.tsv", sep="\t")
    assert list(metrics["method"]) == ["pca", "pca"]
    headline = (summary / "summary.md").read_text()
    assert "only the baseline pca ran" in headline
    ari = metrics["ari"]
    assert f"| pca | 2 | {ari.mean():.3f} ± {ari.std(ddof=1):.3f} |" in headline
    for figure in ("metrics", "umaps", "losses", "heatmap"):
        assert (summary / "synthetic" / f"{figure}.png").stat().st_size > 0
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("metrics.tsv", "comparison.tsv", "summary.md", "provenance.json"):
        mode = (summary / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, (name, oct(mode))
    other = {**config, "results_dir": "out/b"}
    plan = planned(run_config(tmp_path, other, "-n"))
    assert plan["import_dataset"] == 1  # nothing of out/a is reused or overwritten


# --------------------------------------------------------------------------- as a module

HOST_SNAKEFILE = """\
configfile: "config.yaml"


module scembed:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from scembed as scembed_*
"""


def test_the_workflow_runs_as_a_module_of_another_workflow(tmp_path):
    """A host workflow in another folder uses this one as a Snakemake module (local path),
    as `snakedeploy deploy-workflow` sets it up: the library, schema and scripts are found
    from the workflow's own files, and the test config runs to its summary."""
    (tmp_path / "Snakefile").write_text(
        HOST_SNAKEFILE.format(snakefile=REPO / "workflow" / "Snakefile")
    )
    shutil.copy(REPO / "config" / "test.yaml", tmp_path / "config.yaml")
    command = [sys.executable, "-m", "snakemake", "--cores", "2"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "rule scembed_train_vae:" in output  # the module's rules, renamed by the host
    metrics = pd.read_csv(tmp_path / "results" / "summary" / "metrics.tsv", sep="\t")
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    runs = {(method, seed) for method in config["methods"] for seed in config["seeds"]}
    assert set(zip(metrics["method"], metrics["seed"], strict=True)) == runs
    assert metrics["ari"].between(-1, 1).all()
    provenance = json.loads((tmp_path / "results" / "summary" / "provenance.json").read_text())
    assert provenance["config"]["methods"].keys() == config["methods"].keys()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert provenance["workflow"]["commit"] == head.stdout.strip()  # ours, not the host's
