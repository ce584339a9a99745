"""Integration scores of an embedding of cells from several batches, as the scIB benchmark
defines them (Luecken et al. 2022, Nat Methods 19:41): does the embedding mix the
batches, and does it keep the cell types apart while doing so? Each is scaled as scIB
scales it, so that 0 is worst and 1 is best:

- ``ilisi``: batch mixing in each cell's neighbourhood. The median over cells of the
  integration LISI (the effective number of batches among a cell's neighbours,
  Korsunsky et al. 2019), scaled ``(median - 1) / (n_batches - 1)``.
- ``batch_asw``: batch mixing within each cell type. Per label, the silhouette of the
  batches among that label's cells, ``1 - |s|`` averaged over the label's cells, then
  averaged over the labels (labels in one batch only are skipped).
- ``clisi``: label conservation in each cell's neighbourhood. The median of the cell-type
  LISI (1 when a cell's neighbours all share its label), scaled
  ``(n_labels - median) / (n_labels - 1)``.
- ``isolated_label_asw``: conservation of the rarest types across batches. For each label
  present in the fewest batches, the silhouette of that label against all other cells,
  scaled ``(asw + 1) / 2``, averaged over those labels.

The LISI and its neighbour search are in :mod:`scembed.lisi`. The silhouettes are
computed on the seeded sample of 10,000 cells that the label silhouette of
``scembed.metrics`` uses above that size. Label scores use the labelled cells only;
iLISI uses every cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import pairwise_distances_chunked, silhouette_samples

from scembed.batches import batch_codes, batch_key_of
from scembed.embedding import EMBEDDING_KEY
from scembed.lisi import LISI_PERPLEXITY, clisi_scaled, ilisi_scaled, lisi, neighbours
from scembed.metrics import SILHOUETTE_MAX_CELLS

INTEGRATION_METRICS = ("ilisi", "batch_asw", "clisi", "isolated_label_asw")
"""The scores, in the order of integration.tsv and metrics.tsv; higher is better for all."""
INTEGRATION_COLUMNS = ("n_batches", *INTEGRATION_METRICS)
"""The columns that metrics.tsv takes from integration.tsv, for runs of datasets with a
batch (merged on dataset, method and seed)."""
TABLE_COLUMNS = (
    "dataset",
    "method",
    "seed",
    "batch_key",
    *INTEGRATION_COLUMNS,
    "n_isolated_labels",
)
"""The columns of a run's integration.tsv (one row)."""
BATCH_MIXING = ("ilisi", "batch_asw")
"""The scores averaged into a run's batch mixing (x of the trade-off figure)."""
BIO_CONSERVATION = ("matched_ari", "matched_nmi", "label_asw", "clisi", "isolated_label_asw")
"""The scores averaged into a run's label conservation (y of the trade-off figure): scIB's
bio-conservation scores that this workflow computes (ARI and NMI of a clustering with as
many clusters as labels, the label silhouette scaled to 0..1, cLISI, isolated labels)."""
LABELS = {
    "ilisi": "iLISI",
    "batch_asw": "batch ASW",
    "clisi": "cLISI",
    "isolated_label_asw": "isolated-label ASW",
    "batch_mixing": "batch mixing",
    "bio_conservation": "bio conservation",
}
"""How the summary and the figures name the scores and their two means."""


# --------------------------------------------------------------------------- silhouettes


def silhouette_sample(n: int, seed: int) -> np.ndarray:
    """The cells the silhouettes are computed on: all of them up to SILHOUETTE_MAX_CELLS,
    else the seeded sample that ``scembed.metrics.label_silhouette`` (scikit-learn's
    ``silhouette_score``) draws from the same cells."""
    if n <= SILHOUETTE_MAX_CELLS:
        return np.arange(n)
    return np.random.RandomState(seed).permutation(n)[:SILHOUETTE_MAX_CELLS]


def batch_asw(embedding: np.ndarray, labels, batches) -> float:
    """scIB's batch ASW: per label, 1 - |silhouette of the batches| over the label's
    cells, averaged per label, then over the labels. 1: the batches overlap within every
    type; 0: they separate. Labels in one batch (or in as many batches as cells) are
    skipped; NaN when none is left."""
    labels, batches = np.asarray(labels), np.asarray(batches)
    per_label = []
    for label in pd.unique(labels):
        cells = labels == label
        n_batches = len(np.unique(batches[cells]))
        if n_batches == 1 or n_batches == cells.sum():
            continue
        s = silhouette_samples(embedding[cells], batches[cells])
        per_label.append(np.mean(1 - np.abs(s)))
    return float(np.mean(per_label)) if per_label else float("nan")


def isolated_labels(labels, batches) -> list:
    """scIB's isolated labels: those present in the fewest batches (every label, when
    every label is in every batch)."""
    pairs = pd.DataFrame({"label": labels, "batch": batches}).drop_duplicates()
    batches_per_label = pairs.groupby("label")["batch"].count()
    return sorted(batches_per_label.index[batches_per_label == batches_per_label.min()])


