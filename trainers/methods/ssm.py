"""Sliced score matching, Song et al. 2019 (docs/math.md §2)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schema import option
from .base import Method, randn_like, register_method, sum_dims


def ssm_loss(model, x: torch.Tensor, generator: torch.Generator | None = None,
             projection: str = "rademacher", variance_reduced: bool = True) -> torch.Tensor:
    """E_v E_p[vᵀ∇ₓs v + ½‖s‖²] with one random projection v per example; vᵀ∇ₓs v = ∇ₓ(vᵀs)·v costs
    one extra backward pass (Hutchinson).

    `variance_reduced=True` is that paper's SSM-VR (the ½‖s‖² term taken in closed form); False is the
    plain sliced objective with ½(vᵀs)². Both have the same expectation since E[vvᵀ] = I for Rademacher
    and Gaussian v. (the paper's naming of the two forms is used here.)
    """
    x = x.detach().requires_grad_(True)
    s = model(x)
    if projection == "rademacher":
        v = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
    elif projection == "gaussian":
        v = randn_like(x, generator)
    else:
        raise ValueError(f"projection must be rademacher or gaussian, got {projection!r}")
    vs = sum_dims(v * s)
    (g,) = torch.autograd.grad(vs.sum(), x, create_graph=True)
    quad = sum_dims(g * v)
    norm_term = 0.5 * sum_dims(s**2) if variance_reduced else 0.5 * vs**2
    return (norm_term + quad).mean()


@register_method
class SSM(Method):
    name = "ssm"
    title = "Sliced score matching"
    short = "sliced SM"
    tip = "ssm: sliced score matching E[½‖s‖² + vᵀ∇s v], v Rademacher (variance-reduced form)."

    @dataclass
    class Params:
        ssm_projection: str = option(
            "rademacher", "Projections v", "Sliced score matching: the distribution of the projections v.",
            choices=("rademacher", "gaussian"))
        ssm_variance_reduced: bool = option(
            True, "Variance reduction (SSM-VR)",
            "Sliced score matching with the ½‖s‖² term in closed form (SSM-VR); off: the plain sliced "
            "objective with ½(vᵀs)² (--no-ssm-vr). Both have the same expectation.", flag="--ssm-vr")

    def loss(self, net, x, generator=None):
        p = self.params
        return ssm_loss(net, x, generator, p.ssm_projection, p.ssm_variance_reduced)
