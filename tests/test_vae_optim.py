"""The optimiser (scembed.vae.optim): flat_adam steps like Adam, its eps and weight decay
change the step, and its state round-trips exactly."""

import pytest
import torch

from scembed.vae.module import VAE
from scembed.vae.optim import flat_adam

pytestmark = pytest.mark.usefixtures("one_thread")


def test_flat_adam_steps_like_adam_and_keeps_state_dict_working():
    x = torch.poisson(torch.full((30, 12), 2.0), generator=torch.Generator().manual_seed(0))
    size_factor = x.sum(1, keepdim=True) / x.sum(1).mean()
    torch.manual_seed(0)
    flat_model = VAE(12, n_latent=3, n_hidden=8)
    reference_model = VAE(12, n_latent=3, n_hidden=8)
    reference_model.load_state_dict(flat_model.state_dict())
    keys = {k: v.shape for k, v in flat_model.state_dict().items()}
    flat_optimizer = flat_adam(flat_model, lr=1e-2)
    # fused like flat_adam: the biases before BatchNorm get gradients of pure rounding
    # noise, which Adam scales up to full steps, so Adam variants differ there
    reference_optimizer = torch.optim.Adam(reference_model.parameters(), lr=1e-2, fused=True)

    def step(model, optimizer, set_to_none):
        torch.manual_seed(1)  # the same z sample in both models
        optimizer.zero_grad(set_to_none=set_to_none)
        model.loss(x, size_factor).loss.backward()
        optimizer.step()

    start = {k: v.clone() for k, v in flat_model.state_dict().items()}
    for _ in range(3):
        step(flat_model, flat_optimizer, False)
        step(reference_model, reference_optimizer, True)
    assert {k: v.shape for k, v in flat_model.state_dict().items()} == keys
    for key, value in reference_model.state_dict().items():
        torch.testing.assert_close(flat_model.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    # Restoring a state writes into the flat buffer, which the optimiser keeps updating.
    flat_model.load_state_dict(start)
    torch.testing.assert_close(
        flat_model.decoder.rate_decoder.weight, start["decoder.rate_decoder.weight"]
    )
    step(flat_model, flat_optimizer, False)
    assert not torch.equal(
        flat_model.decoder.rate_decoder.weight, start["decoder.rate_decoder.weight"]
    )


def test_adam_eps_and_weight_decay_change_the_step():
    def first_step(**kwargs):
        torch.manual_seed(0)
        layer = torch.nn.Linear(3, 1, bias=False)
        before = layer.weight.detach().clone()
        optimizer = flat_adam(layer, lr=0.1, **kwargs)
        optimizer.zero_grad(set_to_none=False)
        (layer.weight.sum() * 1e-3).backward()  # gradient 1e-3 on every weight
        optimizer.step()
        return (layer.weight.detach() - before).abs()

    step = first_step()
    torch.testing.assert_close(step, torch.full_like(step, 0.1), rtol=1e-3, atol=0)
    damped = first_step(eps=0.01)  # Adam's first step is lr * g / (|g| + eps)
    torch.testing.assert_close(damped, torch.full_like(damped, 0.1 * 1e-3 / (1e-3 + 0.01)))

    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 1, bias=False)
    optimizer = flat_adam(layer, lr=0.01, weight_decay=0.5)
    norm = layer.weight.detach().norm()
    for _ in range(5):  # a zero loss gradient: only the decay moves the weights
        optimizer.zero_grad(set_to_none=False)
        (layer.weight.sum() * 0).backward()
        optimizer.step()
    assert layer.weight.detach().norm() < norm


def test_flat_adam_state_round_trips_exactly(tmp_path):
    """flat_adam's state (one flat exp_avg, exp_avg_sq and step) saved and loaded into a
    fresh model and optimiser continues exactly as the original."""
    x = torch.poisson(torch.full((40, 12), 2.0), generator=torch.Generator().manual_seed(0))
    size_factor = x.sum(1, keepdim=True) / x.sum(1).mean()

    def step(model, optimizer):
        optimizer.zero_grad(set_to_none=False)
        model.loss(x, size_factor).loss.backward()
        optimizer.step()

    torch.manual_seed(0)
    model = VAE(12, n_latent=3, n_hidden=8)
    optimizer = flat_adam(model, lr=1e-2, eps=0.01, weight_decay=1e-6)
    for _ in range(3):
        step(model, optimizer)
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "state.pt"
    )
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    restored = VAE(12, n_latent=3, n_hidden=8)
    restored_optimizer = flat_adam(restored, lr=1e-2, eps=0.01, weight_decay=1e-6)
    restored.load_state_dict(saved["model"])
    restored_optimizer.load_state_dict(saved["optimizer"])
    for name in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(
            restored_optimizer.state_dict()["state"][0][name],
            optimizer.state[optimizer.param_groups[0]["params"][0]][name],
        )
    for _ in range(2):
        torch.manual_seed(5)  # the same z sample in both
        step(model, optimizer)
        torch.manual_seed(5)
        step(restored, restored_optimizer)
    for key, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