def _label_distance_sums(embedding: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """n x n_codes: each cell's summed Euclidean distance to the cells of each code, from
    one chunked pass over the pairwise distances (as scikit-learn's silhouette does)."""
    onehot = np.zeros((len(codes), n_codes))
    onehot[np.arange(len(codes)), codes] = 1.0
    sums, start = np.empty((len(codes), n_codes)), 0
    for chunk in pairwise_distances_chunked(embedding):
        sums[start : start + len(chunk)] = chunk @ onehot
        start += len(chunk)
    return sums


def one_vs_rest_silhouettes(embedding: np.ndarray, labels, which) -> dict:
    """{label: silhouette score of "this label" against "every other cell"} for each of
    ``which`` (-1..1, scikit-learn's ``silhouette_score`` of the two groups, from one
    pass over the distances instead of one per label). NaN for a label with no cell or
    with every cell."""
    labels = np.asarray(labels)
    names, codes = np.unique(labels, return_inverse=True)
    sums = _label_distance_sums(np.asarray(embedding, dtype=np.float64), codes, len(names))
    total, n = sums.sum(axis=1), len(labels)
    scores = {}
    for label in which:
        own = labels == label
        n_own, n_rest = int(own.sum()), n - int(own.sum())
        if n_own == 0 or n_rest == 0:
            scores[label] = float("nan")
            continue
        to_label = sums[:, np.searchsorted(names, label)]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(own, to_label / (n_own - 1), (total - to_label) / (n_rest - 1))
            b = np.where(own, (total - to_label) / n_rest, to_label / n_own)
            s = np.nan_to_num((b - a) / np.maximum(a, b))  # a cell alone in its group: 0
        scores[label] = float(s.mean())
    return scores


def isolated_label_asw(embedding: np.ndarray, labels, isolated) -> float:
    """scIB's isolated-label ASW: each isolated label's silhouette against all other cells,
    scaled (asw + 1) / 2, averaged over the isolated labels (those among ``labels``)."""
    present = [label for label in isolated if label in set(np.asarray(labels))]
    scores = one_vs_rest_silhouettes(embedding, labels, present)
    values = [(s + 1) / 2 for s in scores.values() if np.isfinite(s)]
    return float(np.mean(values)) if values else float("nan")


# --------------------------------------------------------------------------- one run


def no_scores(n_batches: int = 1) -> dict:
    """The scores of a run whose data hold fewer than two batches: all NaN."""
    return {
        "n_batches": n_batches,
        **dict.fromkeys(INTEGRATION_METRICS, float("nan")),
        "n_isolated_labels": 0,
    }


def integration_scores(adata, seed: int, knn_search: str = "auto") -> dict:
    """The INTEGRATION_COLUMNS (and ``n_isolated_labels``) of an embedding file whose
    ``uns["batch_key"]`` names its batch column; all NaN without one (one batch)."""
    batch_key = batch_key_of(adata)
    if batch_key is None:
        return no_scores()
    batch_values = adata.obs[batch_key]
    if batch_values.isna().any():
        raise ValueError(
            f"{int(batch_values.isna().sum())} cells have no batch in obs[{batch_key!r}]"
        )
    batches, names = batch_codes(adata.obs, batch_key)
    n_batches = len(names)
    if n_batches < 2:
        return no_scores(n_batches)
    embedding = np.asarray(adata.obsm[EMBEDDING_KEY], dtype=np.float64)
    label_key = adata.uns["label_key"]
    labelled = adata.obs[label_key].notna().to_numpy()
    labels = adata.obs[label_key].astype(str).to_numpy()[labelled]
    n_labels = len(np.unique(labels))

    k = min(3 * LISI_PERPLEXITY, len(embedding) - 1)
    distances, indices = neighbours(embedding, k, seed, knn_search)
    ilisi = ilisi_scaled(lisi(distances, indices, batches), n_batches)
    clisi = float("nan")
    if n_labels >= 2:
        if not labelled.all():  # the labelled cells' own neighbours
            k = min(3 * LISI_PERPLEXITY, int(labelled.sum()) - 1)
            distances, indices = neighbours(embedding[labelled], k, seed, knn_search)
        label_codes = np.unique(labels, return_inverse=True)[1]
        clisi = clisi_scaled(lisi(distances, indices, label_codes), n_labels)

    x, cell_batches = embedding[labelled], batches[labelled]
    isolated = isolated_labels(labels, cell_batches)
    sample = silhouette_sample(len(labels), seed)
    return {
        "n_batches": n_batches,
        "ilisi": ilisi,
        "batch_asw": batch_asw(x[sample], labels[sample], cell_batches[sample]),
        "clisi": clisi,
        "isolated_label_asw": (
            isolated_label_asw(x[sample], labels[sample], isolated)
            if n_labels >= 2
            else float("nan")
        ),
        "n_isolated_labels": len(isolated),
    }


def integration_row(dataset: str, method: str, seed: int, batch_key: str, scores: dict):
    """A run's integration.tsv: one row of TABLE_COLUMNS."""
    row = {"dataset": dataset, "method": method, "seed": seed, "batch_key": batch_key}
    return pd.DataFrame([{**row, **scores}]).reindex(columns=list(TABLE_COLUMNS))


def with_aggregates(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` (metrics.tsv rows) with ``label_asw`` ((silhouette + 1) / 2),
    ``batch_mixing`` (mean of BATCH_MIXING) and ``bio_conservation`` (mean of
    BIO_CONSERVATION, over the scores the table has) per run."""
    table = metrics.copy()
    if "silhouette" in table:
        table["label_asw"] = (table["silhouette"] + 1) / 2
    mixing = [c for c in BATCH_MIXING if c in table]
    bio = [c for c in BIO_CONSERVATION if c in table]
    table["batch_mixing"] = table[mixing].mean(axis=1, skipna=False) if mixing else np.nan
    table["bio_conservation"] = table[bio].mean(axis=1, skipna=False) if bio else np.nan
    return table
