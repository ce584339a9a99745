"""Training checkpoints (scembed.vae.checkpoint): a run interrupted at any epoch resumes to
the uninterrupted result; a checkpoint of other settings or data, or a damaged one, is
ignored."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import quiet, short_params

from scembed.vae import checkpoint as ckpt
from scembed.vae import train as train_module
from scembed.vae.train import train_vae

pytestmark = pytest.mark.usefixtures("one_thread")


class Interrupted(Exception):
    """Stands for a kill in the middle of training."""


def interrupt_at(epoch_to_stop: int):
    """An ``on_epoch`` that stops training after epoch ``epoch_to_stop``'s losses, before
    its checkpoint."""

    def on_epoch(epoch):
        if epoch == epoch_to_stop:
            raise Interrupted(epoch)

    return on_epoch


def assert_same_result(resumed, reference):
    assert np.array_equal(resumed.latent, reference.latent)
    pd.testing.assert_frame_equal(
        resumed.history.drop(columns="seconds"), reference.history.drop(columns="seconds")
    )
    assert resumed.best_epoch == reference.best_epoch
    assert resumed.stop_reason == reference.stop_reason
    assert resumed.state_dict.keys() == reference.state_dict.keys()
    for key, value in reference.state_dict.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(resumed.state_dict[key], value), key
        else:  # a module's extra state: the batch names
            assert resumed.state_dict[key] == value, key


def interrupted_then_resumed(data, params, path, stop, seed=0, every=1):
    """Train until ``on_epoch`` of epoch ``stop`` raises, then again; (result, log lines)."""
    counts, split = data
    with pytest.raises(Interrupted):
        train_vae(
            counts,
            split,
            params,
            seed,
            log=quiet,
            on_epoch=interrupt_at(stop),
            checkpoint=path,
            checkpoint_every=every,
        )
    messages = []
    result = train_vae(
        counts, split, params, seed, log=messages.append, checkpoint=path, checkpoint_every=every
    )
    return result, messages


@pytest.mark.parametrize(("stop", "every", "resumed_at"), [(2, 1, 1), (4, 1, 3), (4, 3, 3)])
def test_resume_is_bit_identical_to_an_uninterrupted_run(data, tmp_path, stop, every, resumed_at):
    counts, split = data
    params = short_params(max_epochs=6)
    reference = train_vae(counts, split, params, seed=0, log=quiet)
    path = tmp_path / "seed0.pt"
    result, messages = interrupted_then_resumed(data, params, path, stop, every=every)
    assert f"resumed from checkpoint {path} at epoch {resumed_at}: " in "\n".join(messages)
    trained = [int(m.split(":")[0].split()[1]) for m in messages if m.startswith("epoch ")]
    assert trained == list(range(resumed_at + 1, 7))  # each epoch trained once
    assert_same_result(result, reference)
    assert path.exists()  # the caller removes it once the outputs are written
    ckpt.remove(path)
    assert list(tmp_path.iterdir()) == []


def test_warmup_dropout_and_early_stopping_resume_exactly(data, tmp_path):
    """Dropout draws from the global RNG, the KL weight depends on the epoch, and the
    early-stopping counters cross the interruption: all must carry over."""
    counts, split = data
    params = short_params(
        preset="improved", kl_warmup_epochs=3, patience=2, max_epochs=200, lr=1e-2
    )
    reference = train_vae(counts, split, params, seed=4, log=quiet)
    assert reference.stop_reason.startswith("early stopping")
    n_epochs = len(reference.history)
    assert n_epochs > 6
    # during the warm-up, just after it, and in the early-stopping countdown
    for stop in (2, 4, n_epochs - 1):
        path = tmp_path / f"stop{stop}.pt"
        result, messages = interrupted_then_resumed(data, params, path, stop, seed=4)
        assert f"at epoch {stop - 1}: " in "\n".join(messages)
        assert_same_result(result, reference)
    saved = torch.load(tmp_path / f"stop{n_epochs - 1}.pt", weights_only=True)
    assert saved["stopped_early"] and saved["epoch"] == n_epochs
    assert saved["best_epoch"] == reference.best_epoch and saved["wait"] == params.patience


def test_killed_after_training_skips_it_on_resume(data, tmp_path, monkeypatch):
    """The epoch that ends training writes a checkpoint: a kill while embedding or writing
    the outputs costs no training epoch."""
    counts, split = data
    params = short_params(max_epochs=3)
    reference = train_vae(counts, split, params, seed=0, log=quiet)
    path = tmp_path / "seed0.pt"
    embed = train_module._embed

    def killed(*args):
        raise Interrupted("embedding")

    monkeypatch.setattr(train_module, "_embed", killed)
    with pytest.raises(Interrupted):
        train_vae(counts, split, params, seed=0, log=quiet, checkpoint=path)
    monkeypatch.setattr(train_module, "_embed", embed)
    messages = []
    result = train_vae(counts, split, params, seed=0, log=messages.append, checkpoint=path)
    assert f"resumed from checkpoint {path} at epoch 3: " in messages[1]
    assert not any(": train " in message for message in messages)
    assert_same_result(result, reference)


def test_checkpoint_loads_with_weights_only_and_holds_the_state(data, tmp_path):
    counts, split = data
    path = tmp_path / "seed0.pt"
    params = short_params(max_epochs=5)
    with pytest.raises(Interrupted):
        train_vae(counts, split, params, 0, log=quiet, on_epoch=interrupt_at(3), checkpoint=path)
    state = torch.load(path, weights_only=True)
    assert set(state) == {*ckpt.KEYS, "batches"} and state["batches"] == []
    assert state["epoch"] == 2 and [row[0] for row in state["history"]] == [1, 2]
    assert state["best_epoch"] in (1, 2) and isinstance(state["best_loss"], float)
    assert set(state["rng"]) == {"torch", "shuffle", "cuda"} and state["rng"]["cuda"] == []
    assert state["optimizer"]["state"][0]["step"].item() == 2 * (255 // 50)
    assert state["model"].keys() == state["best_state"].keys()
    assert not list(tmp_path.glob(".*"))  # no half-written file left behind


def ignored_checkpoint_case(data, tmp_path, make_stale):
    """Write a checkpoint, spoil it with ``make_stale(path)``; the next run must ignore it
    and give the uninterrupted result. Returns the log of that run."""
    counts, split = data
    params = short_params(max_epochs=4)
    path = tmp_path / "seed0.pt"
    make_stale(path, params)
    messages = []
    result = train_vae(counts, split, params, 0, log=messages.append, checkpoint=path)
    assert_same_result(result, train_vae(counts, split, params, 0, log=quiet))
    assert "resumed" not in "\n".join(messages)
    assert torch.load(path, weights_only=True)["epoch"] == 4  # overwritten by this run
    return "\n".join(messages)


def partial_run(data, path, params, seed=0, split=None, stop=3):
    counts, default_split = data
    with pytest.raises(Interrupted):
        train_vae(
            counts,
            default_split if split is None else split,
            params,
            seed,
            log=quiet,
            on_epoch=interrupt_at(stop),
            checkpoint=path,
        )


@pytest.mark.parametrize("change", ["params", "seed", "split", "counts"])
def test_checkpoint_of_other_settings_or_data_is_ignored(data, tmp_path, change):
    counts, split = data

    def other_run(path, params):
        if change == "params":
            partial_run(data, path, dataclasses.replace(params, lr=2e-3))
        elif change == "seed":
            partial_run(data, path, params, seed=1)
        elif change == "split":
            partial_run(data, path, params, split=np.roll(split, 1))
        else:
            changed = counts.copy()
            changed[0, 0] += 1
            partial_run((changed, split), path, params)

    log = ignored_checkpoint_case(data, tmp_path, other_run)
    assert "ignored: it was written with other parameters, seed, device, torch or data" in log


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a checkpoint", "it cannot be read"),
        (None, "it cannot be read"),  # a truncated checkpoint
        ({"epoch": 3}, "not a training checkpoint of this workflow"),
        ("misfit", "its state does not fit the model"),  # right fingerprint, wrong shapes
    ],
)
def test_corrupt_checkpoint_is_ignored(data, tmp_path, content, reason):
    def corrupt(path, params):
        if content is None:
            partial_run(data, path, params)
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif content == "misfit":
            partial_run(data, path, params)
            state = torch.load(path, weights_only=True)
            state["model"] = {k: v.reshape(-1)[:1] for k, v in state["model"].items()}
            torch.save(state, path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)

    log = ignored_checkpoint_case(data, tmp_path, corrupt)
    assert f"checkpoint {tmp_path / 'seed0.pt'} ignored: {reason}" in log


def test_a_half_written_checkpoint_is_cleaned_up(data, tmp_path):
    counts, split = data
    path = tmp_path / "seed0.pt"
    stale = tmp_path / ".seed0.pt.abc123.pt"  # what a kill inside atomic_path leaves
    stale.write_bytes(b"half")
    train_vae(counts, split, short_params(max_epochs=1), 0, log=quiet, checkpoint=path)
    assert not stale.exists() and path.exists()


def test_checkpoint_every_zero_writes_none_and_bad_values_are_refused(data, tmp_path):
    counts, split = data
    path = tmp_path / "seed0.pt"
    train_vae(
        counts, split, short_params(max_epochs=2), 0, log=quiet, checkpoint=path, checkpoint_every=0
    )
    assert not path.exists()
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="checkpoint_every"):
            train_vae(counts, split, short_params(), 0, log=quiet, checkpoint_every=bad)


# --- with a batch ------------------------------------------------------------------------


def batch_run(data, path, names, seed=0, on_epoch=None, log=quiet, batch=None):
    """Train the improved preset with the batch ``batch`` (default: three batches taken
    in turn) named ``names``, with a checkpoint at ``path``."""
    counts, split = data
    params = short_params(preset="improved", kl_warmup_epochs=2, max_epochs=6)
    codes = np.arange(len(split)) % len(names) if batch is None else batch
    kwargs = {"on_epoch": on_epoch} if on_epoch else {}
    return train_vae(
        counts,
        split,
        params,
        seed,
        log=log,
        checkpoint=path,
        batch=codes,
        batch_names=names,
        **kwargs,
    )


def test_resume_with_a_batch_is_bit_identical_and_records_the_batches(data, tmp_path):
    names = ["p1", "p2", "p3"]
    reference = batch_run(data, None, names)
    path = tmp_path / "seed0.pt"
    with pytest.raises(Interrupted):
        batch_run(data, path, names, on_epoch=interrupt_at(4))
    saved = torch.load(path, weights_only=True)
    assert saved["batches"] == names and saved["model"]["batches._extra_state"] == names
    messages = []
    result = batch_run(data, path, names, log=messages.append)
    assert f"resumed from checkpoint {path} at epoch 3: " in "\n".join(messages)
    assert result.batches == names
    assert_same_result(result, reference)


@pytest.mark.parametrize("change", ["names", "codes", "no batch"])
def test_checkpoint_of_other_batches_is_not_resumed(data, tmp_path, change):
    """Other batch names (or none) are named in the log; other codes under the same names
    change the data's digest. Either way training starts over and gives the result of
    this run's batches."""
    counts, split = data
    names = ["p1", "p2", "p3"]
    path = tmp_path / "seed0.pt"
    with pytest.raises(Interrupted):
        if change == "no batch":
            params = short_params(preset="improved", kl_warmup_epochs=2, max_epochs=6)
            train_vae(
                counts, split, params, 0, log=quiet, checkpoint=path, on_epoch=interrupt_at(3)
            )
        else:
            other = ["p1", "p2", "p4"] if change == "names" else names
            codes = np.roll(np.arange(len(split)) % 3, 1) if change == "codes" else None
            batch_run(data, path, other, on_epoch=interrupt_at(3), batch=codes)
    messages = []
    result = batch_run(data, path, names, log=messages.append)
    log = "\n".join(messages)
    assert "resumed" not in log
    if change == "codes":
        assert "ignored: it was written with other parameters, seed, device, torch or data" in log
    else:
        written = "none" if change == "no batch" else "['p1', 'p2', 'p4']"
        assert f"ignored: it was written for the batches {written} and this run has {names}" in log
    assert_same_result(result, batch_run(data, None, names))
