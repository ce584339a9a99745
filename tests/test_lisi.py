"""The LISI (scembed.lisi): against harmonypy's and by hand, its neighbours without the
cell itself, and the scaled iLISI and cLISI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scembed.lisi import (
    _neighbour_weights,
    clisi_scaled,
    ilisi_scaled,
    lisi,
    neighbours,
    without_self,
)


@pytest.mark.parametrize("n_cells", [40, 300])
def test_lisi_equals_harmonypy_on_exact_neighbours(n_cells):
    harmonypy = pytest.importorskip("harmonypy")
    rng = np.random.default_rng(n_cells)
    x = rng.normal(size=(n_cells, 4))
    codes = rng.integers(0, 3, n_cells)
    x[codes == 0] += 1.0  # one batch apart: LISI varies between cells
    expected = harmonypy.compute_lisi(x, pd.DataFrame({"b": codes}), ["b"])[:, 0]
    distances, indices = neighbours(x, min(90, n_cells - 1), seed=0, search="exact")
    np.testing.assert_allclose(lisi(distances, indices, codes), expected, rtol=0, atol=1e-10)


def test_lisi_by_hand_with_equal_distances():
    """Equal distances weigh every neighbour alike: LISI is 1 / sum of squared shares."""
    distances = np.ones((3, 4))
    indices = np.array([[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, 2, 3]])
    codes = np.array([0, 0, 1, 1, 1])
    # neighbours' codes: [0,1,1,1] -> 1 / (1/16 + 9/16); [0,1,1,1]; [0,0,1,1] -> 2
    np.testing.assert_allclose(lisi(distances, indices, codes), [1.6, 1.6, 2.0])
    one_category = lisi(distances, indices, np.zeros(5, dtype=int))
    np.testing.assert_allclose(one_category, 1.0)


def test_neighbour_weights_reach_the_perplexity():
    distances = np.sort(np.random.default_rng(0).gamma(2.0, size=(50, 90)), axis=1)
    p, h = _neighbour_weights(distances, perplexity=30, tol=1e-5, max_tries=50)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    entropy = -(p * np.log(p)).sum(axis=1)
    np.testing.assert_allclose(entropy, np.log(30), atol=1e-4)
    np.testing.assert_allclose(h, entropy, atol=1e-8)


def test_approximate_neighbours_drop_each_cell_itself():
    """NN-descent lists a cell among its own neighbours (first, or later when duplicates
    tie with it); a row without the cell drops its farthest neighbour instead."""
    indices = np.array([[0, 5, 6], [4, 1, 7], [8, 9, 3]])
    distances = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0], [1.0, 2.0, 4.0]])
    kept_distances, kept = without_self(distances, indices, k=2)
    np.testing.assert_array_equal(kept, [[5, 6], [4, 7], [8, 9]])
    np.testing.assert_array_equal(kept_distances, [[1.0, 2.0], [0.0, 3.0], [1.0, 2.0]])
    missing = without_self(np.array([[0.0, 1.0, 0.0]]), np.array([[0, 2, -1]]), k=2)
    np.testing.assert_array_equal(missing[0], [[1.0, np.inf]])  # -1: no neighbour found


def test_scaled_lisi_at_their_ends():
    assert ilisi_scaled(np.full(10, 3.0), n_batches=3) == 1.0  # every batch everywhere
    assert ilisi_scaled(np.ones(10), n_batches=3) == 0.0  # one batch per neighbourhood
    assert ilisi_scaled(np.array([1.0, 2.0, np.nan]), n_batches=2) == 0.5  # NaN skipped
    assert clisi_scaled(np.ones(10), n_labels=4) == 1.0  # one label per neighbourhood
    assert clisi_scaled(np.full(10, 4.0), n_labels=4) == 0.0
    assert np.isnan(ilisi_scaled(np.ones(3), 1)) and np.isnan(clisi_scaled(np.ones(3), 1))
