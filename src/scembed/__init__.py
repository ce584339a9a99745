"""scembed: the single-cell embedding benchmark library behind the Snakemake workflow.

Data: ``sources`` (counts and labels from each source), ``synthetic``, ``preprocess``.
Embeddings: ``pca``, and the VAE stack ``distributions`` (and its fused training form
``fused``) -> ``nn`` -> ``module`` -> ``train``; ``embedding`` (the shared embedding
file). Evaluation: ``cluster``, ``metrics``, ``evaluate``, ``compare``, ``plots``,
``provenance``. Plumbing: ``runtime``.
Library functions take arrays, AnnData objects and plain parameters, never the
``snakemake`` object.
"""
