"""The PCA baseline: fitted on the training cells, applied to all cells."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA


def pca_embedding(X, train_mask: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """Cells x ``n_components`` scores of a PCA fitted on ``X[train_mask]``.

    The solver is pinned to randomized SVD with ``random_state=seed`` so the baseline
    does not wobble between runs.
    """
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    if n_components > min(X.shape[1], int(train_mask.sum())):
        raise ValueError(
            f"n_components is {n_components} but PCA can give at most "
            f"{min(X.shape[1], int(train_mask.sum()))} here; lower `n_components`."
        )
    model = PCA(n_components=n_components, svd_solver="randomized", random_state=seed)
    model.fit(X[train_mask])
    return model.transform(X).astype(np.float32)
