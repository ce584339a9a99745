"""scembed.tl.pca and scembed.tl.vae against the embed_pca and train_vae jobs on the
same preprocessed data (the same embeddings, histories and weights), and the caller's
torch threads and random state left as they were."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from jobs import SHORT, run_script, written

import scembed


def test_vae_is_the_train_vae_job(pbmc_pre, pbmc_plain, tmp_path, monkeypatch):
    for adata, name, batches in (
        (pbmc_pre, "batch", ["G1", "G2M", "S"]),
        (pbmc_plain, "pbmc_plain", []),
    ):
        method = {"kind": "vae", "preset": "improved", **SHORT}
        files = run_script(
            "train_vae",
            monkeypatch,
            tmp_path / name,
            [written(adata, tmp_path, name)],
            {
                "embedding": "embedding.h5ad",
                "model": "model.pt",
                "history": "history.tsv",
                "loss": "loss.png",
            },
            method=method,
            checkpoint=str(tmp_path / name / "checkpoint.pt"),
            failed_checkpoint=str(tmp_path / name / "best.pt"),
        )
        job = ad.read_h5ad(files["embedding"])
        mine = adata.copy()
        result = scembed.tl.vae(mine, **SHORT)
        np.testing.assert_array_equal(mine.obsm["X_vae"], job.obsm["X_emb"])
        history = pd.read_csv(files["history"], sep="\t")
        pd.testing.assert_frame_equal(
            result.history.drop(columns="seconds"), history.drop(columns="seconds")
        )
        state = torch.load(files["model"], weights_only=True)
        assert state.keys() == result.model.state_dict().keys()
        for key, value in result.model.state_dict().items():
            same = torch.equal(value, state[key]) if torch.is_tensor(value) else value == state[key]
            assert same, key
        assert result.best_epoch == job.uns["embedding"]["best_epoch"]
        assert mine.uns["X_vae"]["params"]["use_batch"] is True
        assert result.batches == list(job.uns["embedding"].get("batches", [])) == batches


def test_the_returned_model_embeds_the_cells(pbmc_plain):
    mine = pbmc_plain.copy()
    result = scembed.tl.vae(mine, **SHORT)
    counts = torch.as_tensor(mine.layers["counts"].toarray(), dtype=torch.float32)
    with torch.inference_mode():
        latent = result.model.inference(counts)["qz_m"].numpy()
    np.testing.assert_allclose(latent, mine.obsm["X_vae"], rtol=1e-4, atol=1e-5)
    assert result.stop_reason and result.device == "cpu"


def test_vae_leaves_torch_threads_and_random_state_as_they_were(pbmc_plain, monkeypatch):
    import scembed.vae.train as train

    original, seen = train.train_vae, []

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "train_vae", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    state = torch.get_rng_state()
    try:
        scembed.tl.vae(pbmc_plain.copy(), threads=1, **SHORT)
        assert seen == [1]
        assert torch.get_num_threads() == 2
        assert torch.equal(torch.get_rng_state(), state)
        with pytest.raises(ValueError, match="threads: 0 must be an integer >= 1"):
            scembed.tl.vae(pbmc_plain.copy(), threads=0, **SHORT)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_vae_refuses_bad_input(pbmc_plain):
    logged = pbmc_plain.copy()
    logged.layers["counts"] = logged.X.copy()
    with pytest.raises(ValueError, match=r"VAE input: the counts must be non-negative integers"):
        scembed.tl.vae(logged, **SHORT)
    with pytest.raises(ValueError, match=r"no obs\['split'\].*scembed.pp.book"):
        scembed.tl.vae(ad.AnnData(X=pbmc_plain.layers["counts"]), layer=None, **SHORT)
    with pytest.raises(ValueError, match="unknown VAE parameter"):
        scembed.tl.vae(pbmc_plain.copy(), n_latents=5, **SHORT)
    assert "X_vae" not in pbmc_plain.obsm


def test_pca_is_the_embed_pca_job(pbmc_pre, pbmc_plain, tmp_path, monkeypatch):
    for adata, use_batch, name in ((pbmc_plain, False, "pbmc_plain"), (pbmc_pre, True, "harmony")):
        files = run_script(
            "embed_pca",
            monkeypatch,
            tmp_path / name,
            [written(adata, tmp_path, name)],
            {"embedding": "embedding.h5ad"},
            method={"kind": "pca", "n_components": 10, "use_batch": use_batch},
        )
        job = ad.read_h5ad(files["embedding"])
        assert job.uns["embedding"].get("harmony", False) is use_batch
        mine = adata.copy()
        scembed.tl.pca(mine, use_batch=use_batch)
        np.testing.assert_array_equal(mine.obsm["X_pca"], job.obsm["X_emb"])
