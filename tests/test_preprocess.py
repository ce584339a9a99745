"""The book's preprocessing against numpy and direct scanpy calls, and the cell split."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from conftest import schema_defaults
from test_sources_finishing import counts_adata

from scembed.checks import DataError
from scembed.preprocess import count_variance, preprocess, select_genes, split_cells
from scembed.sources import finish

DEFAULTS = schema_defaults("preprocess")
PREPROCESS = DEFAULTS  # as test_preprocess_never_normalises_a_cell_of_total_zero names them
SPLIT = {"n_top_genes": 40, "min_genes": 12, "test_fraction": 0.1, "split_seed": 3}
N_CELLS, N_GENES = 300, 80


@pytest.fixture(scope="module")
def raw() -> ad.AnnData:
    """Counts with a spread of gene means and some cells expressing very few genes."""
    rng = np.random.default_rng(7)
    means = np.geomspace(0.05, 30, N_GENES)
    rng.shuffle(means)
    counts = rng.negative_binomial(2, 2 / (2 + means[None, :]), size=(N_CELLS, N_GENES))
    sparse_cells = rng.choice(N_CELLS, size=40, replace=False)
    keep = rng.random((40, N_GENES)) < 0.1
    counts[sparse_cells] *= keep  # these cells keep ~8 of 80 genes
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"t{i % 3}" for i in range(N_CELLS)])},
        index=[f"cell{i}" for i in range(N_CELLS)],
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(N_GENES)])
    adata = ad.AnnData(X=sp.csr_matrix(counts.astype(np.int32)), obs=obs, var=var)
    adata.uns["label_key"] = "cell_type"
    return adata


def top_variance_genes(counts: np.ndarray, n: int) -> np.ndarray:
    variance = np.var(counts.astype(np.float64), axis=0, ddof=0)
    order = np.argsort(-variance)
    # the reference is only well defined without a tie at the cut
    assert variance[order[n - 1]] > variance[order[n]] * (1 + 1e-9)
    return np.sort(order[:n])


@pytest.mark.parametrize("n", [2, 10, 50])
def test_select_genes_variance_is_numpy_top_n(raw, n):
    counts = raw.X.toarray()
    np.testing.assert_array_equal(select_genes(raw, n, "variance"), top_variance_genes(counts, n))
    dense = ad.AnnData(X=counts.astype(np.float32))
    np.testing.assert_array_equal(select_genes(dense, n, "variance"), top_variance_genes(counts, n))


def test_select_genes_variance_is_not_mean_or_dispersion(raw):
    # a gene with a high mean but no variance must not be chosen: variance, not mean
    counts = raw.X.toarray().copy()
    counts[:, 0] = 500
    adata = ad.AnnData(X=sp.csr_matrix(counts))
    assert 0 not in select_genes(adata, N_GENES - 1, "variance")


def test_select_genes_seurat_v3(raw):
    genes = select_genes(raw.copy(), 20, "seurat_v3")
    assert len(genes) == 20 and len(np.unique(genes)) == 20
    assert (np.diff(genes) > 0).all() and genes.max() < N_GENES
    reference = sc.pp.highly_variable_genes(
        raw.copy(), flavor="seurat_v3", n_top_genes=20, inplace=False
    )
    np.testing.assert_array_equal(genes, np.flatnonzero(reference["highly_variable"]))


WORM = Path(__file__).resolve().parents[2] / "shared" / "data" / "worm_neuron.h5ad"


@pytest.mark.skipif(not WORM.is_file(), reason=f"{WORM} is absent")
def test_seurat_v3_on_shallow_counts_widens_the_loess_span(caplog):
    """On worm_neuron (246 counts per cell) scanpy's seurat_v3 fit with its default span
    is singular; the selection retries with a wider span, says so, and equals scanpy's
    own selection with that span."""
    worm = ad.read_h5ad(WORM)
    with pytest.raises(ValueError):
        sc.pp.highly_variable_genes(worm, flavor="seurat_v3", n_top_genes=1000, inplace=False)
    with caplog.at_level("WARNING", logger="scembed"):
        genes = select_genes(worm, 1000, "seurat_v3")
    assert "loess span 0.5 instead of 0.3" in caplog.text
    reference = sc.pp.highly_variable_genes(
        worm, flavor="seurat_v3", n_top_genes=1000, inplace=False, span=0.5
    )
    np.testing.assert_array_equal(genes, np.flatnonzero(reference["highly_variable"]))


def test_seurat_v3_failing_every_span_is_a_clear_error(raw, monkeypatch):
    """When the loess fit fails with every span (here made to), the error names the fix;
    each span was tried once."""
    spans = []

    def singular(*args, span, **kwargs):
        spans.append(span)
        raise ValueError("reciprocal condition number  5.5e-15")

    monkeypatch.setattr(sc.pp, "highly_variable_genes", singular)
    with pytest.raises(
        DataError, match=r"every loess span \[0.3, 0.5, 1.0\].*gene_selection: variance"
    ):
        select_genes(raw.copy(), 20, "seurat_v3")
    assert spans == [0.3, 0.5, 1.0]


def test_a_cell_filter_that_drops_most_cells_warns(raw, caplog):
    """Shallow data with a strict min_genes: most cells go, and the log says how many and
    which key keeps them (seurat_v3 on worm_neuron kept 493 of 4186 cells)."""
    expressed = np.diff(sp.csr_matrix(raw.X[:, select_genes(raw, 40)]).indptr)
    strict = int(np.quantile(expressed, 0.6))  # about 60% of the cells fall below it
    with caplog.at_level("WARNING", logger="scembed"):
        adata = preprocess(raw.copy(), **{**DEFAULTS, **SPLIT, "min_genes": strict})
    dropped = raw.n_obs - adata.n_obs
    assert dropped > 0.25 * raw.n_obs
    assert f"{dropped} of {raw.n_obs} cells" in caplog.text and "lower `min_genes`" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="scembed"):
        preprocess(raw.copy(), **{**DEFAULTS, **SPLIT})  # the usual filter: no warning
    assert "lower `min_genes`" not in caplog.text


def test_n_top_genes_larger_than_dataset(raw):
    with pytest.raises(DataError) as err:
        select_genes(raw, N_GENES + 1)
    assert f"only {N_GENES} genes" in str(err.value)
    assert f"n_top_genes: {N_GENES}" in str(err.value)


def test_unknown_gene_selection(raw):
    with pytest.raises(DataError, match="'variance' or 'seurat_v3'"):
        select_genes(raw, 10, "dispersion")


@pytest.mark.parametrize(("log1p", "target_sum"), [(True, 1e4), (False, 100.0)])
def test_preprocess_matches_scanpy(raw, log1p, target_sum):
    n_top, min_genes = 40, 12
    result = preprocess(
        raw,
        **{
            **DEFAULTS,
            **{"n_top_genes": n_top, "min_genes": min_genes},
            **{"target_sum": target_sum, "log1p": log1p},
        },
    )

    genes = top_variance_genes(raw.X.toarray(), n_top)
    reference = raw[:, genes].copy()
    reference.X = reference.X.astype(np.float64)
    sc.pp.filter_cells(reference, min_genes=min_genes)
    counts = reference.X.copy()
    sc.pp.normalize_total(reference, target_sum=target_sum)
    if log1p:
        sc.pp.log1p(reference)

    dropped = raw.n_obs - reference.n_obs
    assert 0 < dropped < raw.n_obs  # the filter has work to do
    assert result.uns["preprocess"]["cells_dropped"] == dropped
    assert list(result.obs_names) == list(reference.obs_names)
    assert list(result.var_names) == list(raw.var_names[genes])
    np.testing.assert_allclose(result.X.toarray(), reference.X.toarray(), rtol=1e-5, atol=1e-6)
    if not log1p:
        np.testing.assert_allclose(result.X.sum(axis=1), target_sum, rtol=1e-5)

    kept_counts = result.layers["counts"]
    assert np.issubdtype(kept_counts.dtype, np.integer)
    np.testing.assert_array_equal(kept_counts.toarray(), counts.toarray())
    np.testing.assert_array_equal(
        result.obs["n_genes_expressed"], (counts.toarray() > 0).sum(axis=1)
    )
    assert result.obs["n_genes_expressed"].min() >= min_genes
    assert result.uns["label_key"] == "cell_type"
    assert list(result.obs["cell_type"]) == list(raw.obs.loc[reference.obs_names, "cell_type"])


def test_preprocess_split(raw):
    result = preprocess(
        raw,
        **{**DEFAULTS, "n_top_genes": 40, "min_genes": 12, "test_fraction": 0.1, "split_seed": 3},
    )
    assert list(result.obs["split"].cat.categories) == ["test", "train", "validation"]
    np.testing.assert_array_equal(
        result.obs["split"].to_numpy(), split_cells(result.n_obs, 0.1, 0.1, 3)
    )


def test_preprocess_refuses_too_few_cells(raw):
    with pytest.raises(DataError, match="Lower `min_genes`"):
        preprocess(raw, **{**DEFAULTS, "n_top_genes": 40, "min_genes": 41})


@pytest.mark.parametrize(
    ("n_cells", "validation", "test"), [(1000, 0.1, 0.05), (3005, 0.1, 0.05), (57, 0.2, 0.0)]
)
def test_split_fractions(n_cells, validation, test):
    split = split_cells(n_cells, validation, test, seed=42)
    assert split.shape == (n_cells,)
    assert set(split) <= {"train", "validation", "test"}
    counts = pd.Series(split).value_counts()
    assert counts.get("validation", 0) == round(validation * n_cells)
    assert counts.get("test", 0) == round(test * n_cells)
    assert counts["train"] == n_cells - round(validation * n_cells) - round(test * n_cells)


def test_split_is_seeded():
    first = split_cells(500, 0.1, 0.05, seed=42)
    np.testing.assert_array_equal(first, split_cells(500, 0.1, 0.05, seed=42))
    other = split_cells(500, 0.1, 0.05, seed=43)
    assert (first != other).any()
    # another seed draws other cells for validation, of the same number
    assert (first == "validation").sum() == (other == "validation").sum()
    assert set(np.flatnonzero(first == "validation")) != set(np.flatnonzero(other == "validation"))


def test_sparse_gene_moments_equal_the_dense_ones(monkeypatch):
    """The variance of sparse counts, summed a block of cells at a time from the stored
    values (no dense or squared copy), equals numpy's on the dense matrix."""
    import scembed.preprocess as module

    rng = np.random.default_rng(0)
    dense = rng.poisson(0.3, size=(1000, 50)) * rng.integers(1, 200, size=50)
    monkeypatch.setattr(module, "MOMENT_ROWS", 128)  # eight blocks
    sparse = sp.csr_matrix(dense.astype(np.int32))
    np.testing.assert_allclose(count_variance(sparse), dense.var(axis=0), rtol=1e-10)
    np.testing.assert_allclose(count_variance(dense), dense.var(axis=0), rtol=1e-12)


