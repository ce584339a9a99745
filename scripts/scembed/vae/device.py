"""Where the VAE trains: ``auto`` (CUDA when torch sees it), ``cpu`` or ``cuda[:N]``."""

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
