"""Log-likelihoods against torch.distributions and the explicit mixture formula (float64)."""

import pytest
import torch
from torch.distributions import NegativeBinomial, Poisson

from scembed.vae.distributions import (
    LIKELIHOODS,
    log_nb_positive,
    log_poisson,
    log_zinb_positive,
    log_zip_positive,
)

RTOL, ATOL = 1e-5, 1e-4  # float64; the eps=1e-8 inside the logs is far below this


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    shape = (64, 30)
    mu = torch.exp(torch.randn(shape, generator=gen, dtype=torch.float64) * 2)
    theta = torch.exp(torch.randn(shape[1], generator=gen, dtype=torch.float64))
    pi_logits = torch.randn(shape[1], generator=gen, dtype=torch.float64) * 2
    x = torch.poisson(mu, generator=gen)
    x[::3] = 0.0  # plenty of zeros
    return x, mu, theta, pi_logits


def _nb_reference(x, mu, theta):
    return NegativeBinomial(total_count=theta, logits=torch.log(mu) - torch.log(theta)).log_prob(x)


def _mixture(x, log_p, pi_logits):
    pi = torch.sigmoid(pi_logits)
    return torch.log(pi * (x == 0) + (1 - pi) * torch.exp(log_p))


def test_registry():
    assert set(LIKELIHOODS) == {"zinb", "nb", "zip", "poisson"}


def test_nb_matches_torch(data):
    x, mu, theta, _ = data
    expected = _nb_reference(x, mu, theta.expand_as(mu))
    torch.testing.assert_close(log_nb_positive(x, mu, theta), expected, rtol=RTOL, atol=ATOL)


def test_poisson_matches_torch(data):
    x, mu, _, _ = data
    expected = Poisson(mu).log_prob(x)
    torch.testing.assert_close(log_poisson(x, mu), expected, rtol=RTOL, atol=ATOL)


def test_zinb_without_dropout_is_nb(data):
    x, mu, theta, _ = data
    closed = torch.full_like(theta, float("-inf"))  # gate exactly 0
    torch.testing.assert_close(
        log_zinb_positive(x, mu, theta, closed),
        log_nb_positive(x, mu, theta),
        rtol=1e-12,
        atol=1e-12,
    )
    very_negative = torch.full_like(theta, -40.0)  # gate ~ 4e-18
    torch.testing.assert_close(
        log_zinb_positive(x, mu, theta, very_negative),
        _nb_reference(x, mu, theta.expand_as(mu)),
        rtol=RTOL,
        atol=ATOL,
    )


def test_zinb_matches_mixture(data):
    x, mu, theta, pi_logits = data
    expected = _mixture(x, _nb_reference(x, mu, theta.expand_as(mu)), pi_logits)
    torch.testing.assert_close(
        log_zinb_positive(x, mu, theta, pi_logits), expected, rtol=RTOL, atol=ATOL
    )


def test_zip_matches_mixture(data):
    x, mu, _, pi_logits = data
    expected = _mixture(x, Poisson(mu).log_prob(x), pi_logits)
    torch.testing.assert_close(log_zip_positive(x, mu, pi_logits), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_finite_values_and_gradients_at_extremes(name, dtype):
    x = torch.tensor([0.0, 1.0, 1e5, 0.0, 3.0, 1e5], dtype=dtype)
    mu = torch.tensor([1e-12, 1e-12, 1e5, 1e5, 1e-12, 1e-12], dtype=dtype, requires_grad=True)
    theta = torch.tensor([1e-3, 1.0, 1e4, 0.5, 1e-4, 20.0], dtype=dtype, requires_grad=True)
    pi_logits = torch.tensor([-30.0, 30.0, 0.0, -5.0, 5.0, 30.0], dtype=dtype, requires_grad=True)
    args = {
        "zinb": (x, mu, theta, pi_logits),
        "nb": (x, mu, theta),
        "zip": (x, mu, pi_logits),
        "poisson": (x, mu),
    }[name]
    value = LIKELIHOODS[name](*args)
    assert torch.isfinite(value).all()
    value.sum().backward()
    for tensor in args[1:]:
        assert torch.isfinite(tensor.grad).all()


def test_gradients_match_float64_autograd_of_reference(data):
    x, mu, theta, pi_logits = (t.clone().requires_grad_(t is not data[0]) for t in data)
    log_zinb_positive(x, mu, theta, pi_logits).sum().backward()
    ours = [t.grad.clone() for t in (mu, theta, pi_logits)]
    for t in (mu, theta, pi_logits):
        t.grad = None
    _mixture(x, _nb_reference(x, mu, theta.expand_as(mu)), pi_logits).sum().backward()
    for mine, ref in zip(ours, (mu.grad, theta.grad, pi_logits.grad), strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4)
