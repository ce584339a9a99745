"""Figures (scembed.plots) of data with a batch: the integration trade-off and the UMAPs
coloured by batch; without a batch the UMAPs keep their two panels."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from scembed.integration import with_aggregates
from scembed.plots import integration_figure, umap_figure, umap_grid_figure


def clusters_table(n: int = 60, batch: bool = False, seed: int = 0) -> pd.DataFrame:
    """A clusters.tsv: label, cluster and UMAP coordinates (and batch)."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {
            "label": rng.choice(["a", "b", "c"], n),
            "cluster": rng.choice(["0", "1"], n),
            "umap_1": rng.normal(size=n),
            "umap_2": rng.normal(size=n),
        }
    )
    if batch:
        table.insert(1, "batch", rng.choice(["s1", "s2"], n))
    return table


def width_per_height(path) -> float:
    image = mpimg.imread(path)
    return image.shape[1] / image.shape[0]


def test_integration_figure_is_written(tmp_path):
    rows = []
    for method, shift in (("pca", 0.0), ("harmony", 0.3)):
        for seed in (0, 1, 2):
            rows.append(
                {
                    "dataset": "b",
                    "method": method,
                    "seed": seed,
                    "ilisi": 0.2 + shift + 0.01 * seed,
                    "batch_asw": 0.8,
                    "clisi": 0.9,
                    "isolated_label_asw": 0.6,
                    "matched_ari": 0.5 - shift / 3,
                    "matched_nmi": 0.6,
                    "silhouette": 0.1,
                }
            )
    runs = with_aggregates(pd.DataFrame(rows))
    integration_figure(runs, "b: batch mixing against bio conservation", tmp_path / "i.png")
    assert (tmp_path / "i.png").read_bytes()[:4] == b"\x89PNG"
    one_seed = runs[runs["seed"] == 0]  # no spread: points without error bars
    integration_figure(one_seed, "one seed", tmp_path / "one.png")
    assert (tmp_path / "one.png").stat().st_size > 0
    empty = runs.assign(ilisi=np.nan)  # one batch: NaN scores, a figure that says so
    integration_figure(with_aggregates(empty), "no batch", tmp_path / "empty.png")
    assert (tmp_path / "empty.png").stat().st_size > 0


@pytest.mark.parametrize("batch", [False, True])
def test_umap_grid_has_a_batch_column_only_with_a_batch(tmp_path, batch):
    tables = {"pca": clusters_table(batch=batch), "vae": clusters_table(batch=batch, seed=1)}
    umap_grid_figure(tables, "d: UMAPs", tmp_path / "umaps.png")
    ratio = width_per_height(tmp_path / "umaps.png")
    # two rows of 2 (11 x 8.4 in) or 3 (16.5 x 8.4 in) panels
    assert ratio == pytest.approx(16.5 / 8.4 if batch else 11 / 8.4, rel=0.02)


def test_run_umap_has_a_batch_panel_only_with_a_batch(tmp_path):
    table = clusters_table(batch=True)
    xy = table[["umap_1", "umap_2"]].to_numpy()
    umap_figure(xy, table["cluster"], table["label"], "t", tmp_path / "two.png")
    umap_figure(xy, table["cluster"], table["label"], "t", tmp_path / "three.png", table["batch"])
    assert width_per_height(tmp_path / "two.png") == pytest.approx(11 / 4.5, rel=0.02)
    assert width_per_height(tmp_path / "three.png") == pytest.approx(16.5 / 4.5, rel=0.02)
