"""Figures: UMAPs coloured by cluster, label and batch; metrics by seed; loss curves;
cluster heatmaps; paired effects; the integration trade-off."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

UNLABELLED = "unlabelled"


def _save(fig, path: str, dpi: int = 120) -> None:
    """Lay out, write and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _scatter(ax, xy: np.ndarray, groups, title: str) -> None:
    """Cells coloured by group; cells without coordinates (outside the UMAP's sample)
    are not drawn, and the title says how many are."""
    xy = np.asarray(xy, dtype=float)
    drawn = np.isfinite(xy).all(axis=1)
    if not drawn.all():
        title = f"{title} ({drawn.sum()} of {len(xy)} cells)"
    xy, groups = xy[drawn], pd.Series(groups).to_numpy()[drawn]
    groups = pd.Series(groups)
    missing = groups.isna().to_numpy()
    groups = groups.astype(str).to_numpy()
    names = sorted(np.unique(groups[~missing]), key=lambda g: (len(g), g))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    if missing.any():  # cells without a label, drawn first and in grey
        ax.scatter(*xy[missing].T, s=4, color="lightgrey", label=UNLABELLED, linewidths=0)
    for i, name in enumerate(names):
        mask = (groups == name) & ~missing
        ax.scatter(*xy[mask].T, s=4, color=cmap(i % cmap.N), label=name, linewidths=0)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(names) <= 25:
        ax.legend(
            markerscale=3, fontsize=6, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5)
        )


def umap_figure(xy: np.ndarray, clusters, labels, title: str, path: str, batches=None) -> None:
    """Panels of the same UMAP: Leiden clusters, the known labels and, when the data
    have a batch (``batches``), the batches."""
    n_panels = 2 if batches is None else 3
    fig, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4.5))
    _scatter(axes[0], xy, clusters, f"{title}: Leiden clusters")
    _scatter(axes[1], xy, labels, f"{title}: labels")
    if batches is not None:
        _scatter(axes[2], xy, batches, f"{title}: batches")
    _save(fig, path, dpi=120)


def loss_figure(history, title: str, path: str) -> None:
    """Training and validation loss per cell by epoch."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["epoch"], history["train_loss"], label="training")
    ax.plot(history["epoch"], history["validation_loss"], label="validation")
    best = history["validation_loss"].idxmin()
    ax.axvline(history["epoch"][best], color="grey", linestyle=":", label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per cell")
    ax.set_title(title)
    ax.legend(frameon=False)
    _save(fig, path, dpi=120)


def metrics_figure(metrics, metric_names, title: str, path: str) -> None:
    """One panel per metric: one point per seed for each method, the mean as a bar."""
    names = [m for m in metric_names if m in metrics.columns]
    methods = list(dict.fromkeys(metrics["method"]))
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for i, method in enumerate(methods):
            values = metrics.loc[metrics["method"] == method, name].astype(float)
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), values, s=14, zorder=3)
            ax.hlines(values.mean(), i - 0.3, i + 0.3, color="black", linewidth=1)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_title(name)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    fig.suptitle(title)
    _save(fig, path, dpi=120)


def umap_grid_figure(tables: dict, title: str, path: str) -> None:
    """Rows: methods (their median-ARI run); columns: coloured by label, by cluster and,
    when the clusters tables have a ``batch`` column (data with a batch), by batch."""
    n_cols = 3 if any("batch" in table for table in tables.values()) else 2
    fig, axes = plt.subplots(
        len(tables), n_cols, figsize=(5.5 * n_cols, 4.2 * len(tables)), squeeze=False
    )
    for row, (name, table) in enumerate(tables.items()):
        xy = table[["umap_1", "umap_2"]].to_numpy()
        _scatter(axes[row, 0], xy, table["label"], f"{name}: labels")
        _scatter(axes[row, 1], xy, table["cluster"], f"{name}: Leiden clusters")
        if "batch" in table:
            _scatter(axes[row, 2], xy, table["batch"], f"{name}: batches")
    fig.suptitle(title)
    _save(fig, path, dpi=110)


def losses_figure(histories: dict, title: str, path: str) -> None:
    """Training (dashed) and validation (solid) loss per cell of every VAE run."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if not histories:
        ax.text(0.5, 0.5, "no VAE runs in this configuration", ha="center", va="center")
        ax.axis("off")
    cmap = plt.get_cmap("tab10")
    for i, (name, history) in enumerate(histories.items()):
        color = cmap(i % 10)
        ax.plot(history["epoch"], history["train_loss"], "--", color=color, linewidth=0.8)
        ax.plot(history["epoch"], history["validation_loss"], color=color, label=name)
    if histories:
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss per cell (solid: validation, dashed: training)")
        ax.legend(fontsize=7, frameon=False, ncol=2)
    ax.set_title(title)
    _save(fig, path, dpi=120)


