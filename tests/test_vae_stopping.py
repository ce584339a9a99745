"""Early stopping (scembed.vae.stopping): the best epoch's loss and state, the epochs
since, and what a checkpoint carries of them. In the training loop: test_vae_train.py
and test_vae_checkpoint.py."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from scembed.vae.module import BatchNames
from scembed.vae.stopping import EarlyStopping


class Tiny(nn.Module):
    """A linear layer and, as a VAE with a batch has, the batch names as extra state."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.batches = BatchNames(["b1", "b2"])


def run(stopping: EarlyStopping, losses, model=None) -> list[tuple[int, int, bool]]:
    """Feed ``losses`` as epochs 1, 2...; (best_epoch, wait, stopped_early) after each."""
    model = model or Tiny()
    seen = []
    for epoch, loss in enumerate(losses, start=1):
        stopping.update(epoch, loss, model)
        seen.append((stopping.best_epoch, stopping.wait, stopping.stopped_early))
    return seen


def test_a_fresh_stopping_has_no_best_epoch():
    stopping = EarlyStopping(patience=3)
    assert stopping.best_state is None and stopping.best_loss == float("inf")
    assert (stopping.best_epoch, stopping.wait, stopping.stopped_early) == (0, 0, False)


def test_wait_counts_epochs_without_improvement_and_stops_at_patience():
    stopping = EarlyStopping(patience=2)
    assert run(stopping, [5.0, 4.0, 4.5, 3.0, 3.0, 3.5]) == [
        (1, 0, False),
        (2, 0, False),
        (2, 1, False),
        (4, 0, False),  # an improvement resets the count
        (4, 1, False),  # an equal loss is no improvement
        (4, 2, True),
    ]
    assert stopping.best_loss == 3.0


def test_the_best_state_is_a_copy_of_the_best_epochs_model():
    model = Tiny()
    stopping = EarlyStopping(patience=5)
    stopping.update(1, 1.0, model)
    weights = {"linear.weight": model.linear.weight, "linear.bias": model.linear.bias}
    best = {key: value.detach().clone() for key, value in weights.items()}
    with torch.no_grad():
        model.linear.weight.add_(1.0)  # the next epoch's training
    model.batches.names.append("b3")
    stopping.update(2, 2.0, model)  # worse: the state of epoch 1 stays
    assert stopping.best_state.keys() == model.state_dict().keys()
    for key, value in best.items():
        assert torch.equal(stopping.best_state[key], value), key
    assert stopping.best_state["batches._extra_state"] == ["b1", "b2"]
    assert not torch.equal(stopping.best_state["linear.weight"], model.linear.weight)


def test_the_best_state_loads_back_into_the_model():
    model = Tiny()
    stopping = EarlyStopping(patience=5)
    stopping.update(1, 1.0, model)
    before = model.linear.weight.detach().clone()
    with torch.no_grad():
        model.linear.weight.mul_(-2.0)
    model.load_state_dict(stopping.best_state)
    assert torch.equal(model.linear.weight, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_best_state_of_a_model_on_the_gpu_is_kept_on_the_cpu():
    model = Tiny().to("cuda")
    stopping = EarlyStopping(patience=5)
    stopping.update(1, 1.0, model)
    tensors = {k: v for k, v in stopping.best_state.items() if isinstance(v, torch.Tensor)}
    assert tensors and all(v.device.type == "cpu" for v in tensors.values())
    assert torch.equal(tensors["linear.weight"], model.linear.weight.cpu())


def test_reason_says_why_training_stopped_and_its_best_epoch():
    stopping = EarlyStopping(patience=2)
    run(stopping, [3.0, 2.0, 2.5])
    assert stopping.reason(max_epochs=3) == "reached max_epochs (3), best epoch 2"
    run(stopping, [2.5])
    assert stopping.reason(max_epochs=10) == (
        "early stopping: no improvement in 2 epochs, best epoch 2"
    )


def test_the_state_carries_everything_but_patience():
    stopping = EarlyStopping(patience=4)
    run(stopping, [3.0, 2.0, 2.5])
    state = stopping.state()
    assert set(state) == {"best_state", "best_loss", "best_epoch", "wait", "stopped_early"}
    assert (state["best_loss"], state["best_epoch"], state["wait"]) == (2.0, 2, 1)


def test_resumed_without_a_checkpoint_is_fresh():
    assert EarlyStopping.resumed(3, None) == EarlyStopping(3)


def test_resumed_through_a_saved_checkpoint_goes_on_as_without_the_interruption():
    """Interrupted after epoch 3, the state saved with torch.save and loaded with
    weights_only (as the checkpoint is), the next epochs count as they would have."""
    losses = [3.0, 2.0, 2.5, 2.6, 2.7]
    reference = EarlyStopping(patience=3)
    expected = run(reference, losses)

    first = EarlyStopping(patience=3)
    seen = run(first, losses[:3])
    buffer = io.BytesIO()
    torch.save(first.state(), buffer)
    buffer.seek(0)
    resumed = EarlyStopping.resumed(3, torch.load(buffer, weights_only=True))
    assert resumed.state().keys() == first.state().keys()
    for epoch, loss in enumerate(losses[3:], start=4):
        resumed.update(epoch, loss, Tiny())
        seen.append((resumed.best_epoch, resumed.wait, resumed.stopped_early))
    assert seen == expected
    assert seen[-1] == (2, 3, True)
    assert resumed.reason(10) == reference.reason(10)
    assert torch.equal(resumed.best_state["linear.weight"], first.best_state["linear.weight"])
