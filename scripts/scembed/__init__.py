"""scembed: single-cell embedding benchmark library behind the Snakemake workflow.

Layers: ``sources`` (read counts from each data source), ``synthetic`` (simulated counts),
``preprocess``, ``pca``, the VAE stack ``distributions`` -> ``nn`` -> ``module`` ->
``train``, ``cluster`` and ``metrics``. Library functions take arrays, AnnData objects
and plain parameters, never the ``snakemake`` object.
"""
