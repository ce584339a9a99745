"""The fused training loss against the reference log-likelihoods, and its gradient."""

import pytest
import torch

from scembed.vae.distributions import LIKELIHOODS
from scembed.vae.fused import FAMILIES, lgamma_digamma_ge1, log_factorial, reconst_loss

N_CELLS, N_GENES = 12, 9


@pytest.fixture
def data():
    """float64 counts with many zeros and a few large values, rates from 1e-3 to 1e3."""
    gen = torch.Generator().manual_seed(0)
    mu = torch.exp(torch.randn(N_CELLS, N_GENES, generator=gen, dtype=torch.float64) * 2)
    theta = torch.exp(torch.randn(N_GENES, generator=gen, dtype=torch.float64))
    pi_logits = torch.randn(N_GENES, generator=gen, dtype=torch.float64) * 2
    x = torch.poisson(mu, generator=gen)
    x[::3] = 0.0
    x[1, :3] = torch.tensor([1.0, 250.0, 4e4], dtype=torch.float64)
    mu[1, :3] = x[1, :3] * 0.7  # large counts where the rate is large, as in real fits
    return x, mu, theta, pi_logits


def _args(likelihood, mu, theta, pi_logits):
    """The per-likelihood arguments of scembed.vae.distributions after x."""
    family, inflated = FAMILIES[likelihood]
    return (mu,) + ((theta,) if family == "nb" else ()) + ((pi_logits,) if inflated else ())


def _reference(likelihood, x, mu, theta, pi_logits):
    """Per-cell negative log-likelihood from the reference, without the count constant."""
    log_lik = LIKELIHOODS[likelihood](x, *_args(likelihood, mu, theta, pi_logits))
    return -log_lik.sum(-1) - log_factorial(x)


@pytest.mark.parametrize("likelihood", sorted(FAMILIES))
def test_value_equals_reference(data, likelihood):
    x, mu, theta, pi_logits = data
    torch.testing.assert_close(
        reconst_loss(likelihood, x, mu, theta, pi_logits),
        _reference(likelihood, x, mu, theta, pi_logits),
        rtol=1e-7,  # the series for lgamma is good to ~3e-7 per value in float64
        atol=1e-6,
    )


@pytest.mark.parametrize("likelihood", sorted(FAMILIES))
def test_gradient_passes_gradcheck(data, likelihood):
    """The hand-written gradient against finite differences of the value (float64), on
    the cells without the 4e4 count, whose loss of ~1e5 drowns a finite difference."""
    x, mu, theta, pi_logits = (t[2:] if t.ndim == 2 else t for t in data)
    inputs = tuple(t.clone().requires_grad_() for t in (mu, theta, pi_logits))
    assert torch.autograd.gradcheck(lambda m, t, p: reconst_loss(likelihood, x, m, t, p), inputs)


