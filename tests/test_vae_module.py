"""The VAE module (scembed.vae.module): shapes, loss terms, a gradient step, the encoder's
input, the options refused."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from scembed.vae.module import VAE, LossOutput
from scembed.vae.nn import Encoder

N_CELLS, N_GENES, N_LATENT = 40, 25, 4


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((N_CELLS, N_GENES), 3.0), generator=gen)
    size_factor = x.sum(1, keepdim=True) * x.sum(0, keepdim=True) / x.sum()
    return x, size_factor


def _model(**kwargs):
    torch.manual_seed(0)
    return VAE(N_GENES, n_latent=N_LATENT, n_hidden=16, **kwargs)


def test_shapes(batch):
    x, size_factor = batch
    model = _model()
    qz = model.inference(x)
    assert {k: tuple(v.shape) for k, v in qz.items()} == {
        "qz_m": (N_CELLS, N_LATENT),
        "qz_scale": (N_CELLS, N_LATENT),
        "z": (N_CELLS, N_LATENT),
    }
    assert (qz["qz_scale"] > 0).all()
    px = model.generative(qz["z"], size_factor)
    assert px["px_rate"].shape == (N_CELLS, N_GENES)
    assert px["px_r"].shape == px["px_dropout"].shape == (N_GENES,)
    assert (px["px_rate"] > 0).all() and (px["px_r"] > 0).all()


def test_per_gene_parameters_initialised_standard_normal():
    model = VAE(2000)
    for param in (model.px_r, model.px_dropout):
        assert abs(param.mean().item()) < 0.1 and abs(param.std().item() - 1) < 0.1


@pytest.mark.parametrize("likelihood", ["zinb", "nb", "zip", "poisson"])
def test_loss_is_sum_of_terms(batch, likelihood):
    x, size_factor = batch
    out = _model(likelihood=likelihood).loss(x, size_factor, kl_weight=0.5)
    assert isinstance(out, LossOutput) and out.n_cells == N_CELLS
    assert out.reconst_loss.shape == out.kl_divergence_z.shape == (N_CELLS,)
    expected = out.reconst_loss.sum() + 0.5 * out.kl_divergence_z.sum()
    torch.testing.assert_close(out.loss, expected)
    assert (out.kl_divergence_z >= 0).all()


def test_kl_matches_torch_distributions(batch):
    """The closed-form KL of the loss equals torch.distributions' KL to N(0, I)."""
    x, size_factor = batch
    model = _model()
    torch.manual_seed(1)
    out = model.loss(x, size_factor)
    torch.manual_seed(1)
    qz = model.inference(x)
    m, s = qz["qz_m"].double(), qz["qz_scale"].double()
    reference = kl_divergence(Normal(m, s), Normal(torch.zeros_like(m), torch.ones_like(s)))
    torch.testing.assert_close(
        out.kl_divergence_z.double(), reference.sum(-1), rtol=1e-5, atol=1e-4
    )


def test_adam_step_lowers_loss_on_fixed_batch(batch):
    x, size_factor = batch
    model = _model().eval()  # eval: fixed BatchNorm statistics, so only the step changes
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss():
        torch.manual_seed(2)  # same z sample before and after the step
        return model.loss(x, size_factor).loss

    before = loss()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        assert loss().item() < before.item()


def test_unknown_options_raise():
    with pytest.raises(ValueError, match="posterior_scale"):
        Encoder(5, 2, posterior_scale="exp")
    with pytest.raises(ValueError, match="likelihood"):
        VAE(5, likelihood="gaussian")
    with pytest.raises(ValueError, match="encoder_input"):
        VAE(5, encoder_input="log")


def test_encoder_input_log1p(batch):
    x, _ = batch
    model = _model(encoder_input="log1p").eval()
    qz = model.inference(x)
    expected_m, expected_scale = model.z_encoder(torch.log1p(x))
    torch.testing.assert_close(qz["qz_m"], expected_m)
    torch.testing.assert_close(qz["qz_scale"], expected_scale)
    raw = _model(encoder_input="counts").eval()
    torch.testing.assert_close(raw.inference(x)["qz_m"], raw.z_encoder(x)[0])


