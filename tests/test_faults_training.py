"""A VAE training job killed mid-run (SIGKILL, SIGTERM) resumes from its last checkpoint
when the workflow runs again, and ends with the embedding of an uninterrupted run."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from conftest import snakemake, snakemake_command, synthetic_config, write_config

from scembed.embedding import EMBEDDING_KEY

pytestmark = pytest.mark.workflow

EPOCHS = 60  # about 3 s of training on the synthetic data, one thread
CONFIG = synthetic_config(
    methods={"vae": {"kind": "vae", "preset": "book", "max_epochs": EPOCHS, "patience": EPOCHS}},
    seeds=[0],
)
RUN = "results/synthetic/vae/seed0"
TARGET = f"{RUN}/embedding.h5ad"
LOG = "results/logs/train_vae/synthetic/vae/seed0.log"
CHECKPOINT = "results/checkpoints/train_vae/synthetic/vae/seed0.pt"
# --cores 1: the job trains on one thread, so runs are bit-identical on the CPU
ARGS = ("--configfile", "config.yaml", "--cores", "1")


def outputs(workdir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    latent = ad.read_h5ad(workdir / TARGET).obsm[EMBEDDING_KEY]
    history = pd.read_csv(workdir / RUN / "history.tsv", sep="\t").drop(columns="seconds")
    return latent, history


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A workdir with the preprocessed data and an uninterrupted run's outputs."""
    workdir = tmp_path_factory.mktemp("faults")
    write_config(workdir / "config.yaml", CONFIG)
    result = snakemake(workdir, *ARGS, TARGET, timeout=300)
    assert result.returncode == 0, result.stderr[-5000:]
    assert not (workdir / CHECKPOINT).exists()  # removed once the outputs exist
    return workdir, *outputs(workdir)


def kill_at_a_random_epoch(workdir: Path, sig: signal.Signals, whole_group: bool) -> int:
    """Start training again (--forcerun), wait for a random epoch in its log, send ``sig``
    to the training process (or Snakemake's whole process group); return that epoch."""
    (workdir / LOG).unlink(missing_ok=True)  # the last run's lines must not be read
    epoch = random.randint(3, 20)
    cmd = snakemake_command(workdir, *ARGS)
    with subprocess.Popen(
        [*cmd, "--forcerun", "train_vae", TARGET],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, like a Slurm job step
    ) as run:
        deadline = time.monotonic() + 120
        while not re.search(rf"^\S+ \S+ INFO epoch {epoch}: train", read(workdir / LOG), re.M):
            assert run.poll() is None, "the workflow ended before training was killed"
            assert time.monotonic() < deadline, f"no epoch {epoch} in {LOG}"
            time.sleep(0.02)
        if whole_group:
            os.killpg(run.pid, sig)
        else:
            (trainer,) = [
                p
                for p in psutil.Process(run.pid).children(recursive=True)
                if any(part.endswith(".train_vae.py") for part in p.cmdline())
            ]
            trainer.send_signal(sig)
        assert run.wait(timeout=60) != 0
    assert not (workdir / TARGET).exists()
    return epoch


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize(
    ("sig", "whole_group"),
    [
        (signal.SIGKILL, False),  # the training process alone (e.g. the OOM killer)
        (signal.SIGTERM, True),  # Snakemake and its job (Ctrl-C, scancel, a time limit)
    ],
    ids=["SIGKILL-training", "SIGTERM-workflow"],
)
def test_killed_training_resumes_to_the_uninterrupted_embedding(uninterrupted, sig, whole_group):
    workdir, latent, history = uninterrupted
    killed_at = kill_at_a_random_epoch(workdir, sig, whole_group)
    if sig == signal.SIGTERM:  # the job ends through SystemExit: no half-written file
        assert "train_vae stopped by SIGTERM; run the workflow again" in read(workdir / LOG)
        assert not list((workdir / CHECKPOINT).parent.glob(".*"))
    saved = torch.load(workdir / CHECKPOINT, weights_only=True)
    # the log line of an epoch comes just before its checkpoint
    assert killed_at - 1 <= saved["epoch"] < EPOCHS, (killed_at, saved["epoch"])

    rerun = snakemake(workdir, *ARGS, "--rerun-incomplete", TARGET, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    log = read(workdir / LOG)
    assert f"resumed from checkpoint {CHECKPOINT} at epoch {saved['epoch']}: " in log
    trained = [int(n) for n in re.findall(r"INFO epoch (\d+): train", log)]
    assert trained == list(range(saved["epoch"] + 1, EPOCHS + 1))
    resumed_latent, resumed_history = outputs(workdir)
    assert np.array_equal(resumed_latent, latent)
    pd.testing.assert_frame_equal(resumed_history, history)
    assert list((workdir / CHECKPOINT).parent.iterdir()) == []  # nor a half-written one
