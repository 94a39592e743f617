"""Denoising score matching at one σ, Vincent 2011 (docs/math.md §4)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schema import option
from .base import Level, Method, randn_like, register_method, sum_dims


def dsm_loss(model, x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x̃ = x + σz, E[½‖s_θ(x̃) + (x̃−x)/σ²‖²]. Its minimiser is the score of p_σ = p * N(0, σ²I).
    A σ-conditioned model is called with σ."""
    z = randn_like(x, generator)
    x_noisy = x + sigma * z
    s = model(x_noisy, torch.full((len(x),), float(sigma), device=x.device)) if getattr(model, "cond", None) == "sigma" \
        else model(x_noisy)
    return (0.5 * sum_dims((s + z / sigma) ** 2)).mean()


@register_method
class DSM(Method):
    name = "dsm"
    title = "Denoising score matching (one σ)"
    short = "denoising SM (one σ)"
    tip = "dsm: denoising score matching at one σ; fits the score of p_σ = p * N(0, σ²I)."

    @dataclass
    class Params:
        sigma: float = option(0.1, "DSM σ", "DSM noise std σ: the model learns ∇log p_σ, p_σ = p * N(0, σ²I).",
                              lo=0.001, hi=20.0, step=0.05, decimals=3)

    def loss(self, net, x, generator=None):
        return dsm_loss(net, x, self.params.sigma, generator)

    def fixed_level(self) -> float:
        return float(self.params.sigma)

    def levels(self):
        return [Level(f"σ = {self.params.sigma:.3g} (DSM fits p_σ)", sigma=self.params.sigma)]

    def target_density(self, density, level):
        return density.noised(self.params.sigma)

    def divergence_advice(self) -> str:
        return f"raise {self._label('sigma')} (now {self.params.sigma:g})"
