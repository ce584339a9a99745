"""Training loop: parameters, device, size factors, determinism, early stopping, errors."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import TRAIN_CELLS, TRAIN_GENES, quiet, short_params

from scembed.vae import train as train_module
from scembed.vae.device import resolve_device
from scembed.vae.module import VAE, LossOutput
from scembed.vae.optim import flat_adam
from scembed.vae.params import BOOK, PRESETS, VAEParams, resolve_params
from scembed.vae.train import NonFiniteLossError, size_factors, train_vae

N_CELLS, N_GENES = TRAIN_CELLS, TRAIN_GENES
pytestmark = pytest.mark.usefixtures("one_thread")
_params, _quiet = short_params, quiet


# --- parameters and device ---------------------------------------------------------------


def test_presets_and_overrides():
    assert resolve_params({}) == VAEParams(**BOOK)
    assert PRESETS["book"] == dataclasses.asdict(resolve_params({"preset": "book"}))
    stable = resolve_params({"preset": "stable", "lr": 5e-4})
    assert stable.encoder_input == "log1p" and stable.posterior_scale == "exp_logvar"
    assert stable.lr == 5e-4 and stable.likelihood == "zinb" and stable.batch_size == 100
    book = resolve_params({"preset": "book", "likelihood": "nb", "encoder_input": "log1p"})
    assert book.likelihood == "nb" and book.encoder_input == "log1p"
    assert book.posterior_scale == "softplus"


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_latnt": 5}, "n_latnt.*allowed"),
        ({"preset": "fast"}, "fast.*book"),
        ({"likelihood": "gaussian"}, "gaussian.*zinb"),
        ({"size_factor": "dense"}, "dense.*library"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_epochs": 2.5}, "max_epochs"),
        ({"lr": -1}, "lr"),
        ({"device": "gpu"}, "gpu.*cuda"),
        ({"drop_last": "yes"}, "drop_last"),
    ],
)
def test_bad_params_raise(params, match):
    with pytest.raises(ValueError, match=match):
        resolve_params(params)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_says_how_to_fix(name):
    with pytest.raises(RuntimeError, match="device: auto or cpu"):
        resolve_device(name)


# --- size factors ------------------------------------------------------------------------


def test_size_factors_equal_the_books_dense_matrix():
    x = np.random.default_rng(1).poisson(2.0, (20, 7)).astype(np.float64)
    dense = np.outer(x.sum(1), x.sum(0))
    dense *= x.mean() / dense.mean()
    row_sums, col_sums = torch.tensor(x.sum(1)), torch.tensor(x.sum(0))
    idx = torch.tensor([3, 0, 17, 3, 9])
    book = size_factors(row_sums, col_sums, float(x.sum()), idx, "book")
    np.testing.assert_allclose(book.numpy(), dense[idx.numpy()], rtol=1e-12)
    library = size_factors(row_sums, col_sums, float(x.sum()), idx, "library")
    expected = x.sum(1)[idx.numpy()] / x.sum(1).mean()
    np.testing.assert_allclose(
        np.broadcast_to(library.numpy(), (5, 7)), np.repeat(expected[:, None], 7, 1)
    )


# --- optimiser ---------------------------------------------------------------------------


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


# --- training ----------------------------------------------------------------------------


def test_result_and_history(data):
    counts, split = data
    messages = []
    result = train_vae(
        counts, split, _params(max_epochs=2, patience=5), seed=0, log=messages.append
    )
    assert result.latent.shape == (N_CELLS, 10) and result.latent.dtype == np.float32
    assert list(result.history.columns) == ["epoch", "train_loss", "validation_loss", "seconds"]
    assert result.history["epoch"].tolist() == [1, 2]
    assert result.device == "cpu" and "max_epochs" in result.stop_reason
    assert messages[0] == "device: cpu" and messages[-1] == result.stop_reason
    assert all(v.device.type == "cpu" for v in result.state_dict.values())


def test_same_seed_is_bit_identical_and_sparse_input_agrees(data):
    counts, split = data
    first = train_vae(counts, split, _params(), seed=7, log=_quiet)
    second = train_vae(sp.csr_matrix(counts), split, _params(), seed=7, log=_quiet)
    other = train_vae(counts, split, _params(), seed=8, log=_quiet)
    assert np.array_equal(first.latent, second.latent)
    assert not np.array_equal(first.latent, other.latent)


def test_sparse_counts_stay_sparse_and_give_the_dense_results(data):
    """CSR counts are densified a minibatch at a time (memory bounded by the batch), and
    every batch, count constant, loss and the embedding equal the dense path's."""
    from scembed.vae.train import TrainingData

    counts, split = data
    dense = TrainingData(counts, torch.device("cpu"), "observed")
    sparse = TrainingData(sp.csr_matrix(counts), torch.device("cpu"), "observed", chunk_size=7)
    assert sparse.x is None and sparse.csr.nnz == np.count_nonzero(counts)
    assert torch.equal(dense.log_factorial, sparse.log_factorial)  # chunked the same
    idx = torch.tensor([5, 0, 299, 17, 17])
    for a, b in zip(dense.batch(idx), sparse.batch(idx), strict=True):
        assert torch.equal(a, b)
    for params in (
        _params(preset="improved", kl_warmup_epochs=1, batch_size=64, max_epochs=4),
        _params(drop_last=False, batch_size=80),  # a partial last batch
    ):
        a = train_vae(counts, split, params, seed=3, log=_quiet)
        b = train_vae(sp.csr_matrix(counts), split, params, seed=3, log=_quiet)
        assert np.array_equal(a.latent, b.latent)
        pd.testing.assert_frame_equal(
            a.history.drop(columns="seconds"), b.history.drop(columns="seconds")
        )


