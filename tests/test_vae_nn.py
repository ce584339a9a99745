"""The encoder and decoder networks (scembed.vae.nn): dropout, the posterior scale, the
softplus and softmax decoders."""

import pytest
import torch

from scembed.vae.feeding import size_factors
from scembed.vae.module import VAE
from scembed.vae.nn import Decoder, Encoder

N_GENES, N_LATENT = 25, 4
pytestmark = pytest.mark.usefixtures("one_thread")


# --- encoder -----------------------------------------------------------------------------


@pytest.mark.parametrize("posterior_scale", ["softplus", "exp_logvar"])
def test_posterior_scale(posterior_scale):
    torch.manual_seed(0)
    encoder = Encoder(N_GENES, N_LATENT, n_hidden=16, posterior_scale=posterior_scale).eval()
    x = torch.randn(8, N_GENES)
    qz_m, qz_scale = encoder(x)
    head = encoder.scale_encoder(encoder.encoder(x))
    expected = (
        torch.nn.functional.softplus(head)
        if posterior_scale == "softplus"
        else torch.exp(0.5 * head)
    )
    torch.testing.assert_close(qz_scale, expected + encoder.scale_eps)
    assert qz_m.shape == (8, N_LATENT)


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


# --- decoder -----------------------------------------------------------------------------


def test_decoder_rate_positive():
    decoder = Decoder(N_LATENT, N_GENES, n_hidden=16)
    assert (decoder(torch.randn(8, N_LATENT)) > 0).all()


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
