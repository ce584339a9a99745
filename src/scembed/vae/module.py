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


class BatchNames(nn.Module):
    """The batch names of a VAE with a batch, in the order of its one-hot columns.

    They travel in the state dict (as the module's extra state, key
    ``batches._extra_state``), so that a saved model says which batch each column is,
    and a state of other batches does not load. A VAE without a batch has no such
    module, and its state dict is what it was before batches existed.
    """

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = [str(name) for name in names]

    def get_extra_state(self) -> list[str]:
        return list(self.names)

    def set_extra_state(self, state) -> None:
        if list(state) != self.names:
            raise ValueError(f"the state's batches {list(state)} are not this model's {self.names}")


class VAE(nn.Module):
    """Variational autoencoder of counts with a ZINB, NB, ZIP or Poisson likelihood.

    Per-gene parameters, initialised from N(0, 1) as in the book: ``px_r`` (raw inverse
    dispersion, theta = softplus(px_r)) and ``px_dropout`` (zero-inflation logits, gate =
    sigmoid(px_dropout)). ``encoder_input="counts"`` feeds raw counts to the encoder (the
    book); ``"log1p"`` feeds log1p(counts). ``dropout`` applies to the encoder's hidden
    layers; ``decoder_output`` is described in :class:`scembed.vae.nn.Decoder`.

    ``n_batch`` > 0: each cell's batch (``batch_index``, integer codes 0 .. n_batch - 1)
    enters the encoder and the decoder as a one-hot covariate (:mod:`scembed.vae.nn`),
    so that ``inference``, ``generative`` and ``loss`` need it; ``batch_names`` (default
    "0", "1", ...) name the codes in the state dict (:class:`BatchNames`). ``n_batch`` 0
    (the default) is the network without a batch, parameter for parameter.
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
        n_batch: int = 0,
        batch_names: list[str] | None = None,
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood {likelihood!r} is not one of {sorted(LIKELIHOODS)}")
        if encoder_input not in ENCODER_INPUTS:
            raise ValueError(f"encoder_input {encoder_input!r} is not one of {ENCODER_INPUTS}")
        self.likelihood = likelihood
        self.encoder_input = encoder_input
        self.n_batch = n_batch
        if n_batch:
            names = [str(i) for i in range(n_batch)] if batch_names is None else batch_names
            if len(names) != n_batch:
                raise ValueError(f"{len(names)} batch_names for n_batch {n_batch}")
            self.batches = BatchNames(names)
        elif batch_names:
            raise ValueError("batch_names given with n_batch 0")
        self.z_encoder = Encoder(
            n_genes, n_latent, n_hidden, n_layers, posterior_scale, dropout=dropout, n_batch=n_batch
        )
        self.decoder = Decoder(
            n_latent, n_genes, n_hidden, n_layers, output=decoder_output, n_batch=n_batch
        )
        self.px_r = nn.Parameter(torch.randn(n_genes))
        self.px_dropout = nn.Parameter(torch.randn(n_genes))

    def one_hot(self, batch_index: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """The one-hot batch (cells x n_batch) of the codes ``batch_index``; None without
        a batch. ValueError when the codes are missing or given to a model without one."""
        if self.n_batch == 0:
            if batch_index is not None:
                raise ValueError("batch_index given to a VAE built without a batch (n_batch 0)")
            return None
        if batch_index is None:
            raise ValueError(f"this VAE has {self.n_batch} batches: pass each cell's batch_index")
        return F.one_hot(batch_index, self.n_batch).to(dtype)

    def inference(
        self, x: torch.Tensor, batch_index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Posterior mean and scale of z given counts ``x`` (and the cells' batches), and a
        reparameterised sample."""
        x_in = torch.log1p(x) if self.encoder_input == "log1p" else x
        qz_m, qz_scale = self.z_encoder(x_in, self.one_hot(batch_index, x.dtype))
        z = qz_m + qz_scale * torch.randn_like(qz_m)  # reparameterised sample of q(z|x)
        return {"qz_m": qz_m, "qz_scale": qz_scale, "z": z}

    def generative(
        self, z: torch.Tensor, size_factor: torch.Tensor, batch_index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Likelihood parameters: expected counts, inverse dispersion, dropout logits."""
        px_rate = self.decoder(z, self.one_hot(batch_index, z.dtype)) * size_factor
        return {"px_rate": px_rate, "px_r": F.softplus(self.px_r), "px_dropout": self.px_dropout}

    def loss(
        self,
        x: torch.Tensor,
        size_factor: torch.Tensor,
        kl_weight: float = 1.0,
        log_factorial: torch.Tensor | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> LossOutput:
        """The book's loss: summed negative log-likelihood plus summed KL to N(0, I).

        ``size_factor`` must broadcast to ``x`` (cells x genes, or cells x 1).
        ``log_factorial``: sum_g lgamma(x + 1) per cell, a constant of the data that a
        training loop can compute once per cell (``scembed.vae.fused.log_factorial``);
        computed here when not given. The reconstruction term is the fused
        ``scembed.vae.fused.reconst_loss``: minus the log-likelihood of
        ``scembed.vae.distributions`` summed over genes (to
        about 1e-6 relative), with a hand-written gradient. ``batch_index``: the cells'
        batch codes, when the model has a batch.
        """
        qz = self.inference(x, batch_index)
        px = self.generative(qz["z"], size_factor, batch_index)
        if log_factorial is None:
            log_factorial = fused.log_factorial(x)
        reconst_loss = fused.reconst_loss(
            self.likelihood, x, px["px_rate"], px["px_r"], px["px_dropout"]
        ).add(log_factorial)
        kl_divergence_z = kl_normal_standard(qz["qz_m"], qz["qz_scale"]).sum(dim=-1)
        loss = reconst_loss.sum() + kl_weight * kl_divergence_z.sum()
        return LossOutput(loss, reconst_loss, kl_divergence_z, x.shape[0])