def test_early_stopping_restores_the_best_state(data):
    counts, split = data
    params = _params(patience=2, max_epochs=200, lr=1e-2)
    result = train_vae(counts, split, params, seed=0, log=_quiet)
    history = result.history
    assert result.stop_reason.startswith("early stopping") and len(history) < 200
    assert len(history) == result.best_epoch + 2
    best = history["validation_loss"].idxmin()
    assert history["epoch"][best] == result.best_epoch
    # Training is deterministic: a run that ends at the best epoch reaches the same state.
    replay_params = dataclasses.replace(params, max_epochs=result.best_epoch)
    replay = train_vae(counts, split, replay_params, seed=0, log=_quiet)
    assert replay.best_epoch == result.best_epoch
    for key, value in result.state_dict.items():
        assert torch.equal(value, replay.state_dict[key]), key
    assert np.array_equal(result.latent, replay.latent)


@pytest.mark.parametrize("likelihood", ["zinb", "nb", "zip", "poisson"])
@pytest.mark.parametrize("preset", ["book", "stable"])
def test_every_likelihood_and_preset_trains(data, likelihood, preset):
    counts, split = data
    params = _params(preset=preset, likelihood=likelihood, size_factor="library", max_epochs=2)
    result = train_vae(counts, split, params, seed=0, log=_quiet)
    assert np.isfinite(result.latent).all() and len(result.history) == 2


def test_training_lowers_the_validation_loss(data):
    counts, split = data
    result = train_vae(counts, split, _params(max_epochs=8, lr=1e-2), seed=0, log=_quiet)
    losses = result.history["validation_loss"]
    assert losses.min() < losses.iloc[0]


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"), [(2.5, "2.5"), (-1.0, "-1.0"), (np.nan, "nan"), (np.inf, "inf")]
)
@pytest.mark.parametrize("sparse", [False, True])
def test_non_count_input_names_the_value_and_place(data, value, match, sparse):
    counts, split = data
    bad = counts.astype(np.float64)
    bad[5, 7] = value
    with pytest.raises(ValueError, match=rf"value {match} at cell 5, gene 7.*raw UMI"):
        train_vae(sp.csr_matrix(bad) if sparse else bad, split, _params(), seed=0, log=_quiet)


