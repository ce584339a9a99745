"""The synthetic source (scembed.synthetic, read through load_dataset): shape, counts,
labels and seed, fixed type sizes, the droplet profile, and batches (`n_batches`)."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import warnings_of

from scembed.sources import load_dataset
from scembed.synthetic import draw_batches, simulate_counts, simulate_droplet_counts


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


# --------------------------------------------------------------------------- batches


def digest(adata) -> str:
    """SHA-256 (16 hex digits) of the CSR counts and the labels."""
    h = hashlib.sha256()
    for part in (adata.X.data, adata.X.indices, adata.X.indptr):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update("|".join(adata.obs["cell_type"].astype(str)).encode())
    return h.hexdigest()[:16]


MARKERS = {"n_cells": 150, "n_genes": 40, "n_types": 3}
SIZES = {"n_cells": 300, "n_genes": 60, "n_types": 4, "seed": 5, "type_sizes": [100, 80, 70, 50]}
DROPLET = {"n_cells": 500, "n_genes": 300, "n_types": 4, "seed": 3, "library_size": 1500}


@pytest.mark.parametrize(
    ("simulate", "kwargs", "expected"),
    [
        (simulate_counts, MARKERS, "5c99787ede24d821"),
        (simulate_counts, SIZES, "896fabfaea2a2b16"),
        (simulate_droplet_counts, {**DROPLET, "chunk_cells": 200}, "7f4aa3d75c8305a7"),
    ],
)
def test_one_batch_draws_the_counts_of_a_simulation_without_batches(simulate, kwargs, expected):
    """The checksums are those of the simulation before batches existed (numpy 2.4.6): one
    batch (the default) leaves every draw, and obs, as they were."""
    for adata in (simulate(**kwargs), simulate(**kwargs, n_batches=1)):
        assert digest(adata) == expected
        assert list(adata.obs.columns) == ["cell_type"]


@pytest.mark.parametrize("simulate", [simulate_counts, simulate_droplet_counts])
def test_batches_hold_every_type_and_leave_the_types_as_they_were(simulate):
    """Batches are dealt within each type: every type in every batch, in equal shares
    (to one cell); the types, drawn from the main stream, do not change."""
    kwargs = {"n_cells": 900, "n_genes": 300, "n_types": 5, "seed": 2}
    adata = simulate(**kwargs, n_batches=3)
    assert list(adata.obs["batch"].cat.categories) == ["batch0", "batch1", "batch2"]
    table = pd.crosstab(adata.obs["cell_type"], adata.obs["batch"])
    assert table.shape == (5, 3) and (table.to_numpy() > 0).all()
    assert (table.max(axis=1) - table.min(axis=1)).max() <= 1
    assert list(adata.obs["cell_type"]) == list(simulate(**kwargs).obs["cell_type"])
    again = simulate(**kwargs, n_batches=3)
    assert (adata.X != again.X).nnz == 0
    assert list(adata.obs["batch"]) == list(again.obs["batch"])


def log_ratio_spread(X: sp.csr_matrix, batch: np.ndarray) -> float:
    """Across genes seen in 30% of the cells or more, the sd of the log ratio of their
    mean share of a cell's counts in batch 0 and in batch 1."""
    dense = X.toarray().astype(np.float64)
    shares = dense / dense.sum(axis=1, keepdims=True)
    seen = (dense > 0).mean(axis=0) >= 0.3
    ratio = shares[batch == 0].mean(axis=0) / shares[batch == 1].mean(axis=0)
    return float(np.std(np.log(ratio[seen])))


@pytest.mark.parametrize("simulate", [simulate_counts, simulate_droplet_counts])
def test_each_batch_scales_the_genes_of_its_cells(simulate):
    """A gene's mean expression differs between batches (log-normal scaling, sd 0.5: the
    log ratio of two batches has sd about 0.7); split by the same cells, the simulation
    without batches shows sampling noise only."""
    kwargs = {"n_cells": 2000, "n_genes": 200, "n_types": 3, "seed": 0}
    if simulate is simulate_droplet_counts:
        kwargs["library_size"] = 2000
    batched = simulate(**kwargs, n_batches=2)
    batch = batched.obs["batch"].cat.codes.to_numpy()
    assert log_ratio_spread(batched.X, batch) > 0.45
    assert log_ratio_spread(simulate(**kwargs).X, batch) < 0.15


def test_each_batch_shifts_the_library_size():
    """Droplet profile: a batch's profiles are shares of the library, so its mean library
    size follows its library factor (draw_batches reproduces the draw)."""
    kwargs = {"n_cells": 3000, "n_genes": 300, "n_types": 4, "seed": 1, "library_size": 2000}
    adata = simulate_droplet_counts(**kwargs, n_batches=3)
    labels = adata.obs["cell_type"].cat.codes.to_numpy()
    batches, _, library_scale = draw_batches(1, labels, 4, 300, 3)
    np.testing.assert_array_equal(batches, adata.obs["batch"].cat.codes.to_numpy())
    library = np.asarray(adata.X.sum(axis=1)).ravel()
    means = np.array([library[batches == b].mean() for b in range(3)])
    np.testing.assert_allclose(means / means[0], library_scale / library_scale[0], rtol=0.08)
    assert library_scale.max() / library_scale.min() > 1.1  # a shift the test can see


def test_n_batches_reaches_the_import_and_batch_key_uses_it(caplog):
    spec = {"source": "synthetic", "label_key": "cell_type", "n_cells": 300, "n_genes": 40}
    spec.update(n_types=3, seed=0)
    with caplog.at_level(logging.INFO):
        adata = load_dataset({**spec, "n_batches": 2, "batch_key": "batch"}, {})
    assert adata.uns["batch_key"] == "batch"
    assert adata.obs["batch"].nunique() == 2
    assert adata.uns["provenance"]["n_batches"] == 2
    assert not any("are not used" in m for m in warnings_of(caplog))

    caplog.clear()
    with caplog.at_level(logging.INFO):
        unused = load_dataset({**spec, "n_batches": 2}, {})
    assert "batch_key" not in unused.uns and unused.obs["batch"].nunique() == 2
    assert any(
        "the 2 simulated batches (obs['batch']) are not used: the dataset has no `batch_key`; "
        "set `batch_key: batch`" in m
        for m in warnings_of(caplog)
    )

    one = load_dataset({**spec, "n_batches": 1}, {})  # the provenance of before
    assert "n_batches" not in one.uns["provenance"] and "batch_key" not in one.uns
    assert one.uns["provenance"]["path"] == (
        "synthetic({'n_cells': 300, 'n_genes': 40, 'n_types': 3, 'seed': 0})"
    )
    assert list(one.obs.columns) == ["cell_type"]


def test_batch_key_with_one_simulated_batch_is_a_single_batch(caplog):
    spec = {"source": "synthetic", "label_key": "cell_type", "n_cells": 300, "n_genes": 40}
    with caplog.at_level(logging.INFO):
        adata = load_dataset({**spec, "n_types": 3, "n_batches": 1, "batch_key": "batch"}, {})
    assert "batch_key" not in adata.uns
    assert any("holds a single batch ('batch0')" in m for m in warnings_of(caplog))