def test_preprocess_shares_the_count_pattern_and_keeps_the_counts(raw):
    """X (log-normalised in place) and layers["counts"] share one sparsity pattern; the
    counts stay the raw counts of the kept cells and genes."""
    adata = preprocess(raw.copy(), **{**DEFAULTS, **SPLIT})
    counts = adata.layers["counts"]
    expected = sp.csr_matrix(raw[adata.obs_names, adata.var_names].X)
    assert (counts != expected).nnz == 0
    np.testing.assert_array_equal(adata.X.indptr, counts.indptr)
    np.testing.assert_array_equal(adata.X.indices, counts.indices)
    per_cell = np.repeat(np.asarray(counts.sum(axis=1)).ravel(), np.diff(counts.indptr))
    expected_x = np.log1p(counts.data / per_cell * DEFAULTS["target_sum"])
    np.testing.assert_allclose(adata.X.data, expected_x, rtol=1e-5)


def test_preprocess_never_normalises_a_cell_of_total_zero():
    """A cell whose counts all lie outside the kept genes is dropped even with min_genes 0,
    so normalize_total never divides by zero; X stays finite."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(60, 12))
    counts[:, 10:] = 0
    counts[:5, :10] = 0
    counts[:5, 10] = 1  # these five cells: counts only in a low-variance gene, not kept
    raw = finish(counts_adata(counts), "cell_type", "cells.h5ad", {})
    params = {**PREPROCESS, "n_top_genes": 10, "min_genes": 0}
    adata = preprocess(raw, **params)
    assert adata.uns["preprocess"]["cells_dropped"] == 5
    assert adata.n_obs == 55 and np.isfinite(adata.X.toarray()).all()
    assert (np.asarray(adata.layers["counts"].sum(axis=1)).ravel() > 0).all()


# --------------------------------------------------------------------------- batches


def with_batches(raw: ad.AnnData, batches) -> ad.AnnData:
    """A copy of ``raw`` with a ``sample`` batch column named in uns, as the import
    leaves it."""
    adata = raw.copy()
    adata.obs["sample"] = pd.Categorical(batches)
    adata.uns["batch_key"] = "sample"
    return adata


def filtered_cells(raw: ad.AnnData) -> np.ndarray:
    """The cells that SPLIT's cell filter drops (fewer than 12 of the 40 genes kept)."""
    expressed = np.diff(sp.csr_matrix(raw.X[:, select_genes(raw, 40)]).indptr)
    return expressed < SPLIT["min_genes"]


