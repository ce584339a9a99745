"""Where the VAE trains: ``auto`` (CUDA when torch sees it), ``cpu`` or ``cuda[:N]``, and
which of several GPUs a training job takes (:func:`claimed_gpu`)."""

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from scembed.vae.params import DEVICE_RE


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``: "auto" (cuda if available, else cpu), "cpu", "cuda[:N]".

    Raises RuntimeError, saying what to set instead, when the CUDA device is not there.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = DEVICE_RE.fullmatch(name)
    if match is None:
        raise ValueError(f"device: {name!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"device {name!r} requested but CUDA is not available on this machine "
            f"(torch {torch.__version__}); set device: auto or cpu"
        )
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise RuntimeError(
            f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) "
            "are visible; set device: auto, cuda or a smaller index"
        )
    return torch.device(name)


LOCKS_ENV = "SCEMBED_GPU_LOCKS"


def lock_folder() -> Path:
    """Where the training jobs of this machine hold their GPUs: ``$SCEMBED_GPU_LOCKS``, or
    a folder of the user's in the temporary directory (node-local, like the GPUs)."""
    configured = os.environ.get(LOCKS_ENV)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"scembed-gpu-locks-{os.getuid()}"


@contextlib.contextmanager
def claimed_gpu(name: str, log: Callable[[str], None], folder: Path | None = None):
    """With ``device: auto`` and several visible CUDA devices, make one that no other
    training job holds the current device for the block, and hold it; yields its index
    (None where nothing is chosen: another device setting, no CUDA, or one GPU).

    Each GPU has a lock file named by its UUID in ``folder`` (default
    :func:`lock_folder`), taken with a non-blocking exclusive ``flock``, which the
    kernel releases when the job ends, however it ends. So N training jobs started at
    once in an allocation of N GPUs (Snakemake's ``--resources gpu=N``) train on N
    different devices. Where every GPU is held (more jobs than GPUs), the job shares
    one, chosen by its process id, and says so; ``cuda`` and ``cuda:N`` are used as
    given."""
    if name != "auto" or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        yield None
        return
    count = torch.cuda.device_count()
    folder = lock_folder() if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    keys = [str(torch.cuda.get_device_properties(i).uuid) for i in range(count)]
    index, held = first_free(keys, folder, log)
    if held is None:
        index = os.getpid() % count
        log(f"device: every one of the {count} visible GPUs is held; sharing cuda:{index}")
    else:
        log(
            f"device: cuda:{index} ({torch.cuda.get_device_name(index)}), free among the "
            f"{count} visible GPUs (held through {held.name})"
        )
    torch.cuda.set_device(index)
    try:
        yield index
    finally:
        if held is not None:
            held.close()  # releases the lock


def first_free(keys: list[str], folder: Path, log: Callable[[str], None]) -> tuple:
    """(index, open lock file) of the first device in ``keys`` whose lock file in
    ``folder`` this process could lock; (None, None) when every one is held, or when
    the folder's file system cannot lock (said in a log line)."""
    for index, key in enumerate(keys):
        handle = open(folder / f"gpu-{key}.lock", "a")  # noqa: SIM115 - held past return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        except OSError as err:
            handle.close()
            log(f"device: GPU lock files in {folder} cannot be locked ({err})")
            return None, None
        return index, handle
    return None, None
