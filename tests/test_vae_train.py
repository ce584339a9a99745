"""The training loop (scembed.vae.train): determinism, sparse input, early stopping, each
lever's effect on training, and errors (the feeding: test_vae_feeding.py)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import TRAIN_CELLS, TRAIN_GENES, quiet, rule_script, short_params

from scembed.preprocess import split_cells
from scembed.vae import train as train_module
from scembed.vae.module import VAE, LossOutput
from scembed.vae.params import resolve_params
from scembed.vae.train import NonFiniteLossError, kl_weight, train_vae

N_CELLS, N_GENES = TRAIN_CELLS, TRAIN_GENES
pytestmark = pytest.mark.usefixtures("one_thread")
_params, _quiet = short_params, quiet


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


def test_vae_trains_finite_on_kept_genes_without_counts(one_thread):
    """Genes without any count among the kept genes (n_top_genes above the genes seen)
    give a finite loss and embedding with the book's size factor."""
    from scembed.vae.train import train_vae

    rng = np.random.default_rng(1)
    counts = rng.poisson(2.0, size=(120, 20))
    counts[:, :4] = 0
    split = split_cells(120, 0.2, 0.0, 0)
    result = train_vae(counts, split, short_params(batch_size=20), seed=0, log=lambda _: None)
    assert np.isfinite(result.latent).all()
    assert np.isfinite(result.history[["train_loss", "validation_loss"]].to_numpy()).all()


# --- the levers --------------------------------------------------------------------------


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


# --- the batch covariate -----------------------------------------------------------------


