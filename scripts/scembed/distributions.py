"""Elementwise log-likelihoods of counts, named as in scvi-tools.

All functions are pure and return a tensor shaped like ``x`` (broadcasting the
parameters). Zero-inflation gates are given as logits and handled in log space
(softplus / logaddexp), so gate logits of +-inf, counts of 1e5 and rates of 1e-12 stay
finite (except where the probability is truly zero, e.g. ``x > 0`` under a closed gate).
"""

import torch
import torch.nn.functional as F


def log_nb_positive(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Negative binomial log-probability with mean ``mu`` and inverse dispersion ``theta``.

    Success probability p = mu / (mu + theta), variance mu + mu^2 / theta.
    """
    log_theta_mu_eps = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu_eps)
        + x * (torch.log(mu + eps) - log_theta_mu_eps)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def log_poisson(x: torch.Tensor, mu: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Poisson log-probability with rate ``mu``."""
    return x * torch.log(mu + eps) - mu - torch.lgamma(x + 1)


def _zero_inflate(x: torch.Tensor, log_p: torch.Tensor, pi_logits: torch.Tensor) -> torch.Tensor:
    """log(pi * 1[x=0] + (1 - pi) * P(x)) from log P(x) and gate logits, pi = sigmoid."""
    log_pi = -F.softplus(-pi_logits)  # log(pi)
    log_one_minus_pi = -F.softplus(pi_logits)  # log(1 - pi)
    log_p_gated = log_one_minus_pi + log_p
    case_zero = torch.logaddexp(log_pi, log_p_gated)
    return torch.where(x == 0, case_zero, log_p_gated)


def log_zinb_positive(
    x: torch.Tensor,
    mu: torch.Tensor,
    theta: torch.Tensor,
    pi_logits: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Zero-inflated negative binomial log-probability; ``pi_logits`` are dropout logits."""
    return _zero_inflate(x, log_nb_positive(x, mu, theta, eps), pi_logits)


def log_zip_positive(
    x: torch.Tensor, mu: torch.Tensor, pi_logits: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Zero-inflated Poisson log-probability; ``pi_logits`` are dropout logits."""
    return _zero_inflate(x, log_poisson(x, mu, eps), pi_logits)


LIKELIHOODS = {
    "zinb": log_zinb_positive,
    "nb": log_nb_positive,
    "zip": log_zip_positive,
    "poisson": log_poisson,
}
"""Likelihood name -> log-probability function."""
