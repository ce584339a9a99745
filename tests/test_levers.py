"""The VAE's levers beyond the book (issue 11): each parameter's effect on the computation,
the presets, and the `improved` preset on counts in the thousands."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import quiet, short_params

from scembed.vae.module import VAE
from scembed.vae.nn import Decoder, Encoder
from scembed.vae.optim import flat_adam
from scembed.vae.params import BOOK, PRESETS, resolve_params
from scembed.vae.train import kl_weight, size_factors, train_vae

pytestmark = pytest.mark.usefixtures("one_thread")
_params, _quiet = short_params, quiet


# --- presets ------------------------------------------------------------------------------


def test_book_preset_leaves_every_lever_off():
    book = resolve_params({})
    assert (book.decoder_output, book.dropout, book.kl_warmup_epochs) == ("softplus", 0.0, 0)
    assert (book.weight_decay, book.adam_eps, book.size_factor) == (0.0, 1e-8, "book")


def test_improved_preset_resolves_and_takes_overrides():
    improved = resolve_params({"preset": "improved"})
    assert dataclasses.asdict(improved) == PRESETS["improved"]
    changed = {k for k in BOOK if PRESETS["improved"][k] != BOOK[k]}
    assert {"encoder_input", "posterior_scale", "decoder_output", "size_factor"} <= changed
    assert improved.decoder_output == "softmax" and improved.size_factor == "observed"
    override = resolve_params({"preset": "improved", "likelihood": "zinb", "dropout": 0.2})
    assert override.likelihood == "zinb" and override.dropout == 0.2
    assert override.decoder_output == "softmax"  # the rest of the preset stays


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"weight_decay": -1e-6}, "weight_decay"),
        ({"adam_eps": 0}, "adam_eps"),
        ({"kl_warmup_epochs": -1}, "kl_warmup_epochs"),
        ({"kl_warmup_epochs": 1.5}, "kl_warmup_epochs"),
        ({"kl_warmup_epochs": 500}, "below max_epochs"),
        ({"decoder_output": "relu"}, "relu.*softmax"),
        ({"size_factor": "total"}, "total.*observed"),
    ],
)
def test_bad_lever_values_raise(params, match):
    with pytest.raises(ValueError, match=match):
        resolve_params(params)


# --- each lever changes the computation it names ------------------------------------------


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    x = torch.rand(64, 20)
    plain = Encoder(20, 4, n_hidden=16, n_layers=2)
    dropped = Encoder(20, 4, n_hidden=16, n_layers=2, dropout=0.5)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.Dropout) for m in dropped.modules()) == 2
    with torch.no_grad():  # the same weights (dropout has none; its modules shift the keys)
        weights = zip(plain.state_dict().values(), dropped.state_dict().values(), strict=True)
        for source, target in weights:
            target.copy_(source)
    plain.eval(), dropped.eval()
    for a, b in zip(plain(x), dropped(x), strict=True):
        assert torch.equal(a, b)
    dropped.train()
    first, second = dropped(x)[0], dropped(x)[0]
    assert not torch.equal(first, second)  # a new mask each call


def test_softmax_decoder_gives_fractions_of_the_observed_library():
    torch.manual_seed(0)
    decoder = Decoder(4, 30, n_hidden=16, n_layers=1, output="softmax")
    fractions = decoder(torch.randn(8, 4))
    torch.testing.assert_close(fractions.sum(dim=1), torch.ones(8))
    row_sums = torch.tensor([100.0, 2500.0, 7.0])
    sf = size_factors(row_sums, torch.ones(30), float(row_sums.sum()), torch.arange(3), "observed")
    assert sf.shape == (3, 1) and torch.equal(sf[:, 0], row_sums)
    vae = VAE(30, n_latent=4, n_hidden=16, n_layers=1, decoder_output="softmax")
    rate = vae.generative(torch.randn(3, 4), sf)["px_rate"]
    torch.testing.assert_close(rate.sum(dim=1), row_sums)  # expected counts sum to the library
    softplus = Decoder(4, 30, n_hidden=16, n_layers=1)
    assert not torch.allclose(softplus(torch.randn(8, 4)).sum(dim=1), torch.ones(8))


def test_kl_warmup_schedule_and_its_effect_on_training(data):
    assert [kl_weight(e, 0) for e in (1, 2, 50)] == [1.0, 1.0, 1.0]
    assert [kl_weight(e, 4) for e in (1, 2, 3, 4, 5, 9)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    counts, split = data
    plain = train_vae(counts, split, _params(max_epochs=6), seed=0, log=_quiet)
    warm = train_vae(counts, split, _params(max_epochs=6, kl_warmup_epochs=3), seed=0, log=_quiet)
    # epoch 1 has the same initial weights and batches: only the KL weight (0) differs,
    # and the reported training loss is the full negative ELBO either way
    assert warm.history["train_loss"].iloc[0] != plain.history["train_loss"].iloc[0]
    assert warm.best_epoch >= 4  # epochs of the warm-up are never kept
    assert len(warm.history) == 6


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


def test_each_lever_changes_the_trained_embedding(data):
    counts, split = data
    book = train_vae(counts, split, _params(), seed=0, log=_quiet).latent
    for lever in (
        {"dropout": 0.1},
        {"weight_decay": 1e-2},
        {"adam_eps": 0.01},
        {"decoder_output": "softmax", "size_factor": "observed"},
        {"size_factor": "observed"},
        {"kl_warmup_epochs": 2},
    ):
        latent = train_vae(counts, split, _params(**lever), seed=0, log=_quiet).latent
        assert np.isfinite(latent).all() and not np.allclose(latent, book), lever


def test_improved_preset_is_finite_on_counts_in_the_thousands():
    """Genes with thousands of counts per cell (as in a pancreas set whose top genes do)."""
    rng = np.random.default_rng(0)
    n_cells, n_genes = 300, 60
    labels = rng.integers(0, 3, n_cells)
    means = rng.lognormal(2.0, 2.0, (3, n_genes))
    means[:, :5] = rng.uniform(2000, 8000, (3, 5))
    counts = rng.poisson(means[labels] * rng.lognormal(0, 0.5, (n_cells, 1)))
    assert counts.max() > 5000
    split = np.array(["train"] * 250 + ["validation"] * 40 + ["test"] * 10)
    short = {"max_epochs": 5, "kl_warmup_epochs": 2, "n_hidden": 32, "device": "cpu"}
    params = resolve_params({"preset": "improved", **short})
    result = train_vae(counts, split, params, seed=0, log=_quiet)
    assert np.isfinite(result.latent).all()
    assert np.isfinite(result.history[["train_loss", "validation_loss"]].to_numpy()).all()
