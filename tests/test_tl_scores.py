"""scembed.tl.evaluate and scembed.tl.compare against the cluster, integration and
compare jobs on the same embeddings: the same scores, the same comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pytest
from conftest import schema_defaults
from jobs import CLUSTER, RUN_KEYS, SHORT, run_script, written

import scembed


def job_scores(adata, tmp_path, monkeypatch, integration=False):
    """metrics.json of the cluster job (and integration.tsv of the integration job) on
    the workflow's PCA embedding of ``adata``."""
    embedding = run_script(
        "embed_pca",
        monkeypatch,
        tmp_path,
        [written(adata, tmp_path, "pbmc_pre")],
        {"embedding": "embedding.h5ad"},
        method={"kind": "pca", "n_components": 10, "use_batch": False},
    )["embedding"]
    cluster = {**schema_defaults("cluster"), **CLUSTER}
    outputs = {"clusters": "clusters.tsv", "umap": "umap.png", "metrics": "metrics.json"}
    files = run_script("cluster", monkeypatch, tmp_path, [embedding], outputs, cluster=cluster)
    metrics = json.loads(Path(files["metrics"]).read_text())
    if integration:
        params = {"batch_key": "phase", "knn_search": cluster["knn_search"]}
        outputs = {"tsv": "integration.tsv"}
        table = run_script(
            "integration", monkeypatch, tmp_path, [embedding], outputs, integration=params
        )["tsv"]
        row = pd.read_csv(table, sep="\t", float_precision="round_trip").iloc[0]
        return metrics, row.to_dict()
    return metrics, None


def test_evaluate_is_the_cluster_and_integration_jobs(pbmc_pre, tmp_path, monkeypatch):
    metrics, integration = job_scores(pbmc_pre, tmp_path, monkeypatch, integration=True)
    mine = pbmc_pre.copy()
    scembed.tl.pca(mine)
    scores = scembed.tl.evaluate(mine, "X_pca", **CLUSTER)
    for key, value in metrics.items():
        if key not in RUN_KEYS:
            assert scores.pop(key) == value, key
    for key, value in integration.items():
        if key not in ("dataset", "method", "seed", "batch_key"):
            assert scores.pop(key) == value, key
    assert not scores  # every score is the jobs'
    assert 0 < metrics["matched_ari"] < 1 and 0 < integration["ilisi"] <= 1
    assert mine.obsm.keys() == {"X_pca"} and "leiden" not in mine.obs  # not modified


def test_evaluate_without_a_batch(pbmc_plain, tmp_path, monkeypatch):
    metrics, _ = job_scores(pbmc_plain, tmp_path, monkeypatch)
    mine = pbmc_plain.copy()
    scembed.tl.pca(mine)
    scores = scembed.tl.evaluate(mine, "X_pca", "bulk_labels", threads=1, **CLUSTER)
    assert scores == {k: v for k, v in metrics.items() if k not in RUN_KEYS}
    assert "ilisi" not in scores


@pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2,
    reason="numba's pool has 1 thread: threads=1 and its restoring change nothing to check",
)
def test_evaluate_sets_numbas_threads_and_restores_them(pbmc_plain, monkeypatch):
    import scembed.evaluate as evaluate

    original, seen = evaluate.evaluate_embedding, []

    def spy(*args, **kwargs):
        seen.append(numba.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_embedding", spy)
    mine = pbmc_plain.copy()
    scembed.tl.pca(mine)
    pool = numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(pool)  # a cluster job run in this process may have pinned 1
    scembed.tl.evaluate(mine, "X_pca", "bulk_labels", threads=1, **CLUSTER)
    assert seen == [1] and numba.get_num_threads() == pool
    with pytest.raises(ValueError, match=f"NUMBA_NUM_THREADS={pool + 1}"):
        scembed.tl.evaluate(mine, "X_pca", "bulk_labels", threads=pool + 1, **CLUSTER)
    assert numba.get_num_threads() == pool


def test_evaluate_refuses_bad_input(pbmc_plain):
    mine = pbmc_plain.copy()
    scembed.tl.pca(mine)
    with pytest.raises(ValueError, match=r"there is no label column 'cell_type'; the columns are"):
        scembed.tl.evaluate(mine, "X_pca", "cell_type")
    with pytest.raises(ValueError, match=r"no obsm\['X_umap'\]; its embeddings are \['X_pca'\]"):
        scembed.tl.evaluate(mine, "X_umap")
    with pytest.raises(ValueError, match=r"unknown cluster parameter\(s\) \['k'\]"):
        scembed.tl.evaluate(mine, "X_pca", k=5)
    with pytest.raises(ValueError, match="`batch_key` and `label_key` both name the column"):
        scembed.tl.evaluate(mine, "X_pca", batch_key="bulk_labels")
    mine.obsm["X_pca"][3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite values in 1 cells"):
        scembed.tl.evaluate(mine, "X_pca")


# --------------------------------------------------------------------------- comparison


def test_compare_is_the_compare_job(pbmc_plain, tmp_path, monkeypatch):
    from scembed.summary import write_metrics_table

    runs = []
    for seed in (0, 1, 2):
        mine = pbmc_plain.copy()
        scembed.tl.pca(mine, seed=seed)
        scembed.tl.vae(mine, seed=seed, **SHORT)
        for method, rep in (("pca", "X_pca"), ("vae", "X_vae")):
            scores = scembed.tl.evaluate(mine, rep, seed=seed, **CLUSTER)
            runs.append({"method": method, **scores})
    path = tmp_path / "metrics.tsv"
    write_metrics_table(pd.DataFrame([{"dataset": "pbmc", **run} for run in runs]), path)
    outputs = {
        "comparison": "comparison.tsv",
        "headline": "summary.md",
        "effects": "effects.md",
        "effects_figure": "paired_effects.png",
        "variants": "variants.tsv",
    }
    files = run_script(
        "compare", monkeypatch, tmp_path, [path], outputs, baseline="pca", variants={}
    )
    job = pd.read_csv(files["comparison"], sep="\t")
    table = pd.read_csv(path, sep="\t")
    mine = scembed.tl.compare(table)
    pd.testing.assert_frame_equal(mine, job, check_dtype=False, check_exact=False, atol=6e-5)
    assert set(mine["metric"]) >= {"ari", "matched_ari", "knn_accuracy"}
    vae_ari = mine[(mine["metric"] == "ari") & (mine["method"] == "vae")].iloc[0]
    assert vae_ari["paired_seeds"] == 3 and vae_ari["baseline"] == "pca"
    # a list of evaluate() results, without a dataset (one, named "data"): the job's
    # comparison, given the runs as metrics.tsv holds them (four decimals)
    listed = scembed.tl.compare(table.drop(columns="dataset").to_dict("records"))
    assert set(listed["dataset"]) == {"data"}
    pd.testing.assert_frame_equal(
        listed.drop(columns="dataset"),
        job.drop(columns="dataset"),
        check_dtype=False,
        check_exact=False,
        atol=6e-5,
    )
    with pytest.raises(ValueError, match=r"no column \['method'\]"):
        scembed.tl.compare([{"seed": 0, "ari": 0.5}])
    with pytest.raises(ValueError, match="repeat a"):
        scembed.tl.compare(runs + runs[:1])
