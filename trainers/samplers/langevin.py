"""Unadjusted Langevin dynamics at one noise level (docs/math.md §3)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schema import option
from ..score_models import Query, ScoreModel
from .base import Sampler, StepOutput, noise
from .levels import nfe_option, step_count, steps_option
from .registry import register_sampler


@register_sampler
class LangevinSampler(Sampler):
    """Unadjusted Langevin dynamics at one noise level, ε convention: x ← x + ε s(x, σ) + √(2ε) z.
    σ defaults to the low end of the model's sampling range, `model.sigma_min` (σ_L of an NCSN, σ of
    the first DDPM timestep, the exact score's σ_min), so a network and the exact score built over the
    same range target the same p_σ."""
    name = "langevin"
    title = "Langevin"
    convention = "x ← x + ε s(x, σ_min) + √(2ε) z"
    description = "Plain Langevin at the least noisy level: right locally, wrong mode weights"
    default_init = "uniform"

    @dataclass
    class Options:
        steps: int = steps_option(1000, "Steps", "Number of Langevin steps.", gui=300)
        nfe: int | None = nfe_option()
        eps: float = option(0.01, "ε", "Langevin step ε: x ← x + ε s(x, σ_min) + √(2ε) z  (NCSN's α = 2ε).",
                            lo=1e-6, hi=1e3, step=1e-3, decimals=6)

    @classmethod
    def from_options(cls, model, o):
        return cls(model, o.eps, step_count(o, lambda nfe: nfe))

    def __init__(self, model: ScoreModel, eps: float, n_steps: int, sigma: float | None = None):
        if not eps > 0 or n_steps < 1:
            raise ValueError("Langevin needs eps > 0 and n_steps ≥ 1")
        self.model, self.eps, self.n_steps = model, float(eps), int(n_steps)
        self.sigma = float(model.sigma_min if sigma is None else sigma)
        self.hint = f"Try a smaller step size than ε = {self.eps:g}."

    def sigmas_used(self):
        return torch.tensor([self.sigma])

    def step_sigma(self, k):
        return self.sigma

    def plan(self, x, k, generator=None):
        s = yield Query.score(x, self.sigma)
        x = x + self.eps * s + (2 * self.eps) ** 0.5 * noise(x, generator)
        self.check(x, k)
        return StepOutput(x, None, self.label(k))
