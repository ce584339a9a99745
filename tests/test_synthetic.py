"""The synthetic source (scembed.synthetic, read through load_dataset): shape, counts,
labels and seed, fixed type sizes, and the droplet profile."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scembed.sources import load_dataset


def synthetic(seed):
    spec = {"source": "synthetic", "label_key": "cell_type", "n_cells": 150, "n_genes": 40}
    return load_dataset({**spec, "n_types": 3, "seed": seed}, {})


def test_synthetic_shape_counts_labels_and_seed():
    first, again, other = synthetic(0), synthetic(0), synthetic(1)
    assert first.shape == (150, 40)
    assert np.issubdtype(first.X.dtype, np.integer) and first.X.min() >= 0
    assert first.X.sum() > 0
    assert first.obs["cell_type"].nunique() == 3
    assert (first.X != again.X).nnz == 0
    assert list(first.obs["cell_type"]) == list(again.obs["cell_type"])
    assert (first.X != other.X).nnz > 0
    assert first.uns["provenance"]["seed"] == 0 and other.uns["provenance"]["seed"] == 1


def test_synthetic_type_sizes_fix_the_cells_of_each_type():
    """Zeisel's seven class sizes, as the ablation's `zeisel_like` dataset asks."""
    sizes = [939, 820, 399, 290, 235, 224, 98]
    spec = {"source": "synthetic", "label_key": "cell_type", "n_cells": 10, "n_genes": 30}
    adata = load_dataset({**spec, "n_types": 2, "seed": 0, "type_sizes": sizes}, {})
    assert adata.n_obs == sum(sizes)  # overrides n_cells and n_types
    counts = adata.obs["cell_type"].value_counts()
    assert sorted(counts, reverse=True) == sizes
    assert adata.uns["provenance"]["type_sizes"] == sizes


def test_synthetic_droplet_profile_is_sparse_like_droplet_data():
    """`profile: droplet`: CSR counts with droplet sparsity and library sizes, seeded,
    generated in chunks (here three) whose seams do not show."""
    from scembed.synthetic import simulate_droplet_counts

    spec = {"source": "synthetic", "label_key": "cell_type", "n_cells": 3000, "n_genes": 2000}
    spec.update(n_types=8, seed=0, profile="droplet", library_size=2500)
    adata = load_dataset(spec, {})
    X = adata.X
    assert sp.isspmatrix_csr(X) and X.dtype == np.int32 and adata.shape == (3000, 2000)
    assert 0.05 < X.nnz / (3000 * 2000) < 0.15  # droplet data: 5-15% non-zero
    library = np.asarray(X.sum(axis=1)).ravel()
    assert 1500 < np.median(library) < 3000 and library.std() > 500
    assert adata.obs["cell_type"].nunique() == 8
    assert adata.uns["provenance"]["profile"] == "droplet"
    chunked = simulate_droplet_counts(3000, 2000, 8, seed=0, library_size=2500, chunk_cells=1000)
    again = simulate_droplet_counts(3000, 2000, 8, seed=0, library_size=2500, chunk_cells=1000)
    assert (chunked.X != again.X).nnz == 0  # the same seed gives the same counts
    per_chunk = [chunked.X[i : i + 1000].nnz for i in range(0, 3000, 1000)]
    assert max(per_chunk) < 1.2 * min(per_chunk)  # no chunk differs from the others
    other = simulate_droplet_counts(3000, 2000, 8, seed=1, library_size=2500)
    assert (other.X != X).nnz > 0
