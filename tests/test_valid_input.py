"""Valid input that used to crash or score wrong: 8192+ cells, partly labelled cells (the
comparison without `pca` is in test_compare.py and test_tables.py)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import schema_defaults
from sklearn import metrics as skm
from sklearn.neighbors import NearestNeighbors
from test_compare import metrics_rows

from scembed.checks import normalise_labels
from scembed.cluster import (
    EXACT_MAX_CELLS,
    SeededNNDescent,
    knn_transformer,
    leiden,
    neighbors_graph,
)
from scembed.compare import compare_methods
from scembed.embedding import EMBEDDING_KEY
from scembed.evaluate import evaluate_embedding
from scembed.sources import finish
from scembed.tables import headline_markdown
from scembed.versions import read_pins, version_mismatches

# --------------------------------------------------------------------------- neighbours


def points(n: int, seed: int = 0, dims: int = 8) -> np.ndarray:
    """Four well separated Gaussian groups in ``dims`` dimensions, float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(4, dims))
    return (centres[np.arange(n) % 4] + rng.normal(size=(n, dims))).astype(np.float32)


def graph_adata(X: np.ndarray) -> ad.AnnData:
    return ad.AnnData(
        obs=pd.DataFrame(index=[f"c{i}" for i in range(len(X))]), obsm={EMBEDDING_KEY: X}
    )


def test_auto_search_is_exact_below_scanpys_cut_off_and_approximate_from_it():
    assert knn_transformer(EXACT_MAX_CELLS - 1, 20, 0) == "sklearn"
    assert isinstance(knn_transformer(EXACT_MAX_CELLS, 20, 0), SeededNNDescent)
    assert knn_transformer(10**6, 20, 0, "exact") == "sklearn"
    assert isinstance(knn_transformer(100, 20, 0, "approximate"), SeededNNDescent)
    with pytest.raises(ValueError, match="knn_search 'fast'"):
        knn_transformer(100, 20, 0, "fast")


def test_graph_of_8192_cells_is_built_seeded_and_close_to_exact():
    """Took scanpy's pynndescent path, which crashed (csr_array.getnnz) at 8192 cells."""
    X = points(EXACT_MAX_CELLS)
    runs = []
    for _ in range(2):
        adata = graph_adata(X)
        neighbors_graph(adata, n_neighbors=10, seed=3)
        runs.append(adata)
    first, second = (run.obsp["distances"] for run in runs)
    assert isinstance(first, sp.spmatrix | sp.sparray)
    assert (first != second).nnz == 0  # same seed, same machine: the same graph
    fast = {"flavor": "igraph", "n_iterations": 2, "directed": False}  # leidenalg: minutes
    leiden_first = leiden(runs[0], 1.0, seed=3, **fast).to_numpy()
    np.testing.assert_array_equal(leiden_first, leiden(runs[1], 1.0, seed=3, **fast).to_numpy())
    # approximate neighbours: nearly all are the exact ones
    exact = NearestNeighbors(n_neighbors=10).fit(X).kneighbors(X, return_distance=False)
    found = first.tolil().rows
    recall = np.mean([len(set(found[i]) & set(exact[i][1:])) / 9 for i in range(0, len(X), 97)])
    assert recall > 0.95


def test_approximate_search_on_small_data_returns_a_sparse_matrix():
    transformer = knn_transformer(300, 5, 0, "approximate")
    distances = transformer.fit_transform(points(300))
    assert isinstance(distances, sp.csr_matrix)  # the class scanpy 1.11 can read
    assert (distances.getnnz(axis=1) == 6).all()  # the cell itself and its 5 neighbours


def test_too_few_cells_for_the_neighbours_is_a_clear_error():
    with pytest.raises(ValueError, match="n_neighbors is 20 but there are only 15 cells"):
        neighbors_graph(graph_adata(points(15)), n_neighbors=20, seed=0)


# --------------------------------------------------------------------------- labels


