"""kind: scvi (scembed.scvi_model): scvi-tools' SCVI on the workflow's split, seeded, like
any other method. A Python without scvi-tools is refused before any job
(test_workflow_inputs.py)."""

import numpy as np
import pytest

from scembed.preprocess import split_cells
from scembed.synthetic import simulate_counts

pytest.importorskip("scvi", reason="scvi-tools is not installed (make venv installs it)")

from scembed.scvi_model import train_scvi  # noqa: E402

TINY = {
    "n_latent": 4,
    "n_hidden": 16,
    "n_layers": 1,
    "gene_likelihood": "nb",
    "dropout_rate": 0.1,
    "batch_size": 64,
    "lr": 1e-3,
    "max_epochs": 3,
    "early_stopping": False,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def tiny():
    adata = simulate_counts(200, 60, 3, seed=0)
    return adata.X, split_cells(adata.n_obs, 0.1, 0.05, seed=0)


def test_scvi_trains_on_our_split_and_is_seeded(tiny):
    counts, split = tiny
    result = train_scvi(counts, split, seed=0, log=lambda _: None, **TINY)
    assert result.latent.shape == (200, 4) and np.isfinite(result.latent).all()
    for name in ("train", "validation", "test"):  # test cells are held out, not trained on
        np.testing.assert_array_equal(result.indices[name], np.flatnonzero(split == name))
    assert list(result.history.columns) == ["epoch", "train_loss", "validation_loss", "seconds"]
    assert len(result.history) == result.epochs == 3 and result.device == "cpu"
    assert np.isfinite(result.history[["train_loss", "validation_loss"]].to_numpy()).all()
    again = train_scvi(counts, split, seed=0, log=lambda _: None, **TINY)
    np.testing.assert_array_equal(result.latent, again.latent)
    other = train_scvi(counts, split, seed=1, log=lambda _: None, **TINY)
    assert not np.allclose(result.latent, other.latent)


def test_scvi_refuses_non_counts(tiny):
    counts, split = tiny
    with pytest.raises(ValueError, match="scVI input"):
        train_scvi(counts.astype(np.float32) * 0.5, split, seed=0, **TINY)