# --- the batch covariate -----------------------------------------------------------------


def test_batch_covariate_widens_the_first_layer_of_encoder_and_decoder():
    torch.manual_seed(0)
    plain = VAE(N_GENES, n_latent=N_LATENT, n_hidden=16)
    torch.manual_seed(0)
    batched = VAE(N_GENES, n_latent=N_LATENT, n_hidden=16, n_batch=3, batch_names=["a", "b", "c"])
    assert batched.z_encoder.encoder[0].weight.shape == (16, N_GENES + 3)
    assert batched.decoder.decoder[0].weight.shape == (16, N_LATENT + 3)
    assert plain.z_encoder.encoder[0].weight.shape == (16, N_GENES)
    assert plain.decoder.decoder[0].weight.shape == (16, N_LATENT)
    widened = {"z_encoder.encoder.0.weight", "decoder.decoder.0.weight"}
    plain_state, batched_state = plain.state_dict(), batched.state_dict()
    assert set(batched_state) == {*plain_state, "batches._extra_state"}
    assert batched_state["batches._extra_state"] == ["a", "b", "c"]
    for key, value in plain_state.items():  # only the two first layers change shape
        assert (batched_state[key].shape == value.shape) == (key not in widened), key
    # no batch: the same network as before batches existed, parameter for parameter
    torch.manual_seed(0)
    for key, value in VAE(N_GENES, n_latent=N_LATENT, n_hidden=16, n_batch=0).state_dict().items():
        assert torch.equal(value, plain_state[key]), key


def test_batch_enters_the_encoder_and_the_decoder(batch):
    x, size_factor = batch
    torch.manual_seed(0)
    model = VAE(N_GENES, n_latent=N_LATENT, n_hidden=16, n_batch=2).eval()
    zeros, ones = torch.zeros(N_CELLS, dtype=torch.int64), torch.ones(N_CELLS, dtype=torch.int64)
    qz_m = model.inference(x, zeros)["qz_m"]
    assert not torch.allclose(qz_m, model.inference(x, ones)["qz_m"])
    rate = model.generative(qz_m, size_factor, zeros)["px_rate"]
    assert not torch.allclose(rate, model.generative(qz_m, size_factor, ones)["px_rate"])
    # the one-hot concatenated to the inputs is what the first layers see
    one_hot = torch.nn.functional.one_hot(ones, 2).float()
    expected, _ = model.z_encoder(torch.log1p(x) if model.encoder_input == "log1p" else x, one_hot)
    torch.testing.assert_close(model.inference(x, ones)["qz_m"], expected)
    out = model.loss(x, size_factor, batch_index=ones)
    assert torch.isfinite(out.loss) and out.reconst_loss.shape == (N_CELLS,)


def test_batch_index_is_required_exactly_when_the_model_has_a_batch(batch):
    x, size_factor = batch
    with pytest.raises(ValueError, match="pass each cell's batch_index"):
        VAE(N_GENES, n_latent=N_LATENT, n_batch=2).loss(x, size_factor)
    with pytest.raises(ValueError, match="built without a batch"):
        _model().inference(x, torch.zeros(N_CELLS, dtype=torch.int64))
    with pytest.raises(ValueError, match="batch_names"):
        VAE(N_GENES, n_batch=2, batch_names=["a"])


def test_a_state_of_other_batches_does_not_load():
    source = VAE(N_GENES, n_latent=N_LATENT, n_batch=2, batch_names=["p1", "p2"])
    same = VAE(N_GENES, n_latent=N_LATENT, n_batch=2, batch_names=["p1", "p2"])
    same.load_state_dict(source.state_dict())
    other = VAE(N_GENES, n_latent=N_LATENT, n_batch=2, batch_names=["p1", "p3"])
    with pytest.raises(ValueError, match=r"batches \['p1', 'p2'\] are not this model's"):
        other.load_state_dict(source.state_dict())
