"""scembed.tl against the workflow's jobs on the same preprocessed data: the same
embeddings (embed_pca, train_vae), the same scores (cluster, integration) and the same
comparison (compare), and the thread counts of the caller left as they were."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import rule_script, schema_defaults

import scembed
from scembed.runtime import write_h5ad

SHORT = {"n_hidden": 32, "max_epochs": 3, "kl_warmup_epochs": 1, "device": "cpu"}
CLUSTER = {"n_neighbors": 10}
RUN_KEYS = ("dataset", "method", "kind", "device", "n_genes")


@pytest.fixture(scope="module")
def pre():
    """pbmc68k through the book's preprocessing, with its cell-cycle phase as the batch."""
    adata = scembed.pp.book(
        scembed.datasets.pbmc68k(), batch_key="phase", n_top_genes=300, min_genes=50
    )
    return adata


@pytest.fixture(scope="module")
def plain(pre):
    """The same cells without a batch."""
    adata = pre.copy()
    del adata.uns["batch_key"]
    return adata


class Wildcards(SimpleNamespace):
    """Snakemake's wildcards: named, and a sequence (``*wildcards[:2]``)."""

    def __getitem__(self, index):
        return [self.dataset, self.method, self.seed][index]


def run_script(name, monkeypatch, tmp_path, inputs, outputs, **params):
    """Run workflow/scripts/<name>.py's main with a fake snakemake object (one thread,
    dataset "pbmc", method "m", seed 0); its outputs are files in tmp_path."""
    script = rule_script(name)
    monkeypatch.setattr(script, "setup_logging", lambda path: logging.getLogger("test_api"))
    if hasattr(script, "stop_on_signals"):
        monkeypatch.setattr(script, "stop_on_signals", lambda *args: None)
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = {key: str(tmp_path / filename) for key, filename in outputs.items()}
    snakemake = SimpleNamespace(
        input=[str(path) for path in inputs],
        output=SimpleNamespace(**files) if len(files) > 1 else list(files.values()),
        log=[str(tmp_path / f"{name}.log")],
        threads=1,
        wildcards=Wildcards(dataset="pbmc", method="m", seed="0"),
        params=SimpleNamespace(threads=1, **params),
        config={"checkpoint_every": 1},
    )
    script.main(snakemake)
    return files


def written(adata, tmp_path, name):
    path = tmp_path / f"{name}.h5ad"
    write_h5ad(adata, path)
    return path


# --------------------------------------------------------------------------- embeddings


def test_vae_is_the_train_vae_job(pre, plain, tmp_path, monkeypatch):
    for adata, name in ((pre, "batch"), (plain, "plain")):
        method = {"kind": "vae", "preset": "improved", **SHORT}
        files = run_script(
            "train_vae",
            monkeypatch,
            tmp_path / name,
            [written(adata, tmp_path, name)],
            {
                "embedding": "embedding.h5ad",
                "model": "model.pt",
                "history": "history.tsv",
                "loss": "loss.png",
            },
            method=method,
            checkpoint=str(tmp_path / name / "checkpoint.pt"),
            failed_checkpoint=str(tmp_path / name / "best.pt"),
        )
        job = ad.read_h5ad(files["embedding"])
        mine = adata.copy()
        result = scembed.tl.vae(mine, **SHORT)
        np.testing.assert_array_equal(mine.obsm["X_vae"], job.obsm["X_emb"])
        history = pd.read_csv(files["history"], sep="\t")
        pd.testing.assert_frame_equal(
            result.history.drop(columns="seconds"), history.drop(columns="seconds")
        )
        state = torch.load(files["model"], weights_only=True)
        assert state.keys() == result.model.state_dict().keys()
        for key, value in result.model.state_dict().items():
            same = torch.equal(value, state[key]) if torch.is_tensor(value) else value == state[key]
            assert same, key
        assert result.best_epoch == job.uns["embedding"]["best_epoch"]
        assert mine.uns["X_vae"]["params"]["use_batch"] is True
    assert result.batches == [] and job.uns["embedding"].get("batches") is None
    with_batch = scembed.tl.vae(pre.copy(), **SHORT)
    assert with_batch.batches == ["G1", "G2M", "S"]


def test_the_returned_model_embeds_the_cells(plain):
    mine = plain.copy()
    result = scembed.tl.vae(mine, **SHORT)
    counts = torch.as_tensor(mine.layers["counts"].toarray(), dtype=torch.float32)
    with torch.inference_mode():
        latent = result.model.inference(counts)["qz_m"].numpy()
    np.testing.assert_allclose(latent, mine.obsm["X_vae"], rtol=1e-4, atol=1e-5)
    assert result.stop_reason and result.device == "cpu"


