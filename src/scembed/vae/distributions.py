"""Elementwise log-likelihoods of counts, named as in scvi-tools.

All functions are pure and return a tensor shaped like the broadcast of their arguments.
Zero-inflation gates are given as logits and handled in log space (softplus /
logaddexp), so large counts (1e5), tiny rates (1e-12) and gate logits from -inf (no
inflation) to large finite values stay finite.
"""

import torch
import torch.nn.functional as F


def _log_nb_parts(x, mu, theta, eps):
    """(log NB(x), log NB(0)); log NB(0) = theta * log(theta / (theta + mu))."""
    log_theta_mu_eps = torch.log(theta + mu + eps)
    log_p0 = theta * (torch.log(theta + eps) - log_theta_mu_eps)
    log_p = (
        log_p0
        + x * (torch.log(mu + eps) - log_theta_mu_eps)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    return log_p, log_p0


def _zero_inflate(x, log_p, log_p0, pi_logits):
    """log(pi * 1[x=0] + (1 - pi) * P(x)) with pi = sigmoid(pi_logits).

    ``log_p0`` is log P(0). The two cases are blended with a 0/1 float mask (lerp picks
    either case exactly): on CPU this is many times faster than ``torch.where`` and its
    backward, and it needs finite logits (``-inf`` is fine).
    """
    log_pi = -F.softplus(-pi_logits)  # log(pi)
    log_one_minus_pi = -F.softplus(pi_logits)  # log(1 - pi)
    case_non_zero = log_one_minus_pi + log_p
    case_zero = torch.logaddexp(log_pi, log_one_minus_pi + log_p0)
    is_zero = torch.eq(x, 0, out=torch.empty_like(x))  # float 0/1, no bool tensor
    return torch.lerp(case_non_zero, case_zero, is_zero)


def log_nb_positive(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Negative binomial log-probability with mean ``mu`` and inverse dispersion ``theta``.

    Success probability p = mu / (mu + theta), variance mu + mu^2 / theta.
    """
    return _log_nb_parts(x, mu, theta, eps)[0]


def log_poisson(x: torch.Tensor, mu: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Poisson log-probability with rate ``mu``."""
    return x * torch.log(mu + eps) - mu - torch.lgamma(x + 1)


def log_zinb_positive(
    x: torch.Tensor,
    mu: torch.Tensor,
    theta: torch.Tensor,
    pi_logits: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Zero-inflated negative binomial log-probability; ``pi_logits`` are dropout logits."""
    log_p, log_p0 = _log_nb_parts(x, mu, theta, eps)
    return _zero_inflate(x, log_p, log_p0, pi_logits)


def log_zip_positive(
    x: torch.Tensor, mu: torch.Tensor, pi_logits: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Zero-inflated Poisson log-probability; ``pi_logits`` are dropout logits."""
    return _zero_inflate(x, log_poisson(x, mu, eps), -mu, pi_logits)


LIKELIHOODS = {
    "zinb": log_zinb_positive,
    "nb": log_nb_positive,
    "zip": log_zip_positive,
    "poisson": log_poisson,
}
"""Likelihood name -> log-probability function."""
