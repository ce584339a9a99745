"""The training device (scembed.vae.device): `auto`, `cpu`, CUDA where there is none, and
the choice of a free GPU among several (tested with torch's CUDA calls mocked)."""

import fcntl
import os
from types import SimpleNamespace

import pytest
import torch

from scembed.vae.device import LOCKS_ENV, claimed_gpu, lock_folder, resolve_device


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


# --- several GPUs: each training job on a device of its own -------------------------------


@pytest.fixture
def three_gpus(monkeypatch):
    """torch sees three CUDA devices; set_device records the choice."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid=f"GPU-uuid-{i}")
    )
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Fake H200")
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def test_jobs_take_free_gpus_and_release_them(three_gpus, tmp_path):
    messages = []
    with claimed_gpu("auto", messages.append, tmp_path) as first:
        with claimed_gpu("auto", messages.append, tmp_path) as second:
            assert (first, second) == (0, 1) and three_gpus == [0, 1]
        with claimed_gpu("auto", messages.append, tmp_path) as third:
            assert third == 1  # released by the second job when it ended
    with claimed_gpu("auto", messages.append, tmp_path) as again:
        assert again == 0
    assert messages[0] == (
        "device: cuda:0 (Fake H200), free among the 3 visible GPUs "
        f"(held through {tmp_path / 'gpu-GPU-uuid-0.lock'})"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gpu-GPU-uuid-0.lock",
        "gpu-GPU-uuid-1.lock",
    ]


def test_a_gpu_held_by_another_process_is_skipped(three_gpus, tmp_path):
    """A lock held by another job (another process: flock locks are per open file, so a
    second open in this process stands in for it)."""
    other = open(tmp_path / "gpu-GPU-uuid-0.lock", "a")  # noqa: SIM115
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with claimed_gpu("auto", lambda message: None, tmp_path) as index:
        assert index == 1
    other.close()


def test_when_every_gpu_is_held_the_job_shares_one(three_gpus, tmp_path, monkeypatch):
    held = [open(tmp_path / f"gpu-GPU-uuid-{i}.lock", "a") for i in range(3)]  # noqa: SIM115
    for handle in held:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    monkeypatch.setattr(os, "getpid", lambda: 7)
    messages = []
    with claimed_gpu("auto", messages.append, tmp_path) as index:
        assert index == 1 and three_gpus == [1]
    assert messages == ["device: every one of the 3 visible GPUs is held; sharing cuda:1"]
    for handle in held:
        handle.close()


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:2"])
def test_only_auto_chooses_a_gpu(three_gpus, tmp_path, name):
    with claimed_gpu(name, lambda message: None, tmp_path) as index:
        assert index is None and three_gpus == []
    assert list(tmp_path.iterdir()) == []


def test_one_gpu_or_none_is_not_locked(three_gpus, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with claimed_gpu("auto", lambda message: None, tmp_path) as index:
        assert index is None and three_gpus == []


def test_lock_folder_is_per_user_or_configured(monkeypatch, tmp_path):
    monkeypatch.delenv(LOCKS_ENV, raising=False)
    assert lock_folder().name == f"scembed-gpu-locks-{os.getuid()}"
    monkeypatch.setenv(LOCKS_ENV, str(tmp_path))
    assert lock_folder() == tmp_path