def batch_effect_data(n_cells=600, n_genes=100, n_types=3, n_batches=3, seed=0):
    """(counts, split, batch codes, types): every type in every batch, and each batch
    scales every gene by its own log-normal factor (sd 0.5), a strong batch effect."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n_cells)
    batch = rng.integers(0, n_batches, n_cells)
    means = rng.lognormal(0.0, 1.0, (n_types, n_genes))
    scale = rng.lognormal(0.0, 0.5, (n_batches, n_genes))
    library = rng.lognormal(0.0, 0.3, (n_cells, 1))
    counts = rng.poisson(means[types] * scale[batch] * library).astype(np.int64)
    split = rng.choice(["train", "validation", "test"], n_cells, p=[0.8, 0.15, 0.05])
    return counts, split, batch, types


def neighbour_fractions(latent, batch, types, k=15):
    """(mean fraction of each cell's k nearest neighbours from another batch, from the
    same type): batch mixing (2/3 for three even batches mixed at random) and type
    conservation."""
    from sklearn.neighbors import NearestNeighbors

    knn = NearestNeighbors(n_neighbors=k + 1).fit(latent)
    neighbours = knn.kneighbors(latent, return_distance=False)[:, 1:]
    mixing = (batch[neighbours] != batch[:, None]).mean()
    conserved = (types[neighbours] == types[:, None]).mean()
    return float(mixing), float(conserved)


def test_without_a_batch_every_number_is_as_before(data):
    """batch=None, and a batch with use_batch false, train the network of a run without
    the argument: the same latent, weights and losses, bit for bit."""
    counts, split = data
    params = _params(preset="improved", kl_warmup_epochs=1, max_epochs=4)
    reference = train_vae(counts, split, params, seed=3, log=_quiet)
    none = train_vae(counts, split, params, seed=3, log=_quiet, batch=None)
    batch = np.random.default_rng(0).integers(0, 3, N_CELLS)
    messages = []
    unused = train_vae(
        counts,
        split,
        dataclasses.replace(params, use_batch=False),
        seed=3,
        log=messages.append,
        batch=batch,
        batch_names=["a", "b", "c"],
    )
    assert "batch: not used (use_batch is false)" in messages
    for result in (none, unused):
        assert torch.equal(torch.from_numpy(result.latent), torch.from_numpy(reference.latent))
        assert result.state_dict.keys() == reference.state_dict.keys()
        for key, value in reference.state_dict.items():
            assert torch.equal(result.state_dict[key], value), key
        pd.testing.assert_frame_equal(
            result.history.drop(columns="seconds"), reference.history.drop(columns="seconds")
        )
        assert result.batches == []
    with_batch = train_vae(counts, split, params, seed=3, log=_quiet, batch=batch)
    assert not np.allclose(with_batch.latent, reference.latent)


def test_batch_aware_training_mixes_the_batches_and_keeps_the_types():
    counts, split, batch, types = batch_effect_data()
    names = ["plate1", "plate2", "plate3"]
    short = {"n_hidden": 32, "batch_size": 64, "lr": 1e-2, "max_epochs": 40, "patience": 100}
    params = _params(preset="improved", kl_warmup_epochs=5, **short)
    messages = []
    aware = train_vae(
        counts, split, params, seed=0, log=messages.append, batch=batch, batch_names=names
    )
    plain = train_vae(
        counts, split, dataclasses.replace(params, use_batch=False), 0, log=_quiet, batch=batch
    )
    mixing_aware, types_aware = neighbour_fractions(aware.latent, batch, types)
    mixing_plain, _ = neighbour_fractions(plain.latent, batch, types)
    assert mixing_plain < 0.1  # without the covariate each batch is its own island
    assert mixing_aware > 0.4  # close to 2/3, three batches at random
    assert types_aware > 0.9
    assert f"batch: 3 batches {names}, a covariate of the encoder and the decoder" in messages
    assert aware.batches == names and aware.state_dict["batches._extra_state"] == names
    assert aware.state_dict["z_encoder.encoder.0.weight"].shape == (32, counts.shape[1] + 3)


def test_validation_and_embedding_use_each_cells_own_batch():
    counts, split, batch, _ = batch_effect_data(n_cells=200, n_genes=40)
    params = _params(preset="improved", kl_warmup_epochs=1, max_epochs=3)
    result = train_vae(counts, split, params, seed=1, log=_quiet, batch=batch)
    model = VAE(
        counts.shape[1],
        n_latent=10,
        n_hidden=32,
        n_layers=1,
        likelihood="nb",
        posterior_scale="exp_logvar",
        encoder_input="log1p",
        dropout=0.1,
        decoder_output="softmax",
        n_batch=3,
    )
    model.load_state_dict(result.state_dict)
    model.eval()
    x = torch.from_numpy(counts.astype(np.float32))
    with torch.inference_mode():
        own = model.inference(x, torch.from_numpy(batch))["qz_m"].numpy()
        other = model.inference(x, torch.from_numpy((batch + 1) % 3))["qz_m"].numpy()
    np.testing.assert_allclose(result.latent, own, rtol=1e-5, atol=1e-6)
    assert not np.allclose(result.latent, other, atol=1e-3)
    sparse = train_vae(sp.csr_matrix(counts), split, params, seed=1, log=_quiet, batch=batch)
    assert np.array_equal(sparse.latent, result.latent)  # minibatches take the same batches


@pytest.mark.parametrize(
    ("batch", "names", "match"),
    [
        (np.zeros(10, dtype=np.int64), None, r"batch has shape \(10,\)"),
        (np.zeros(N_CELLS), None, "integer codes"),
        (np.full(N_CELLS, -1), None, "negative"),
        (np.arange(N_CELLS) % 3, ["a", "b"], "code 2 but 2 batch_names"),
    ],
)
def test_bad_batch_is_refused(data, batch, names, match):
    counts, split = data
    params = _params(preset="improved", kl_warmup_epochs=1)
    with pytest.raises(ValueError, match=match):
        train_vae(counts, split, params, seed=0, log=_quiet, batch=batch, batch_names=names)


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


# --- the rule's script -------------------------------------------------------------------


def preprocessed_file(path, counts, split, batch=None):
    """A preprocessed.h5ad as the workflow writes it: log-normalised X, the counts layer,
    labels and split, and (with ``batch``) obs["batch"] and uns["batch_key"]."""
    import anndata as ad

    obs = pd.DataFrame(
        {"cell_type": [f"t{i % 3}" for i in range(len(split))], "split": split},
        index=[f"c{i}" for i in range(len(split))],
    )
    normalised = np.log1p(counts / counts.sum(1, keepdims=True).clip(1) * 1e4)
    adata = ad.AnnData(X=sp.csr_matrix(normalised, dtype=np.float32), obs=obs)
    adata.layers["counts"] = sp.csr_matrix(counts, dtype=np.float32)
    adata.uns["label_key"] = "cell_type"
    if batch is not None:
        adata.obs["batch"] = pd.Categorical([f"plate{b + 1}" for b in batch])
        adata.uns["batch_key"] = "batch"
    adata.write_h5ad(path)
    return path


def run_train_vae_script(monkeypatch, tmp_path, preprocessed, method, name):
    """Run scripts/train_vae.py's main on ``preprocessed``; (embedding AnnData, model
    state, log lines)."""
    import logging
    from types import SimpleNamespace

    import anndata as ad

    script = rule_script("train_vae")
    messages = []
    log = logging.getLogger(f"test_train_vae_script.{name}")
    monkeypatch.setattr(log, "info", lambda msg, *args: messages.append(msg % args))
    monkeypatch.setattr(script, "setup_logging", lambda path: log)
    monkeypatch.setattr(script, "stop_on_signals", lambda *args: None)
    out = tmp_path / name
    snakemake = SimpleNamespace(
        input=[str(preprocessed)],
        output=SimpleNamespace(
            embedding=str(out / "embedding.h5ad"),
            model=str(out / "model.pt"),
            history=str(out / "history.tsv"),
            loss=str(out / "loss.png"),
        ),
        log=[str(out / "train.log")],
        threads=1,
        wildcards=SimpleNamespace(dataset="d", method="m", seed="0"),
        params=SimpleNamespace(
            method=method,
            checkpoint=str(out / "checkpoint.pt"),
            failed_checkpoint=str(out / "best.pt"),
            threads=1,
        ),
        config={"checkpoint_every": 1},
    )
    out.mkdir()
    script.main(snakemake)
    embedding = ad.read_h5ad(out / "embedding.h5ad")
    return embedding, torch.load(out / "model.pt", weights_only=True), messages


def test_script_reads_the_batch_and_use_batch_false_equals_no_batch_key(monkeypatch, tmp_path):
    counts, split, batch, _ = batch_effect_data(n_cells=200, n_genes=40)
    with_key = preprocessed_file(tmp_path / "with.h5ad", counts, split, batch)
    without_key = preprocessed_file(tmp_path / "without.h5ad", counts, split)
    short = {"n_hidden": 32, "max_epochs": 3, "kl_warmup_epochs": 1, "device": "cpu"}
    method = {"kind": "vae", "preset": "improved", **short}
    off, off_model, off_log = run_train_vae_script(
        monkeypatch, tmp_path, with_key, {**method, "use_batch": False}, "off"
    )
    plain, plain_model, plain_log = run_train_vae_script(
        monkeypatch, tmp_path, without_key, method, "plain"
    )
    assert "batch: not used (use_batch: false)" in off_log
    assert "batch: not used (no batch_key)" in plain_log
    assert np.array_equal(off.obsm["X_emb"], plain.obsm["X_emb"])
    assert off_model.keys() == plain_model.keys() and "batches._extra_state" not in off_model
    assert "batches" not in off.uns["embedding"]
    on, on_model, on_log = run_train_vae_script(monkeypatch, tmp_path, with_key, method, "on")
    assert "batch: obs['batch'], 3 batches, a covariate of the VAE" in on_log
    names = ["plate1", "plate2", "plate3"]
    assert on_model["batches._extra_state"] == names  # model.pt names the batches
    assert list(on.uns["embedding"]["batches"]) == names
    assert on.uns["embedding"]["batch_key"] == "batch"
    assert not np.allclose(on.obsm["X_emb"], plain.obsm["X_emb"])
