"""The training device (scembed.vae.device): `auto`, `cpu`, and CUDA where there is none."""

import pytest
import torch

from scembed.vae.device import resolve_device


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