def test_vae_leaves_torch_threads_and_random_state_as_they_were(plain, monkeypatch):
    import scembed.vae.train as train

    original, seen = train.train_vae, []

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "train_vae", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    state = torch.get_rng_state()
    try:
        scembed.tl.vae(plain.copy(), threads=1, **SHORT)
        assert seen == [1]
        assert torch.get_num_threads() == 2
        assert torch.equal(torch.get_rng_state(), state)
        with pytest.raises(ValueError, match="threads: 0 must be an integer >= 1"):
            scembed.tl.vae(plain.copy(), threads=0, **SHORT)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_vae_refuses_bad_input(plain):
    logged = plain.copy()
    logged.layers["counts"] = logged.X.copy()
    with pytest.raises(ValueError, match=r"VAE input: the counts must be non-negative integers"):
        scembed.tl.vae(logged, **SHORT)
    with pytest.raises(ValueError, match=r"no obs\['split'\].*scembed.pp.book"):
        scembed.tl.vae(ad.AnnData(X=plain.layers["counts"]), layer=None, **SHORT)
    with pytest.raises(ValueError, match="unknown VAE parameter"):
        scembed.tl.vae(plain.copy(), n_latents=5, **SHORT)
    assert "X_vae" not in plain.obsm


def test_pca_is_the_embed_pca_job(pre, plain, tmp_path, monkeypatch):
    for adata, use_batch, name in ((plain, False, "plain"), (pre, True, "harmony")):
        files = run_script(
            "embed_pca",
            monkeypatch,
            tmp_path / name,
            [written(adata, tmp_path, name)],
            {"embedding": "embedding.h5ad"},
            method={"kind": "pca", "n_components": 10, "use_batch": use_batch},
        )
        job = ad.read_h5ad(files["embedding"])
        assert job.uns["embedding"].get("harmony", False) is use_batch
        mine = adata.copy()
        scembed.tl.pca(mine, use_batch=use_batch)
        np.testing.assert_array_equal(mine.obsm["X_pca"], job.obsm["X_emb"])


# --------------------------------------------------------------------------- scores


def job_scores(adata, tmp_path, monkeypatch, integration=False):
    """metrics.json of the cluster job (and integration.tsv of the integration job) on
    the workflow's PCA embedding of ``adata``."""
    embedding = run_script(
        "embed_pca",
        monkeypatch,
        tmp_path,
        [written(adata, tmp_path, "pre")],
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


def test_evaluate_is_the_cluster_and_integration_jobs(pre, tmp_path, monkeypatch):
    metrics, integration = job_scores(pre, tmp_path, monkeypatch, integration=True)
    mine = pre.copy()
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


def test_evaluate_without_a_batch_and_its_threads(plain, tmp_path, monkeypatch):
    import numba

    import scembed.evaluate as evaluate

    metrics, _ = job_scores(plain, tmp_path, monkeypatch)
    original, seen = evaluate.evaluate_embedding, []

    def spy(*args, **kwargs):
        seen.append(numba.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_embedding", spy)
    mine = plain.copy()
    scembed.tl.pca(mine)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # the cluster job pinned 1
    before = numba.get_num_threads()
    scores = scembed.tl.evaluate(mine, "X_pca", "bulk_labels", threads=1, **CLUSTER)
    assert seen == [1] and numba.get_num_threads() == before
    assert scores == {k: v for k, v in metrics.items() if k not in RUN_KEYS}
    assert "ilisi" not in scores


def test_evaluate_refuses_bad_input(plain):
    mine = plain.copy()
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


def test_compare_is_the_compare_job(plain, tmp_path, monkeypatch):
    from scembed.summary import write_metrics_table

    runs = []
    for seed in (0, 1, 2):
        mine = plain.copy()
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
    # a list of evaluate() results: one dataset, named "data"
    listed = scembed.tl.compare(runs)
    assert set(listed["dataset"]) == {"data"}
    same = listed.drop(columns="dataset").reset_index(drop=True)
    exact = scembed.tl.compare(pd.DataFrame(runs)).drop(columns="dataset")
    pd.testing.assert_frame_equal(same, exact)
    with pytest.raises(ValueError, match=r"no column \['method'\]"):
        scembed.tl.compare([{"seed": 0, "ari": 0.5}])
    with pytest.raises(ValueError, match="repeat a"):
        scembed.tl.compare(runs + runs[:1])
