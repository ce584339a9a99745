"""The PCA baseline: fitted on the training cells, applied to all cells; and its batch
integration, Harmony on those scores (:func:`harmony_scores`).

The solver is the book's (scikit-learn's randomized SVD, as ``PCA(svd_solver=
"randomized")`` runs it), seeded, and written here over a centred linear operator so
that sparse counts are never densified: the data are centred implicitly, as scanpy does,
and only blocks of (cells x ``n_components + 10``) are ever dense. On dense input it
gives scikit-learn's scores to float tolerance (tested), so the baseline is the same
whether the matrix is held sparse or dense.

Harmony (harmonypy, the C++ port of Korsunsky et al. 2019) is the integration baseline
beside the batch-aware VAE and scVI: it moves each cell's scores by a per-cluster linear
correction until the soft clusters are mixed across batches.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import linalg
from sklearn.utils.extmath import svd_flip

N_OVERSAMPLES = 10  # scikit-learn's PCA defaults
BLOCK_CELLS = 65536  # cells per block when scoring (bounded dense memory)


class Centered:
    """``X - mean`` (rows centred by the column means) as products, never materialised."""

    def __init__(self, X, mean: np.ndarray):
        self.X, self.mean = X, mean
        self.shape = X.shape

    def dot(self, Q: np.ndarray) -> np.ndarray:
        """(X - mean) @ Q"""
        return np.asarray(self.X @ Q) - (self.mean @ Q)[None, :]

    def tdot(self, Q: np.ndarray) -> np.ndarray:
        """(X - mean).T @ Q"""
        return np.asarray(self.X.T @ Q) - np.outer(self.mean, Q.sum(axis=0))


def randomized_components(A: Centered, n_components: int, seed: int) -> np.ndarray:
    """The leading right singular vectors (``n_components`` x genes) of the centred ``A``:
    Halko et al.'s randomized SVD with scikit-learn's PCA settings (10 oversamples, 7
    power iterations below a tenth of the smaller side, else 4, LU-normalised; the
    shorter side transposed), and scikit-learn's sign convention."""
    n_rows, n_cols = A.shape
    size = n_components + N_OVERSAMPLES
    n_iter = 7 if n_components < 0.1 * min(A.shape) else 4
    transpose = n_rows < n_cols
    # M is A or A.T; forward(Q) = M @ Q, backward(Q) = M.T @ Q
    forward, backward = (A.tdot, A.dot) if transpose else (A.dot, A.tdot)
    Q = np.random.RandomState(seed).normal(size=(n_rows if transpose else n_cols, size))
    for _ in range(n_iter):
        Q, _ = linalg.lu(forward(Q), permute_l=True, check_finite=False)
        Q, _ = linalg.lu(backward(Q), permute_l=True, check_finite=False)
    Q, _ = linalg.qr(forward(Q), mode="economic", check_finite=False)
    B = backward(Q).T  # Q.T @ M
    Uhat, _, Vt = linalg.svd(B, full_matrices=False)
    U = Q @ Uhat
    Vt = U[:, :n_components].T if transpose else Vt[:n_components]
    _, Vt = svd_flip(None, Vt, u_based_decision=False)
    return Vt


def pca_embedding(X, train_mask: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """Cells x ``n_components`` scores of a PCA fitted on ``X[train_mask]``.

    ``X`` may be dense or sparse (CSR); sparse stays sparse. The solver is seeded with
    ``seed`` so the baseline does not wobble between runs.
    """
    train_mask = np.asarray(train_mask, dtype=bool)
    n_train = int(train_mask.sum())
    if n_components > min(X.shape[1], n_train):
        raise ValueError(
            f"n_components is {n_components} but PCA can give at most "
            f"{min(X.shape[1], n_train)} here; lower `n_components`."
        )
    X = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
    train = X[train_mask].astype(np.float64)  # the only full-size copy: training cells
    mean = np.asarray(train.mean(axis=0)).ravel()
    components = randomized_components(Centered(train, mean), n_components, seed).T
    del train
    offset = mean @ components
    scores = np.empty((X.shape[0], n_components), dtype=np.float32)
    for start in range(0, X.shape[0], BLOCK_CELLS):
        block = X[start : start + BLOCK_CELLS].astype(np.float64)
        scores[start : start + BLOCK_CELLS] = np.asarray(block @ components) - offset
    return scores


def harmony_scores(
    scores: np.ndarray, batch: np.ndarray, seed: int, threads: int = 1
) -> np.ndarray:
    """Harmony's corrected scores (cells x components, float32) of the PCA ``scores`` of
    every cell, with ``batch`` the cells' batch codes (``scembed.batches.batch_codes``).

    harmonypy's defaults (theta 2, sigma 0.1, up to 10 rounds, min(cells / 30, 100)
    clusters but at least 1), seeded with ``seed``: the same seed gives the same scores,
    bit for bit, and so does any ``threads`` (harmonypy's C++ threads, pinned to the
    job's rather than left to harmonypy's default of every physical core; tested).
    """
    import harmonypy

    scores = np.asarray(scores)
    batch = np.asarray(batch)
    if batch.shape != (scores.shape[0],):
        raise ValueError(f"batch has shape {batch.shape}, expected ({scores.shape[0]},)")
    n_clusters = max(1, min(round(scores.shape[0] / 30), 100))
    result = harmonypy.run_harmony(
        scores.T.astype(np.float64),  # components x cells: never read the wrong way round
        {"batch": batch},
        ["batch"],
        nclust=n_clusters,
        random_state=seed,
        ncores=max(1, int(threads)),
        verbose=False,
    )
    return np.asarray(result.Z_corr, dtype=np.float32)