def partly_labelled(n: int = 300, n_missing: int = 30, seed: int = 0) -> ad.AnnData:
    """An embedding of three blobs; ``n_missing`` cells have no label (NaN)."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(["a", "b", "c"], n // 3)
    centres = {"a": (0, 0, 0), "b": (5, 0, 0), "c": (0, 5, 0)}
    X = np.array([centres[t] for t in truth]) + rng.normal(scale=1.2, size=(n, 3))
    labels = pd.Series(truth, dtype=object)
    labels[rng.choice(n, n_missing, replace=False)] = np.nan
    split = np.where(rng.random(n) < 0.2, "test", "train")
    obs = pd.DataFrame(
        {"cell_type": normalise_labels(labels), "split": split},
        index=[f"c{i}" for i in range(n)],
    )
    adata = ad.AnnData(obs=obs, obsm={EMBEDDING_KEY: X.astype(np.float32)})
    adata.uns["label_key"] = "cell_type"
    return adata


CLUSTER = {
    **schema_defaults("cluster"),
    **{"n_neighbors": 10, "knn_k": 5, "kmeans_n_init": 4, "bisection_max_steps": 20},
}


def test_unlabelled_cells_are_clustered_but_not_scored():
    adata = partly_labelled()
    scores = evaluate_embedding(adata, seed=0, **CLUSTER)
    scored = adata.obs["cell_type"].notna().to_numpy()
    assert scores["n_scored"] == 270 and scores["n_labels"] == 3
    # every cell got a cluster ...
    for key in ("leiden", "leiden_matched", "kmeans"):
        assert adata.obs[key].notna().all(), key
    # ... and each score is the one computed on the labelled cells alone
    labels = adata.obs["cell_type"].astype(str).to_numpy()[scored]
    X = adata.obsm[EMBEDDING_KEY][scored]
    for prefix, key in (("", "leiden"), ("matched_", "leiden_matched"), ("kmeans_", "kmeans")):
        clusters = adata.obs[key].astype(str).to_numpy()[scored]
        assert scores[f"{prefix}ari"] == pytest.approx(skm.adjusted_rand_score(labels, clusters))
        assert scores[f"{prefix}nmi"] == pytest.approx(
            skm.normalized_mutual_info_score(labels, clusters)
        )
    assert scores["silhouette"] == pytest.approx(skm.silhouette_score(X, labels))
    split = adata.obs["split"].to_numpy()[scored]
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=5).fit(X[split == "train"], labels[split == "train"])
    expected = (knn.predict(X[split == "test"]) == labels[split == "test"]).mean()
    assert scores["knn_accuracy"] == pytest.approx(expected)
    assert scores["matched_n_clusters"] == 3


def test_the_same_scores_as_the_labelled_cells_alone_when_clustered_alike():
    """k-means on the same embedding: with and without the unlabelled cells, the score of
    the labelled cells is that of their own clustering (unlabelled never a class)."""
    adata = partly_labelled(n_missing=0)
    full = evaluate_embedding(adata.copy(), seed=0, **CLUSTER)
    assert full["n_scored"] == 300 and full["n_labels"] == 3
    half = partly_labelled(n_missing=150)
    scores = evaluate_embedding(half, seed=0, **CLUSTER)
    assert scores["n_labels"] == 3 and scores["n_scored"] == 150
    assert scores["kmeans_ari"] > 0.8  # blobs: the labelled half is still well recovered


def test_import_keeps_missing_labels_missing():
    rng = np.random.default_rng(0)
    labels = np.array(["t0", "t1", "t2"] * 100, dtype=object)
    labels[:30] = np.nan
    labels[30:35] = "  "  # blank counts as missing too
    obs = pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(300)])
    counts = sp.csr_matrix(rng.poisson(1.0, size=(300, 20)).astype(np.int32))
    adata = finish(ad.AnnData(X=counts, obs=obs), "cell_type", "test", {})
    column = adata.obs["cell_type"]
    assert list(column.cat.categories) == ["t0", "t1", "t2"]  # no "nan" type
    assert column.isna().sum() == 35


def test_a_label_column_with_no_label_at_all_is_refused():
    from scembed.checks import DataError

    obs = pd.DataFrame({"cell_type": [np.nan] * 5 + [""] * 5}, index=[f"c{i}" for i in range(10)])
    counts = sp.csr_matrix(np.ones((10, 3), dtype=np.int32))
    with pytest.raises(DataError, match="has no labels"):
        finish(ad.AnnData(X=counts, obs=obs), "cell_type", "test", {})


def test_a_label_column_with_a_single_value_is_refused():
    """One type (missing labels aside) gives ARI/NMI that mean nothing (issue 13)."""
    from scembed.checks import DataError

    obs = pd.DataFrame({"cell_type": ["B"] * 8 + [np.nan] * 2}, index=[f"c{i}" for i in range(10)])
    counts = sp.csr_matrix(np.ones((10, 3), dtype=np.int32))
    with pytest.raises(DataError, match="holds a single value \\('B'\\).*at least two"):
        finish(ad.AnnData(X=counts, obs=obs), "cell_type", "cells.h5ad", {})
    obs.iloc[0, 0] = 7  # numeric labels count as strings: two types now
    finish(ad.AnnData(X=counts, obs=obs.astype(object)), "cell_type", "cells.h5ad", {})


# --------------------------------------------------------------------------- versions


def test_version_mismatches_name_the_package_and_the_fix(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("scanpy==1.11.5\nscipy==1.17.1\ntorch==2.13.0\n# comment\n")
    assert read_pins(requirements) == {"scanpy": "1.11.5", "scipy": "1.17.1", "torch": "2.13.0"}
    same = {"scanpy": "1.11.5", "scipy": "1.17.1", "torch": "2.13.0+cpu"}  # local build tag
    assert version_mismatches(requirements=requirements, installed=same) == []
    other = {"scanpy": "1.10.4", "torch": "2.13.0"}  # scipy not installed here: skipped
    messages = version_mismatches(requirements=requirements, installed=other)
    assert len(messages) == 1
    assert "scanpy 1.10.4 is installed" in messages[0] and "scanpy==1.11.5" in messages[0]
    assert "pip install -r requirements.txt" in messages[0]


def test_this_environment_has_the_pinned_versions():
    """make venv installs the pins: the check must be silent here (and so not cry wolf)."""
    assert version_mismatches() == []


def test_every_metric_reaches_every_table():
    """METRICS is the one list: evaluation computes each, comparison and headline read it."""
    from scembed.metrics import METRIC_NAMES, METRICS

    adata = partly_labelled(n_missing=0)
    scores = evaluate_embedding(adata, seed=0, **CLUSTER)
    assert set(METRIC_NAMES) <= set(scores)
    table = metrics_rows({"pca": "pca", "vae": "vae"}, [0, 1])
    for name in METRIC_NAMES:
        table[name] = table.get(name, 0.5)
    comparison = compare_methods(table)
    assert set(comparison["metric"]) == set(METRIC_NAMES)
    headline = headline_markdown(table, comparison)
    for metric in METRICS:
        if metric.headline:
            assert metric.headline.format(resolution=0.8) in headline


def test_schema_enums_are_the_codes_choices():
    """The schema's allowed values are those the code accepts (defined once each)."""
    import yaml
    from conftest import REPO

    from scembed.cluster import KNN_SEARCHES
    from scembed.vae.params import CHOICES, PRESETS

    schema = yaml.safe_load((REPO / "config/schema/config.schema.yaml").read_text())
    vae = schema["$defs"]["vae"]["properties"]
    for key, allowed in CHOICES.items():
        assert vae[key]["enum"] == list(allowed), key
    assert vae["preset"]["enum"] == list(PRESETS)
    assert set(vae) - {"kind", "preset"} == set(PRESETS["book"])  # every parameter described
    cluster = schema["$defs"]["cluster"]["properties"]
    assert cluster["knn_search"]["enum"] == list(KNN_SEARCHES)
    assert set(schema["properties"]["cluster"]["properties"]) == set(cluster)
    assert set(schema["properties"]["preprocess"]["properties"]) == set(
        schema["$defs"]["preprocess"]["properties"]
    )
