"""The PCA baseline (scembed.pca) against scikit-learn: fitted on the training cells
only, sparse input never densified, seeded."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from scembed.pca import pca_embedding


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
