"""The PCA baseline (scembed.pca) against scikit-learn: fitted on the training cells
only, sparse input never densified, seeded."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rule_script
from sklearn.decomposition import PCA

from scembed.pca import harmony_scores, pca_embedding


@pytest.fixture(scope="module")
def expression():
    """Cells x genes with a clearly decaying spectrum, and a training mask."""
    rng = np.random.default_rng(0)
    n_cells, n_genes, rank = 240, 30, 6
    scores = rng.normal(size=(n_cells, rank)) * np.array([10, 7, 5, 3.5, 2.5, 1.8])
    loadings = np.linalg.qr(rng.normal(size=(n_genes, rank)))[0].T
    X = scores @ loadings + 0.1 * rng.normal(size=(n_cells, n_genes)) + 3.0
    train = rng.random(n_cells) < 0.8
    X[~train] += 5.0  # shifted non-training cells: the mean must come from training only
    return X, train


def test_pca_is_fitted_on_training_cells_only(expression):
    X, train = expression
    n_components = 5
    ours = pca_embedding(X, train, n_components, seed=0)
    reference = PCA(n_components=n_components, svd_solver="full").fit(X[train]).transform(X)
    everything = PCA(n_components=n_components, svd_solver="full").fit(X).transform(X)
    assert ours.shape == (X.shape[0], n_components) and ours.dtype == np.float32
    signs = np.sign((ours * reference).sum(axis=0))
    assert (signs != 0).all()
    scale = np.abs(reference).max()
    np.testing.assert_allclose(ours * signs, reference, atol=1e-4 * scale)
    # fitted on all cells the scores differ: the test would see a fit on every cell
    assert np.abs(np.abs(everything[:, 0]) - np.abs(reference[:, 0])).max() > 1.0


def test_pca_accepts_sparse_and_is_seeded(expression):
    import scipy.sparse as sp

    X, train = expression
    X = np.clip(X, 0, None)
    first = pca_embedding(sp.csr_matrix(X), train, 4, seed=1)
    np.testing.assert_array_equal(first, pca_embedding(sp.csr_matrix(X), train, 4, seed=1))
    np.testing.assert_allclose(np.abs(first), np.abs(pca_embedding(X, train, 4, seed=1)))


@pytest.mark.parametrize("n_cells", [400, 60])  # more cells than genes, and fewer
def test_sparse_pca_equals_scikit_learn_dense_randomized_pca(n_cells):
    """The sparse path (implicit centring, never densified) gives scikit-learn's seeded
    randomized PCA of the densified matrix, the book's solver, to float tolerance."""
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    X = sp.random(n_cells, 120, density=0.1, format="csr", random_state=4, dtype=np.float64)
    X.data = np.log1p(rng.poisson(3.0, X.nnz) + 1.0)
    train = rng.random(n_cells) < 0.85
    dense = X.toarray()
    for seed in (0, 7):
        reference = PCA(n_components=8, svd_solver="randomized", random_state=seed)
        expected = reference.fit(dense[train]).transform(dense)
        sparse_scores = pca_embedding(X, train, 8, seed)
        np.testing.assert_allclose(sparse_scores, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pca_embedding(dense, train, 8, seed), sparse_scores, atol=1e-5)


def test_pca_too_many_components(expression):
    X, train = expression
    with pytest.raises(ValueError, match="lower `n_components`"):
        pca_embedding(X, train, X.shape[1] + 1, seed=0)


# --- Harmony -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batched_scores():
    """PCA scores (all cells, fitted on the training cells) of log-normalised counts of
    three types in three batches, each batch scaling every gene by its own log-normal
    factor: the batches lie apart in the scores. (scores, batch codes, types)."""
    rng = np.random.default_rng(0)
    n_cells, n_genes = 900, 200
    types, batch = rng.integers(0, 3, n_cells), rng.integers(0, 3, n_cells)
    means = rng.lognormal(0.0, 1.0, (3, n_genes))
    scale = rng.lognormal(0.0, 0.5, (3, n_genes))
    counts = rng.poisson(means[types] * scale[batch] * rng.lognormal(0, 0.3, (n_cells, 1)))
    X = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    train = rng.random(n_cells) < 0.85
    return pca_embedding(X, train, 10, seed=0), batch, types


def neighbour_fractions(scores, batch, types, k=15):
    """(mean fraction of each cell's k nearest neighbours from another batch, from the
    same type)."""
    from sklearn.neighbors import NearestNeighbors

    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(scores).kneighbors(scores)[1][:, 1:]
    mixing = (batch[neighbours] != batch[:, None]).mean()
    return float(mixing), float((types[neighbours] == types[:, None]).mean())


