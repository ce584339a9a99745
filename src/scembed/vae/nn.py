"""Encoder and decoder networks of the VAE.

With ``n_batch`` > 0 each network takes the cell's batch as a one-hot covariate
(cells x ``n_batch``, float) concatenated to its input: to the encoder's features and to
z before the decoder's first layer. scVI also injects it into every further hidden
layer of the decoder (``inject_covariates``); here it enters the first layer of each
network only, which is enough to let the latent space drop what the batch explains.
With ``n_batch`` 0 (the default) the networks, their parameters and their random
initialisation are those without a batch.
"""

import torch
import torch.nn.functional as F
from torch import nn

POSTERIOR_SCALES = ("softplus", "exp_logvar")
DECODER_OUTPUTS = ("softplus", "softmax")


def _with_batch(x: torch.Tensor, batch: torch.Tensor | None, n_batch: int) -> torch.Tensor:
    """``x`` with the one-hot ``batch`` appended as columns (``x`` itself when n_batch is 0)."""
    if n_batch == 0:
        if batch is not None:
            raise ValueError("a batch was given to a network built without one (n_batch 0)")
        return x
    if batch is None or batch.shape != (x.shape[0], n_batch):
        shape = None if batch is None else tuple(batch.shape)
        raise ValueError(
            f"the network needs a one-hot batch of ({x.shape[0]}, {n_batch}), got {shape}"
        )
    return torch.cat((x, batch), dim=-1)


def _mlp(n_input: int, n_hidden: int, n_layers: int, dropout: float = 0.0) -> nn.Sequential:
    """``n_layers`` blocks of Linear + BatchNorm1d + ReLU (+ Dropout when ``dropout`` > 0)."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [
            nn.Linear(n_input if i == 0 else n_hidden, n_hidden),
            nn.BatchNorm1d(n_hidden),
            nn.ReLU(),
        ]
        if dropout > 0:  # no module at 0: the book's network and RNG stream stay as they were
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """q(z | x): an MLP and two linear heads, the posterior mean and scale.

    ``posterior_scale="softplus"`` is the book's quirk: softplus(head) is used directly as
    the standard deviation. ``"exp_logvar"`` reads the head as a log-variance, the
    standard choice: scale = exp(head / 2). ``scale_eps`` keeps the scale away from 0.
    ``dropout``: dropout after each hidden layer in training (scVI's 0.1; the book 0).
    ``n_batch``: the width of the one-hot batch appended to the input (0: none).
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_hidden: int = 128,
        n_layers: int = 2,
        posterior_scale: str = "softplus",
        scale_eps: float = 1e-4,
        dropout: float = 0.0,
        n_batch: int = 0,
    ):
        super().__init__()
        if posterior_scale not in POSTERIOR_SCALES:
            raise ValueError(
                f"posterior_scale {posterior_scale!r} is not one of {POSTERIOR_SCALES}"
            )
        self.posterior_scale = posterior_scale
        self.scale_eps = scale_eps
        self.n_batch = n_batch
        self.encoder = _mlp(n_input + n_batch, n_hidden, n_layers, dropout)
        self.mean_encoder = nn.Linear(n_hidden, n_latent)
        self.scale_encoder = nn.Linear(n_hidden, n_latent)

    def forward(
        self, x: torch.Tensor, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (qz_m, qz_scale), each cells x n_latent; ``batch``: the one-hot batch."""
        q = self.encoder(_with_batch(x, batch, self.n_batch))
        qz_m = self.mean_encoder(q)
        head = self.scale_encoder(q)
        book = self.posterior_scale == "softplus"
        qz_scale = F.softplus(head) if book else torch.exp(0.5 * head)
        return qz_m, qz_scale + self.scale_eps


class Decoder(nn.Module):
    """p(x | z): an MLP and a linear layer, a positive rate per gene before size factors.

    ``output="softplus"`` (the book): a free positive rate per gene. ``"softmax"`` (scVI):
    the expected fraction of the cell's counts in each gene (each row sums to 1), to be
    multiplied by the observed library size (``size_factor: observed``).
    ``n_batch``: the width of the one-hot batch appended to z (0: none).
    """

    def __init__(
        self,
        n_latent: int,
        n_output: int,
        n_hidden: int = 128,
        n_layers: int = 2,
        output: str = "softplus",
        n_batch: int = 0,
    ):
        super().__init__()
        if output not in DECODER_OUTPUTS:
            raise ValueError(f"decoder_output {output!r} is not one of {DECODER_OUTPUTS}")
        self.output = output
        self.n_batch = n_batch
        self.decoder = _mlp(n_latent + n_batch, n_hidden, n_layers)
        self.rate_decoder = nn.Linear(n_hidden, n_output)

    def forward(self, z: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """Return the rate before size factors, cells x n_output; ``batch``: the one-hot
        batch."""
        head = self.rate_decoder(self.decoder(_with_batch(z, batch, self.n_batch)))
        return torch.softmax(head, dim=-1) if self.output == "softmax" else F.softplus(head)
