"""PCA baseline against sklearn, clustering of separable blobs, and the label scores."""

from __future__ import annotations

import inspect

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import schema_defaults
from sklearn.decomposition import PCA

from scembed.cluster import cluster_embedding
from scembed.embedding import EMBEDDING_KEY
from scembed.metrics import cluster_scores
from scembed.pca import pca_embedding

GRAPH = {
    key: value
    for key, value in schema_defaults("cluster").items()
    if key in inspect.signature(cluster_embedding).parameters
}

# --------------------------------------------------------------------------- PCA


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


# --------------------------------------------------------------------------- clustering


def blobs(n_per_blob=60, n_blobs=4, dims=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=12.0, size=(n_blobs, dims))
    labels = np.repeat(np.arange(n_blobs), n_per_blob)
    points = centres[labels] + rng.normal(size=(len(labels), dims))
    order = rng.permutation(len(labels))
    return points[order].astype(np.float32), labels[order]


def embedding_adata(points, labels):
    obs = pd.DataFrame(
        {"label": pd.Categorical([f"type{x}" for x in labels])},
        index=[f"cell{i}" for i in range(len(labels))],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm[EMBEDDING_KEY] = points
    return adata


@pytest.fixture(scope="module")
def clustered():
    points, labels = blobs()
    runs = [
        cluster_embedding(
            embedding_adata(points, labels), seed=seed, **{**GRAPH, "n_neighbors": 15}
        )
        for seed in (0, 0)
    ]
    return labels, runs


def test_cluster_embedding_recovers_blobs(clustered):
    labels, (adata, _) = clustered
    scores = cluster_scores(labels, adata.obs["leiden"])
    assert scores["ari"] > 0.9
    assert adata.obsm["X_umap"].shape == (len(labels), 2)
    assert np.isfinite(adata.obsm["X_umap"]).all()


def test_cluster_embedding_is_seeded(clustered):
    _, (first, again) = clustered
    assert list(first.obs["leiden"]) == list(again.obs["leiden"])
    np.testing.assert_array_equal(first.obsm["X_umap"], again.obsm["X_umap"])


def test_umap_above_umap_max_cells_is_a_seeded_sample(tmp_path):
    from scembed.plots import umap_figure

    points, labels = blobs(n_per_blob=50)  # 200 cells
    settings = {**GRAPH, "n_neighbors": 10, "umap_max_cells": 60}
    runs = [cluster_embedding(embedding_adata(points, labels), 4, **settings) for _ in (0, 1)]
    xy = runs[0].obsm["X_umap"]
    drawn = np.isfinite(xy).all(axis=1)
    assert drawn.sum() == 60 and np.isnan(xy[~drawn]).all()
    np.testing.assert_array_equal(xy, runs[1].obsm["X_umap"])  # the same sample and layout
    assert "seeded sample of 60 of 200 cells (umap_max_cells: 60)" in runs[0].uns["umap_note"]
    other = cluster_embedding(embedding_adata(points, labels), 5, **settings).obsm["X_umap"]
    assert not np.array_equal(np.isfinite(other).all(axis=1), drawn)  # another seed's sample
    # Leiden still clusters every cell
    assert runs[0].obs["leiden"].notna().all()
    umap_figure(xy, runs[0].obs["leiden"], runs[0].obs["label"], "sampled", tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 0
    skipped = cluster_embedding(
        embedding_adata(points, labels), 4, **{**settings, "umap_max_cells": 0}
    )
    assert np.isnan(skipped.obsm["X_umap"]).all() and "UMAP skipped" in skipped.uns["umap_note"]
    whole = cluster_embedding(
        embedding_adata(points, labels), 4, **{**settings, "umap_max_cells": 200}
    )
    assert np.isfinite(whole.obsm["X_umap"]).all() and "umap_note" not in whole.uns


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_cluster_embedding_refuses_non_finite(bad):
    points, labels = blobs(n_per_blob=10)
    points[7, 3] = bad
    points[12, 0] = bad
    with pytest.raises(ValueError, match=r"non-finite values in 2 cells \(first: cell 7\)"):
        cluster_embedding(embedding_adata(points, labels), seed=0, **{**GRAPH, "n_neighbors": 5})


# --------------------------------------------------------------------------- scores


def test_scores_perfect_and_relabelled():
    labels = np.array(["a", "a", "b", "b", "b", "c", "c"])
    same = cluster_scores(labels, labels)
    relabelled = cluster_scores(labels, np.array([2, 2, 0, 0, 0, 1, 1]))
    for scores in (same, relabelled):
        assert scores["ari"] == pytest.approx(1.0)
        assert scores["nmi"] == pytest.approx(1.0)
        assert scores["n_clusters"] == 3


def test_ari_hand_computed():
    # contingency [[2, 1, 0], [0, 1, 2]]: sum C(n_ij, 2) = 2, rows 6, columns 3, C(6, 2) = 15
    # expected 6 * 3 / 15 = 1.2, maximum (6 + 3) / 2 = 4.5 -> ARI = 0.8 / 3.3 = 8 / 33
    scores = cluster_scores([0, 0, 0, 1, 1, 1], ["x", "x", "y", "y", "z", "z"])
    assert scores["ari"] == pytest.approx(8 / 33)
    assert scores["n_clusters"] == 3
    assert 0 < scores["nmi"] < 1


def test_independent_clustering():
    # every cell of each label in both clusters: no mutual information, ARI (0 - 2/3) / (2 - 2/3)
    scores = cluster_scores([0, 0, 1, 1], [0, 1, 0, 1])
    assert scores["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert scores["ari"] == pytest.approx(-0.5)
    assert scores["n_clusters"] == 2


def test_nmi_hand_computed():
    # labels split 4/2, clusters 3/3; contingency [[3, 1], [0, 2]]
    labels = [0, 0, 0, 0, 1, 1]
    clusters = [0, 0, 0, 1, 1, 1]
    p = np.array([[3, 1], [0, 2]]) / 6
    pl, pc = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * np.log(p[nz] / np.outer(pl, pc)[nz])).sum()
    entropy_l, entropy_c = -(pl * np.log(pl)).sum(), -(pc * np.log(pc)).sum()
    scores = cluster_scores(labels, clusters)
    assert scores["nmi"] == pytest.approx(mi / ((entropy_l + entropy_c) / 2))