def test_too_few_training_cells(data):
    counts, split = data
    with pytest.raises(
        ValueError, match=r"255 training cells but batch_size 300.*lower batch_size"
    ):
        train_vae(counts, split, _params(batch_size=300), seed=0, log=_quiet)


def test_no_validation_cells(data):
    counts, split = data
    no_validation = np.where(split == "validation", "train", split)
    with pytest.raises(ValueError, match="no validation cells"):
        train_vae(counts, no_validation, _params(), seed=0, log=_quiet)


def test_non_finite_loss_stops_with_best_state(data, monkeypatch):
    counts, split = data
    original = VAE.loss
    calls = {"train": 0}
    batches_per_epoch = 255 // 50

    def loss_nan_from_epoch_3(self, x, size_factor, kl_weight=1.0, **kwargs):
        out = original(self, x, size_factor, kl_weight, **kwargs)
        if self.training:
            calls["train"] += 1
            if calls["train"] > 2 * batches_per_epoch:
                nan_reconst = out.reconst_loss * float("nan")
                return LossOutput(
                    nan_reconst.sum() + out.kl_divergence_z.sum(),
                    nan_reconst,
                    out.kl_divergence_z,
                    out.n_cells,
                )
        return out

    monkeypatch.setattr(VAE, "loss", loss_nan_from_epoch_3)
    with pytest.raises(NonFiniteLossError, match=r"epoch 3.*reconstruction.*log1p") as info:
        train_vae(counts, split, _params(max_epochs=10), seed=0, log=_quiet)
    assert isinstance(info.value, RuntimeError) and info.value.epoch == 3
    assert info.value.best_state is not None
    assert all(torch.isfinite(v.float()).all() for v in info.value.best_state.values())


def test_non_finite_embedding_raises(data, monkeypatch):
    counts, split = data
    monkeypatch.setattr(
        train_module, "_embed", lambda model, x, *args: np.full((N_CELLS, 10), np.nan)
    )
    with pytest.raises(NonFiniteLossError, match="embedding") as info:
        train_vae(counts, split, _params(max_epochs=1), seed=0, log=_quiet)
    assert info.value.best_state is not None


def test_sparse_training_data_equals_dense_with_empty_rows_and_unsorted_indices():
    """The chunked sparse sums (one reused buffer) equal the dense ones exactly, with an
    empty cell, a chunk boundary inside the matrix, and unsorted CSR indices, which are
    sorted on a copy: the caller's matrix is left as it was."""
    from scembed.vae.train import TrainingData

    rng = np.random.default_rng(0)
    dense = rng.poisson(0.5, size=(37, 12)).astype(np.float32)
    dense[5] = 0.0  # an empty cell
    dense[-1] = 0.0  # ... and the last one, past the last chunk's stored values
    csr = sp.csr_matrix(dense)
    order = np.concatenate(
        [
            rng.permutation(np.arange(a, b))
            for a, b in zip(csr.indptr[:-1], csr.indptr[1:], strict=True)
        ]
    )
    unsorted = sp.csr_matrix((csr.data[order], csr.indices[order], csr.indptr), shape=csr.shape)
    unsorted.has_sorted_indices = False
    indices_before = unsorted.indices.copy()
    cpu = torch.device("cpu")
    sparse = TrainingData(unsorted, cpu, "book", chunk_size=8)
    reference = TrainingData(dense, cpu, "book", chunk_size=8)
    assert torch.equal(sparse.log_factorial, reference.log_factorial)
    assert torch.equal(sparse.row_sums, reference.row_sums)
    assert torch.equal(sparse.col_sums, reference.col_sums)
    assert sparse.total == reference.total
    idx = torch.arange(37)
    assert torch.equal(sparse.counts(idx), reference.counts(idx))
    np.testing.assert_array_equal(unsorted.indices, indices_before)