def test_the_batch_column_and_key_survive_preprocessing(raw, caplog):
    batches = [f"s{i % 3}" for i in range(raw.n_obs)]
    with caplog.at_level("INFO", logger="scembed"):
        adata = preprocess(with_batches(raw, batches), **{**DEFAULTS, **SPLIT})
    assert adata.uns["batch_key"] == "sample"
    assert adata.n_obs < raw.n_obs  # the filter has work to do
    expected = pd.Series(batches, index=raw.obs_names)[adata.obs_names]
    assert list(adata.obs["sample"]) == list(expected)
    assert list(adata.obs["sample"].cat.categories) == ["s0", "s1", "s2"]
    assert "batch" not in caplog.text  # nothing lost, nothing to say
    plain = preprocess(raw.copy(), **{**DEFAULTS, **SPLIT})
    assert "batch_key" not in plain.uns and "sample" not in plain.obs


def test_a_batch_emptied_by_the_cell_filter_leaves_the_categories(raw, caplog):
    dropped = filtered_cells(raw)
    batches = np.where(dropped, "shallow", np.where(np.arange(raw.n_obs) % 2, "a", "b"))
    with caplog.at_level("WARNING", logger="scembed"):
        adata = preprocess(with_batches(raw, batches), **{**DEFAULTS, **SPLIT})
    assert adata.n_obs == int((~dropped).sum())
    assert adata.uns["batch_key"] == "sample"
    assert list(adata.obs["sample"].cat.categories) == ["a", "b"]
    assert (
        "the cell filter (min_genes) dropped every cell of the batch(es) ['shallow'] of "
        "'sample'" in caplog.text
    )


