"""Exact (implicit) score matching, Hyvärinen 2005 (docs/math.md §2)."""
from __future__ import annotations

import torch

from .base import Method, register_method


def esm_loss(model, x: torch.Tensor) -> torch.Tensor:
    """E[½‖s_θ(x)‖² + tr ∇ₓ s_θ(x)]. The trace costs one backward pass per dimension (fine in 2D)."""
    x = x.detach().requires_grad_(True)
    s = model(x).reshape(len(x), -1)
    flat = x.reshape(len(x), -1)
    trace = torch.zeros(len(x), device=x.device, dtype=x.dtype)
    for d in range(flat.shape[1]):
        (g,) = torch.autograd.grad(s[:, d].sum(), x, create_graph=True)
        trace = trace + g.reshape(len(x), -1)[:, d]
    return (0.5 * (s**2).sum(1) + trace).mean()


@register_method
class ESM(Method):
    name = "esm"
    title = "Exact score matching"
    short = "exact SM"
    tip = "esm: exact score matching E[½‖s‖² + tr ∇s] (trace = 2 backward passes)."

    def loss(self, net, x, generator=None):
        return esm_loss(net, x)