def heatmap_figure(tables: dict, title: str, path: str) -> None:
    """Per method (its median-ARI run): fraction of each label's cells in each cluster."""
    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 4.5), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items(), strict=True):
        counts = pd.crosstab(table["label"], table["cluster"])
        order = sorted(counts.columns, key=lambda c: (len(str(c)), str(c)))
        fractions = counts[order].div(counts.sum(axis=1), axis=0)
        image = ax.imshow(fractions.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(order)), order, fontsize=7)
        ax.set_yticks(range(len(fractions)), fractions.index, fontsize=7)
        ax.set_xlabel("Leiden cluster")
        ax.set_title(name)
        fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of label's cells")
    fig.suptitle(title)
    _save(fig, path, dpi=120)


def paired_effects_figure(effects: pd.DataFrame, path: str) -> None:
    """One panel per dataset (rows) and score (columns): each method's mean paired
    difference from the baseline with its bootstrap CI; the line at 0 is the baseline.
    ``effects``: rows of comparison.tsv with a paired difference
    (``scembed.compare.paired_effects``)."""
    datasets = list(dict.fromkeys(effects["dataset"])) or ["(none)"]
    metrics = list(dict.fromkeys(effects["metric"])) or ["(none)"]
    methods = list(dict.fromkeys(effects["method"]))
    fig, axes = plt.subplots(
        len(datasets),
        len(metrics),
        figsize=(2.6 * len(metrics) + 1.5, 0.28 * max(len(methods), 3) * len(datasets) + 1),
        squeeze=False,
        sharey=True,
    )
    y = {method: i for i, method in enumerate(methods)}
    for r, dataset in enumerate(datasets):
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            rows = effects[(effects["dataset"] == dataset) & (effects["metric"] == metric)]
            ys = rows["method"].map(y).to_numpy()
            means = rows["diff_mean"].to_numpy()
            low = (means - rows["diff_ci_low"].to_numpy()).clip(min=0)
            high = (rows["diff_ci_high"].to_numpy() - means).clip(min=0)
            colors = np.where(means > 0, "tab:blue", "tab:red")
            ax.errorbar(means, ys, xerr=np.nan_to_num([low, high]), fmt="none", ecolor="grey")
            ax.scatter(means, ys, c=colors, s=14, zorder=3)
            ax.axvline(0, color="black", linewidth=0.8)
            ax.set_yticks(range(len(methods)), methods, fontsize=7)
            ax.tick_params(axis="x", labelsize=7)
            if r == 0:
                ax.set_title(metric, fontsize=9)
            if c == 0:
                baseline = rows["baseline"].iloc[0] if len(rows) else "baseline"
                ax.set_ylabel(f"{dataset}\n(vs {baseline})", fontsize=8)
    axes[0, 0].invert_yaxis()
    _save(fig, path)


def integration_figure(runs: pd.DataFrame, title: str, path: str) -> None:
    """scIB's trade-off of one dataset: batch mixing (x) against bio conservation (y), one
    point per method at its mean over seeds, with the seeds' standard deviation as error
    bars. ``runs``: metrics.tsv rows with ``batch_mixing`` and ``bio_conservation``
    (``scembed.integration.with_aggregates``)."""
    fig, ax = plt.subplots(figsize=(6, 5))
    runs = runs.dropna(subset=["batch_mixing", "bio_conservation"])
    if runs.empty:
        ax.text(0.5, 0.5, "no integration scores (one batch)", ha="center", va="center")
        ax.axis("off")
    cmap = plt.get_cmap("tab10")
    for i, (method, group) in enumerate(runs.groupby("method", sort=False)):
        x, y = group["batch_mixing"], group["bio_conservation"]
        spread = [np.nan_to_num(v.std(ddof=1)) if len(v) > 1 else 0.0 for v in (x, y)]
        color = cmap(i % cmap.N)
        label = f"{method} ({len(group)} seeds)"
        ax.errorbar(
            x.mean(),
            y.mean(),
            xerr=spread[0],
            yerr=spread[1],
            fmt="o",
            color=color,
            capsize=3,
            label=label,
        )
        ax.annotate(method, (x.mean(), y.mean()), textcoords="offset points", xytext=(5, 5))
    if not runs.empty:
        ax.set_xlabel("batch mixing: mean of iLISI and batch ASW (1: mixed)")
        ax.set_ylabel(
            "bio conservation: mean of matched-k ARI, NMI,\nlabel ASW, cLISI, isolated-label ASW"
        )
        ax.legend(fontsize=7, frameon=False, loc="best")
        ax.margins(0.15)
    ax.set_title(title)
    _save(fig, path, dpi=120)