def test_a_single_batch_left_by_the_cell_filter_drops_the_batch_key(raw, caplog):
    batches = np.where(filtered_cells(raw), "shallow", "deep")
    with caplog.at_level("WARNING", logger="scembed"):
        adata = preprocess(with_batches(raw, batches), **{**DEFAULTS, **SPLIT})
    assert "batch_key" not in adata.uns
    assert list(adata.obs["sample"].cat.categories) == ["deep"]
    assert (
        "after the cell filter (min_genes) the batch column 'sample' holds a single batch "
        "('deep'): the integration (batch) scores are skipped and uns['batch_key'] is "
        "removed" in caplog.text
    )


def test_preprocess_reads_a_path_as_the_workflow_job_gives_it(raw, tmp_path):
    """The job passes its input's path, so that only preprocess() holds the full counts:
    the result is the same as from the AnnData."""
    from scembed.runtime import write_h5ad

    path = tmp_path / "raw.h5ad"
    write_h5ad(raw, path)
    params = {**DEFAULTS, **SPLIT}
    from_path = preprocess(str(path), **params)
    from_adata = preprocess(ad.read_h5ad(path), **params)
    assert (from_path.X != from_adata.X).nnz == 0
    assert (from_path.layers["counts"] != from_adata.layers["counts"]).nnz == 0
    pd.testing.assert_frame_equal(from_path.obs, from_adata.obs)
    assert list(from_path.var_names) == list(from_adata.var_names)
