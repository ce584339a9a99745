"""Adam over one flat buffer of all parameters: one fused kernel per step."""

import torch


def flat_adam(
    model: torch.nn.Module, lr: float, eps: float = 1e-8, weight_decay: float = 0.0
) -> torch.optim.Adam:
    """Adam over one flat buffer that holds every parameter of ``model``.

    The parameters become views of one buffer and their gradients views of another, so
    that fused Adam updates all of them in one kernel per step instead of one per
    parameter tensor (about half the optimiser's time per step on a CPU). The module is
    unchanged to its users: ``state_dict`` and ``load_state_dict`` read and write the
    views. Zero the gradients with ``zero_grad(set_to_none=False)``, which keeps the
    views, so that backward accumulates into them. ``eps`` and ``weight_decay`` are
    torch's Adam's (L2 penalty added to the gradient; it also decays BatchNorm's affine
    parameters and the per-gene parameters, as scVI's Adam does).
    """
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    flat_grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        p.data = flat[offset : offset + p.numel()].view_as(p)
        p.grad = flat_grad[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    flat_param = torch.nn.Parameter(flat)  # the same storage as the views
    flat_param.grad = flat_grad
    fused = flat.device.type in ("cpu", "cuda")
    return torch.optim.Adam([flat_param], lr=lr, eps=eps, weight_decay=weight_decay, fused=fused)
