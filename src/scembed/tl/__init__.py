"""Tools: embed (the PCA baseline, the VAE), score an embedding, compare methods over seeds.

Each runs the library functions that the workflow's jobs run (``embed_pca``,
``train_vae``, ``cluster``, ``integration``, ``compare``) with the config schema's
defaults, so that a number from a notebook and one from ``summary/metrics.tsv`` can be
compared. torch is imported by :func:`vae` only, when it is called.
"""

from scembed.tl.embed import VAEResult, pca, vae
from scembed.tl.scores import compare, evaluate

__all__ = ["VAEResult", "compare", "evaluate", "pca", "vae"]
