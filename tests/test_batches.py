"""The batch of each cell (scembed.batches): the key every stage reads, the codes the
methods use, which methods use them, and the warning of a batch confounded with labels."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats.contingency import association

from scembed.batches import (
    CONFOUNDED_V,
    batch_codes,
    batch_key_of,
    confounding_warning,
    cramers_v,
    uses_batch,
)
from scembed.schema import load_schema


def test_batch_key_of_reads_the_key_back_from_an_h5ad_file_as_a_str(tmp_path):
    with_key = ad.AnnData(np.ones((2, 1), np.float32), uns={"batch_key": "sample"})
    with_key.write_h5ad(tmp_path / "with.h5ad")
    ad.AnnData(np.ones((2, 1), np.float32)).write_h5ad(tmp_path / "without.h5ad")
    key = batch_key_of(ad.read_h5ad(tmp_path / "with.h5ad"))
    assert key == "sample" and type(key) is str
    assert batch_key_of(ad.read_h5ad(tmp_path / "without.h5ad")) is None


def test_batch_key_of_an_empty_key_is_none():
    assert batch_key_of(ad.AnnData(np.ones((2, 1)), uns={"batch_key": ""})) is None


def test_batch_codes_number_the_sorted_names():
    obs = pd.DataFrame({"donor": ["d2", "d1", "d3", "d1", "d2"]})
    codes, names = batch_codes(obs, "donor")
    assert names == ["d1", "d2", "d3"]
    assert codes.dtype == np.int64 and codes.tolist() == [1, 0, 2, 0, 1]
    assert [names[c] for c in codes] == obs["donor"].tolist()


def test_batch_codes_do_not_depend_on_the_order_of_the_cells():
    """Two jobs that read the cells in other orders give each batch the same code."""
    obs = pd.DataFrame({"donor": ["b", "c", "a", "b", "a", "c"]})
    codes, names = batch_codes(obs, "donor")
    order = np.random.default_rng(0).permutation(len(obs))
    shuffled_codes, shuffled_names = batch_codes(obs.iloc[order], "donor")
    assert shuffled_names == names
    assert shuffled_codes.tolist() == codes[order].tolist()


def test_batch_codes_of_numbers_and_categories_use_the_names_as_text():
    """Numbers are compared as text (a plate 10 sorts before a plate 2), and a category
    that no cell has is no batch."""
    codes, names = batch_codes(pd.DataFrame({"plate": [10, 2, 10]}), "plate")
    assert names == ["10", "2"] and codes.tolist() == [0, 1, 0]
    plates = pd.Categorical(["p2", "p1", "p2"], categories=["p0", "p1", "p2"])
    codes, names = batch_codes(pd.DataFrame({"plate": plates}), "plate")
    assert names == ["p1", "p2"] and codes.tolist() == [1, 0, 1]


def schema_use_batch(kind: str) -> bool:
    return load_schema()["$defs"][kind]["properties"]["use_batch"]["default"]


@pytest.mark.parametrize("kind", ["pca", "scvi"])
def test_uses_batch_defaults_to_the_schema(kind):
    assert uses_batch({"kind": kind}) is schema_use_batch(kind)


def test_uses_batch_of_the_vae_defaults_to_its_preset():
    assert not uses_batch({"kind": "vae"})  # preset book
    assert not uses_batch({"kind": "vae", "preset": "stable"})
    assert uses_batch({"kind": "vae", "preset": "improved", "n_latent": 5})


@pytest.mark.parametrize(
    "method",
    [
        {"kind": "pca"},
        {"kind": "scvi"},
        {"kind": "vae"},
        {"kind": "vae", "preset": "improved"},
    ],
)
def test_uses_batch_follows_an_explicit_use_batch(method):
    assert uses_batch({**method, "use_batch": True}) is True
    assert uses_batch({**method, "use_batch": False}) is False


def test_uses_batch_of_a_vae_rejects_an_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        uses_batch({"kind": "vae", "preset": "fast"})


def test_cramers_v_agrees_with_scipy():
    rng = np.random.default_rng(0)
    labels = rng.choice(["B", "T", "NK", "mono"], 500)
    batches = np.where(rng.random(500) < 0.7, labels, rng.choice(["b1", "b2", "b3"], 500))
    table = pd.crosstab(labels, batches).to_numpy()
    expected = association(table, method="cramer", correction=False)
    assert cramers_v(labels, batches) == pytest.approx(expected, rel=1e-12)


def test_cramers_v_is_0_for_types_spread_evenly_and_1_for_a_batch_per_type():
    labels = ["B", "T", "NK"] * 4
    assert cramers_v(labels, ["b1"] * 6 + ["b2"] * 6) == pytest.approx(0.0, abs=1e-12)
    assert cramers_v(labels, [f"batch_{label}" for label in labels]) == pytest.approx(1.0)
    # one batch per type, but two types share a batch: still 1 (the batch names the type)
    assert cramers_v(labels, ["b1" if label == "B" else "b2" for label in labels]) == (
        pytest.approx(1.0)
    )


def test_cramers_v_without_two_rows_and_two_columns_is_0():
    assert cramers_v(["B", "T", "NK"], ["b1", "b1", "b1"]) == 0.0  # one batch
    assert cramers_v(["B", "B", "B"], ["b1", "b2", "b3"]) == 0.0  # one type
    assert cramers_v([], []) == 0.0


def test_a_confounded_batch_is_warned_of_by_name():
    labels = ["B", "T", "NK"] * 10
    batches = ["b1" if label == "B" else "b2" for label in labels]
    warning = confounding_warning(labels, batches, "sample", "cell_type")
    assert warning.startswith(
        "the batch 'sample' and the labels 'cell_type' are confounded (Cramér's V 1.00;"
    )
    assert warning.endswith("Check the crosstab of the two columns.")


def test_the_warning_starts_at_confounded_v():
    """Types spread over the batches give no warning; from CONFOUNDED_V on, one."""
    rng = np.random.default_rng(1)
    labels = rng.choice(["B", "T"], 400)
    found = []
    for mix in np.linspace(0, 1, 21):  # the share of cells whose batch follows their type
        follows = rng.random(400) < mix
        batches = np.where(follows, np.char.add("b_", labels), rng.choice(["b_B", "b_T"], 400))
        v = cramers_v(labels, batches)
        warned = confounding_warning(labels, batches, "sample", "cell_type") is not None
        assert warned == (v >= CONFOUNDED_V), (mix, v)
        found.append(warned)
    assert not found[0] and found[-1]
