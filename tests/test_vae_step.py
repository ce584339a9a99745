"""The training step (scembed.vae.step): eager on the CPU; on CUDA a captured graph whose
bookkeeping (its own cell indices, KL weight and sums) is checked here by replaying the
step on the CPU, and the fallback to eager steps when capture fails."""

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import quiet, short_params

from scembed.vae import step as step_module
from scembed.vae.feeding import TrainingData
from scembed.vae.step import TrainingSteps, eager_step, graphs_wanted
from scembed.vae.train import train_vae

pytestmark = pytest.mark.usefixtures("one_thread")


class ReplayedOnTheCPU(step_module._Graph):
    """The captured step's buffers and bookkeeping, with a CPU stand-in for the graph:
    each replay runs the step on what the buffers hold at that moment, as a CUDA graph
    does (its capture runs nothing)."""

    def __init__(self, model, optimizer, data, batch_size, kl_weight):
        self.cells = torch.zeros(batch_size, dtype=torch.int64)
        self.kl_weight = torch.full((), kl_weight)
        self.sums = (torch.zeros(()), torch.zeros(()))
        batch = data.resident_minibatch(self.cells)

        def replay():
            eager_step(model, optimizer, data, batch, self.kl_weight, self.sums)

        self.graph = SimpleNamespace(replay=replay)


@pytest.fixture
def graphs_on_the_cpu(monkeypatch):
    """Let TrainingSteps take its CUDA path on the CPU (warm-up on the current stream)."""
    monkeypatch.setattr(step_module, "graphs_wanted", lambda data: (True, ""))
    monkeypatch.setattr(step_module, "side_stream", lambda device: contextlib.nullcontext())


def test_the_cpu_steps_eagerly(data):
    counts, _ = data
    training = TrainingData(sp.csr_matrix(counts), torch.device("cpu"), "observed")
    assert graphs_wanted(training) == (False, "not on CUDA")
    messages = []
    steps = TrainingSteps(None, None, training, 50, messages.append)
    assert not steps.capture and messages == []


@pytest.mark.parametrize("drop_last", [True, False])
def test_replayed_steps_train_as_the_eager_ones(data, graphs_on_the_cpu, monkeypatch, drop_last):
    """Three eager warm-up steps, then the replayed step for every full minibatch (and an
    eager one for a partial last one): the weights and the embedding of eager training,
    bit for bit, through the KL warm-up (the graph's weight follows each epoch); the
    epoch losses add the same terms in another order."""
    counts, split = data
    params = short_params(kl_warmup_epochs=2, max_epochs=4, drop_last=drop_last, batch_size=40)
    eager = train_vae(counts, split, params, seed=2, log=quiet)
    monkeypatch.setattr(step_module, "_Graph", ReplayedOnTheCPU)
    messages = []
    replayed = train_vae(sp.csr_matrix(counts), split, params, seed=2, log=messages.append)
    assert any(m.startswith("training steps: one CUDA graph of 40 cells") for m in messages)
    assert np.array_equal(eager.latent, replayed.latent)
    for key, value in eager.state_dict.items():
        assert torch.equal(value, replayed.state_dict[key]), key
    columns = ["train_loss", "validation_loss"]
    np.testing.assert_allclose(replayed.history[columns], eager.history[columns], rtol=1e-6)


def test_a_failed_capture_leaves_eager_steps_and_says_so(data, graphs_on_the_cpu, monkeypatch):
    def no_capture(*args):
        raise RuntimeError("operation not permitted when stream is capturing")

    counts, split = data
    eager = train_vae(counts, split, short_params(), seed=4, log=quiet)
    monkeypatch.setattr(step_module, "_Graph", no_capture)
    messages = []
    fallback = train_vae(counts, split, short_params(), seed=4, log=messages.append)
    failed = [m for m in messages if m.startswith("training steps: eager (CUDA graph capture")]
    assert failed == [
        "training steps: eager (CUDA graph capture failed: RuntimeError: operation not "
        "permitted when stream is capturing)"
    ]
    assert np.array_equal(eager.latent, fallback.latent)
    assert eager.history["train_loss"].tolist() == fallback.history["train_loss"].tolist()


def test_graphs_are_wanted_only_for_resident_counts_on_cuda(monkeypatch):
    cuda = SimpleNamespace(device=torch.device("cuda"), resident=True)
    assert graphs_wanted(cuda) == (True, "")
    streamed = SimpleNamespace(device=torch.device("cuda"), resident=False)
    assert graphs_wanted(streamed) == (False, "the counts are streamed")
    monkeypatch.setenv(step_module.GRAPHS_ENV, "off")
    assert graphs_wanted(cuda) == (False, "SCEMBED_CUDA_GRAPHS=off")
