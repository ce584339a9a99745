"""The VAE: ``inference`` (q(z|x)) -> ``generative`` (p(x|z)) -> ``loss``."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scembed.vae import fused
from scembed.vae.distributions import LIKELIHOODS
from scembed.vae.nn import Decoder, Encoder

ENCODER_INPUTS = ("counts", "log1p")
SIZE_FACTORS = ("book", "library", "observed")  # see scembed.vae.train.size_factors


def kl_normal_standard(mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mean, scale^2) || N(0, 1)) in closed form.

    The same numbers as ``torch.distributions.kl_divergence`` of the two Normals, in
    fewer operations; a NaN passes through to the caller's finiteness check.
    """
    return 0.5 * (mean.square() + scale.square() - 1.0) - torch.log(scale)


@dataclass
class LossOutput:
    """Loss terms of one minibatch.

    ``loss`` is the scalar that is minimised: the sum over cells of ``reconst_loss``
    (negative log-likelihood summed over genes) plus ``kl_weight`` times the sum of
    ``kl_divergence_z`` (KL of q(z|x) to N(0, I) summed over latent dimensions).
    """

    loss: torch.Tensor
    reconst_loss: torch.Tensor
    kl_divergence_z: torch.Tensor
    n_cells: int


class VAE(nn.Module):
    """Variational autoencoder of counts with a ZINB, NB, ZIP or Poisson likelihood.

    Per-gene parameters, initialised from N(0, 1) as in the book: ``px_r`` (raw inverse
    dispersion, theta = softplus(px_r)) and ``px_dropout`` (zero-inflation logits, gate =
    sigmoid(px_dropout)). ``encoder_input="counts"`` feeds raw counts to the encoder (the
    book); ``"log1p"`` feeds log1p(counts). ``dropout`` applies to the encoder's hidden
    layers; ``decoder_output`` is described in :class:`scembed.vae.nn.Decoder`.
    """

    def __init__(
        self,
        n_genes: int,
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 2,
        likelihood: str = "zinb",
        posterior_scale: str = "softplus",
        encoder_input: str = "counts",
        dropout: float = 0.0,
        decoder_output: str = "softplus",
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood {likelihood!r} is not one of {sorted(LIKELIHOODS)}")
        if encoder_input not in ENCODER_INPUTS:
            raise ValueError(f"encoder_input {encoder_input!r} is not one of {ENCODER_INPUTS}")
        self.likelihood = likelihood
        self.encoder_input = encoder_input
        self.z_encoder = Encoder(
            n_genes, n_latent, n_hidden, n_layers, posterior_scale, dropout=dropout
        )
        self.decoder = Decoder(n_latent, n_genes, n_hidden, n_layers, output=decoder_output)
        self.px_r = nn.Parameter(torch.randn(n_genes))
        self.px_dropout = nn.Parameter(torch.randn(n_genes))

    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Posterior mean and scale of z given counts ``x``, and a reparameterised sample."""
        x_in = torch.log1p(x) if self.encoder_input == "log1p" else x
        qz_m, qz_scale = self.z_encoder(x_in)
        z = qz_m + qz_scale * torch.randn_like(qz_m)  # reparameterised sample of q(z|x)
        return {"qz_m": qz_m, "qz_scale": qz_scale, "z": z}

    def generative(self, z: torch.Tensor, size_factor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Likelihood parameters: expected counts, inverse dispersion, dropout logits."""
        px_rate = self.decoder(z) * size_factor
        return {"px_rate": px_rate, "px_r": F.softplus(self.px_r), "px_dropout": self.px_dropout}

    def loss(
        self,
        x: torch.Tensor,
        size_factor: torch.Tensor,
        kl_weight: float = 1.0,
        log_factorial: torch.Tensor | None = None,
    ) -> LossOutput:
        """The book's loss: summed negative log-likelihood plus summed KL to N(0, I).

        ``size_factor`` must broadcast to ``x`` (cells x genes, or cells x 1).
        ``log_factorial``: sum_g lgamma(x + 1) per cell, a constant of the data that a
        training loop can compute once per cell (``scembed.vae.fused.log_factorial``);
        computed here when not given. The reconstruction term is the fused
        ``scembed.vae.fused.reconst_loss``: minus the log-likelihood of
        ``scembed.vae.distributions`` summed over genes (to
        about 1e-6 relative), with a hand-written gradient.
        """
        qz = self.inference(x)
        px = self.generative(qz["z"], size_factor)
        if log_factorial is None:
            log_factorial = fused.log_factorial(x)
        reconst_loss = fused.reconst_loss(
            self.likelihood, x, px["px_rate"], px["px_r"], px["px_dropout"]
        ).add(log_factorial)
        kl_divergence_z = kl_normal_standard(qz["qz_m"], qz["qz_scale"]).sum(dim=-1)
        loss = reconst_loss.sum() + kl_weight * kl_divergence_z.sum()
        return LossOutput(loss, reconst_loss, kl_divergence_z, x.shape[0])
