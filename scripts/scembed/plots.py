"""Figures: UMAP coloured by cluster and by label."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _scatter(ax, xy: np.ndarray, groups, title: str) -> None:
    groups = np.asarray(groups).astype(str)
    names = sorted(np.unique(groups), key=lambda g: (len(g), g))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for i, name in enumerate(names):
        mask = groups == name
        ax.scatter(*xy[mask].T, s=4, color=cmap(i % cmap.N), label=name, linewidths=0)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(names) <= 25:
        ax.legend(
            markerscale=3, fontsize=6, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5)
        )


def umap_figure(xy: np.ndarray, clusters, labels, title: str, path: str) -> None:
    """Two panels of the same UMAP: Leiden clusters and the known labels."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    _scatter(axes[0], xy, clusters, f"{title}: Leiden clusters")
    _scatter(axes[1], xy, labels, f"{title}: labels")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
