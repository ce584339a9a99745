"""The VAE, layered as in scvi-tools: ``distributions`` (pure log-likelihoods; ``fused``
is their training form with a hand-written gradient) -> ``nn`` (encoder, decoder) ->
``module`` (inference, generative, loss) -> ``train`` (the loop), with ``params``
(presets and validation), ``inputs`` (their checks), ``feeding`` and ``streaming`` (the
counts on the device), ``step`` (eager, or a CUDA graph), ``device`` and ``optim``
(flat-buffer Adam) beside it."""
