"""kind: scvi (scembed.scvi_model): scvi-tools' SCVI on the workflow's split, seeded, like
any other method. A Python without scvi-tools is refused before any job
(test_workflow_inputs.py)."""

import numpy as np
import pytest

from scembed.preprocess import split_cells
from scembed.synthetic import simulate_counts

pytest.importorskip("scvi", reason="scvi-tools is not installed (make venv installs it)")

from conftest import rule_script

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
OUTPUTS = {
    "embedding": "embedding.h5ad",
    "model": "model.pt",
    "history": "history.tsv",
    "loss": "loss.png",
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


def test_scvi_conditions_on_the_batch_only_with_use_batch(tiny):
    counts, split = tiny
    short = {**TINY, "max_epochs": 2}
    batch, names = np.arange(len(split)) % 2, ["plate1", "plate2"]
    messages = []
    aware = train_scvi(
        counts, split, seed=0, log=messages.append, batch=batch, batch_names=names, **short
    )
    assert "batch: 2 batches ['plate1', 'plate2'] (scvi-tools' batch_key)" in messages
    assert aware.latent.shape == (200, 4) and np.isfinite(aware.latent).all()
    # SCVI's decoder takes the one-hot batch beside z (its encoder does not, by default)
    first_layer = aware.state_dict["decoder.px_decoder.fc_layers.Layer 0.0.weight"]
    assert first_layer.shape == (16, 4 + 2)
    plain = train_scvi(counts, split, seed=0, log=lambda _: None, **short)
    assert plain.state_dict["decoder.px_decoder.fc_layers.Layer 0.0.weight"].shape == (16, 4)
    assert not np.allclose(aware.latent, plain.latent)
    unused = train_scvi(
        counts, split, seed=0, log=lambda _: None, use_batch=False, batch=batch, **short
    )
    np.testing.assert_array_equal(unused.latent, plain.latent)


def test_train_scvi_script_passes_the_batch(tiny, tmp_path, monkeypatch):
    """scripts/train_scvi.py reads obs[uns["batch_key"]] and gives it to SCVI."""
    import logging
    from types import SimpleNamespace

    import anndata as ad
    import pandas as pd

    counts, split = tiny
    obs = pd.DataFrame(
        {
            "cell_type": [f"t{i % 3}" for i in range(len(split))],
            "split": split,
            "batch": [f"plate{i % 2 + 1}" for i in range(len(split))],
        },
        index=[f"c{i}" for i in range(len(split))],
    )
    pre = ad.AnnData(X=counts.astype(np.float32), obs=obs)
    pre.layers["counts"] = pre.X.copy()
    pre.uns["label_key"], pre.uns["batch_key"] = "cell_type", "batch"
    pre.write_h5ad(tmp_path / "pre.h5ad")
    script = rule_script("train_scvi")
    messages = []
    log = logging.getLogger("test_train_scvi_script")
    monkeypatch.setattr(log, "info", lambda msg, *args: messages.append(msg % args))
    monkeypatch.setattr(script, "setup_logging", lambda path: log)
    output = {name: str(tmp_path / file) for name, file in OUTPUTS.items()}
    snakemake = SimpleNamespace(
        input=[str(tmp_path / "pre.h5ad")],
        output=SimpleNamespace(**output),
        log=[str(tmp_path / "train.log")],
        threads=1,
        wildcards=SimpleNamespace(dataset="d", method="scvi", seed="0"),
        params=SimpleNamespace(
            method={"kind": "scvi", **TINY, "max_epochs": 2, "use_batch": True}, threads=1
        ),
    )
    script.main(snakemake)
    assert "batch: obs['batch'], 2 batches, SCVI's batch_key" in messages
    assert "batch: 2 batches ['plate1', 'plate2'] (scvi-tools' batch_key)" in messages
    info = ad.read_h5ad(output["embedding"]).uns["embedding"]
    assert list(info["batches"]) == ["plate1", "plate2"] and info["batch_key"] == "batch"
