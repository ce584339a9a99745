"""Agreement of clusters with labels."""

from __future__ import annotations

import numpy as np
from sklearn import metrics


def cluster_scores(labels, clusters) -> dict:
    """ARI and NMI of ``clusters`` against ``labels``, and the number of clusters."""
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    return {
        "ari": float(metrics.adjusted_rand_score(labels, clusters)),
        "nmi": float(metrics.normalized_mutual_info_score(labels, clusters)),
        "n_clusters": int(len(np.unique(clusters))),
    }