def test_harmony_mixes_the_batches_and_keeps_the_types(batched_scores):
    scores, batch, types = batched_scores
    corrected = harmony_scores(scores, batch, seed=0)
    assert corrected.shape == scores.shape and corrected.dtype == np.float32
    mixing_before, types_before = neighbour_fractions(scores, batch, types)
    mixing_after, types_after = neighbour_fractions(corrected, batch, types)
    assert mixing_before < 0.1 and mixing_after > 0.4  # 2/3: three batches at random
    assert types_before > 0.95 and types_after > 0.95


def test_harmony_is_seeded_and_independent_of_threads(batched_scores):
    scores, batch, _ = batched_scores
    first = harmony_scores(scores, batch, seed=3)
    np.testing.assert_array_equal(first, harmony_scores(scores, batch, seed=3))
    np.testing.assert_array_equal(first, harmony_scores(scores, batch, seed=3, threads=2))
    assert not np.array_equal(first, harmony_scores(scores, batch, seed=4))


def test_harmony_on_few_cells_and_a_bad_batch():
    rng = np.random.default_rng(0)
    scores, batch = rng.normal(size=(10, 3)), np.arange(10) % 2  # 10 cells: one cluster
    assert harmony_scores(scores, batch, seed=0).shape == (10, 3)
    with pytest.raises(ValueError, match="batch has shape"):
        harmony_scores(scores, batch[:5], seed=0)


def test_embed_pca_script_runs_harmony_only_with_use_batch(tmp_path, monkeypatch):
    """scripts/embed_pca.py: use_batch on a dataset with a batch_key gives Harmony's
    scores and says so in the embedding's info; use_batch false, or no batch_key, gives
    the PCA scores."""
    import logging
    from types import SimpleNamespace

    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(0)
    n_cells = 300
    batch = rng.integers(0, 2, n_cells)
    X = rng.normal(size=(n_cells, 30)) + 3.0 * batch[:, None] * rng.normal(size=30)
    obs = pd.DataFrame(
        {
            "cell_type": [f"t{i % 3}" for i in range(n_cells)],
            "split": np.where(rng.random(n_cells) < 0.85, "train", "validation"),
            "batch": pd.Categorical(np.array(["b1", "b2"])[batch]),
        },
        index=[f"c{i}" for i in range(n_cells)],
    )
    adata = ad.AnnData(X=X.astype(np.float32), obs=obs)
    adata.uns["label_key"] = "cell_type"
    without_key = tmp_path / "without.h5ad"
    adata.write_h5ad(without_key)
    adata.uns["batch_key"] = "batch"
    with_key = tmp_path / "with.h5ad"
    adata.write_h5ad(with_key)

    script = rule_script("embed_pca")
    messages = []
    log = logging.getLogger("test_embed_pca_script")
    monkeypatch.setattr(log, "info", lambda msg, *args: messages.append(msg % args))
    monkeypatch.setattr(script, "setup_logging", lambda path: log)

    def run(path, use_batch, name):
        snakemake = SimpleNamespace(
            input=[str(path)],
            output=[str(tmp_path / f"{name}.h5ad")],
            log=[str(tmp_path / f"{name}.log")],
            threads=1,
            wildcards=SimpleNamespace(method="pca", seed="0"),
            params=SimpleNamespace(
                method={"kind": "pca", "n_components": 5, "use_batch": use_batch}
            ),
        )
        script.main(snakemake)
        return ad.read_h5ad(tmp_path / f"{name}.h5ad")

    harmony = run(with_key, True, "harmony")
    assert any(m.startswith("Harmony (harmonypy) on the scores of all 300 cells") for m in messages)
    assert harmony.uns["embedding"]["harmony"] and harmony.uns["embedding"]["batch_key"] == "batch"
    train = (obs["split"] == "train").to_numpy()
    scores = pca_embedding(adata.X, train, 5, seed=0)
    np.testing.assert_array_equal(harmony.obsm["X_emb"], harmony_scores(scores, batch, seed=0))
    for path, use_batch in ((with_key, False), (without_key, True)):
        plain = run(path, use_batch, "plain")
        assert "harmony" not in plain.uns["embedding"]
        np.testing.assert_array_equal(plain.obsm["X_emb"], scores)
    assert "batch: not used (use_batch: false)" in messages
    assert "batch: not used (no batch_key)" in messages