def _gradients(loss_fn, likelihood, x, params, weights):
    """Gradients of sum(weights * per-cell loss) w.r.t. mu, theta, pi_logits (or None)."""
    leaves = [t.clone().requires_grad_() for t in params]
    (loss_fn(likelihood, x, *leaves) * weights).sum().backward()
    return [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("likelihood", sorted(FAMILIES))
def test_float64_gradient_equals_autograd_of_reference(data, likelihood):
    """All cells, large counts included, cells weighted unequally in the backward pass."""
    x, *params = data
    weights = torch.linspace(0.5, 2.0, N_CELLS, dtype=torch.float64)
    ours = _gradients(reconst_loss, likelihood, x, params, weights)
    reference = _gradients(_reference, likelihood, x, params, weights)
    for index in _args(likelihood, *range(3)):
        torch.testing.assert_close(ours[index], reference[index], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("likelihood", sorted(FAMILIES))
def test_float32_gradient_matches_autograd_of_reference(data, likelihood):
    """What training sees: float32, with the series of lgamma_digamma_ge1 in place of
    torch.lgamma and torch.digamma."""
    x, *params = (t.float() for t in data)
    weights = torch.linspace(0.5, 2.0, N_CELLS)
    ours = _gradients(reconst_loss, likelihood, x, params, weights)
    reference = _gradients(_reference, likelihood, x, params, weights)
    used = _args(likelihood, *range(3))  # which of mu, theta, pi_logits the likelihood uses
    for index in used:
        torch.testing.assert_close(ours[index], reference[index], rtol=1e-4, atol=1e-3)
    for index in set(range(3)) - set(used):
        assert ours[index] is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("likelihood", sorted(FAMILIES))
def test_finite_values_and_gradients_at_extremes(likelihood, dtype):
    x = torch.tensor([[0.0, 1.0, 1e5, 0.0, 3.0, 1e5]], dtype=dtype)
    mu = torch.tensor([[1e-12, 1e-12, 1e5, 1e5, 1e-12, 1e-12]], dtype=dtype)
    theta = torch.tensor([1e-3, 1.0, 1e4, 0.5, 1e-4, 20.0], dtype=dtype)
    pi_logits = torch.tensor([-30.0, 30.0, 0.0, -5.0, 5.0, 30.0], dtype=dtype)
    leaves = [t.clone().requires_grad_() for t in (mu, theta, pi_logits)]
    value = reconst_loss(likelihood, x, *leaves)
    assert torch.isfinite(value).all()
    value.sum().backward()
    for index in _args(likelihood, *range(3)):
        assert torch.isfinite(leaves[index].grad).all()
    # The value is the reference's, also here (float64 reference, float32 tolerance).
    expected = _reference(likelihood, *(t.double() for t in (x, mu, theta, pi_logits)))
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-2)


def test_no_grad_gives_the_same_value(data):
    x, mu, theta, pi_logits = data
    with torch.inference_mode():
        without = reconst_loss("zinb", x, mu, theta, pi_logits)
    leaves = [t.clone().requires_grad_() for t in (mu, theta, pi_logits)]
    torch.testing.assert_close(reconst_loss("zinb", x, *leaves).detach(), without)


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float32, 2e-6), (torch.float64, 6e-7)], ids=["f32", "f64"]
)
def test_lgamma_digamma_ge1(dtype, tolerance):
    z = torch.cat([torch.linspace(1, 10, 2000), torch.logspace(1, 6, 2000)]).to(dtype)
    log_gamma, digamma = lgamma_digamma_ge1(z)
    for ours, exact in (
        (log_gamma, torch.lgamma(z.double())),
        (digamma, torch.digamma(z.double())),
    ):
        error = (ours.double() - exact).abs() / exact.abs().clamp_min(1.0)
        assert error.max() < tolerance
    assert lgamma_digamma_ge1(z, digamma=False)[1] is None


def test_bad_arguments_name_the_problem(data):
    x, mu, theta, pi_logits = data
    with pytest.raises(ValueError, match="likelihood 'gamma' is not one of"):
        reconst_loss("gamma", x, mu, theta, pi_logits)
    with pytest.raises(ValueError, match="cells x genes"):
        reconst_loss("nb", x[0], mu[0], theta)
    with pytest.raises(ValueError, match="zinb needs pi_logits with one value per gene"):
        reconst_loss("zinb", x, mu, theta, None)
    with pytest.raises(ValueError, match=r"nb needs theta with one value per gene, got \(12, 9\)"):
        reconst_loss("nb", x, mu, mu)


def test_log_factorial_in_chunks_equals_all_at_once(data):
    x = data[0].float()
    expected = torch.lgamma(x.double() + 1).sum(-1).float()
    torch.testing.assert_close(log_factorial(x), expected)
    torch.testing.assert_close(log_factorial(x, chunk_size=5), expected)  # 12 = 5 + 5 + 2
    torch.testing.assert_close(log_factorial(x, chunk_size=100), expected)
