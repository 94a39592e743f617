"""Annealed Langevin dynamics, NCSN's sampler (Song & Ermon 2019, Algorithm 1; docs/math.md §4)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schedules import sigma_grid
from ..schema import option
from ..score_models import Query, ScoreModel
from .base import Sampler, StepOutput, noise
from .levels import nfe_option, sigma_max_option, sigma_min_option, sigma_range, step_count, steps_option
from .registry import register_sampler


@register_sampler
class AnnealedLangevinSampler(Sampler):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1), α convention:
    for each level i, αᵢ = ε σᵢ²/σ_L², repeated T = steps_per_level times: y ← y + (αᵢ/2) s(y, σᵢ) + √αᵢ z.
    With final_denoise (NCSNv2, off by default) one extra step y ← y + σ_L² s(y, σ_L) ends the chain."""
    name = "annealed"
    title = "Annealed Langevin"
    convention = "αᵢ = ε σᵢ²/σ_L²; y ← y + αᵢ/2 s(y, σᵢ) + √αᵢ z"
    description = "NCSN's sampler: T Langevin steps at each of L geometric noise levels"

    @dataclass
    class Options:
        steps: int = steps_option(100, "Steps T", "T: Langevin steps per noise level (the chain has L·T steps).",
                                  gui=20)
        nfe: int | None = nfe_option()
        eps: float | None = option(None, "ε", "Annealed Langevin ε: at level i the step is αᵢ = ε σᵢ²/σ_L², "
                                   "y ← y + (αᵢ/2) s(y, σᵢ) + √αᵢ z (Song & Ermon 2019, Alg. 1; "
                                   "default 0.1 σ_L²).", lo=0.0, hi=1e3, step=1e-3, decimals=6, unset="default")
        n_levels: int = option(10, "Levels L", "L: number of geometric noise levels σ₁ > … > σ_L.",
                               lo=1, hi=10000, step=1)
        sigma_max: float | None = sigma_max_option()
        sigma_min: float | None = sigma_min_option()
        final_denoise: bool = option(False, "Final denoise", "NCSNv2's optional last step y ← y + σ_L² s(y, σ_L) "
                                     "(off in the original NCSN).")

    @classmethod
    def from_options(cls, model, o):
        hi, lo = sigma_range(model, o)
        L = min(o.n_levels, o.nfe) if o.nfe else o.n_levels
        sigmas = sigma_grid("geometric", hi, lo, max(1, L))
        T = step_count(o, lambda nfe: (nfe - int(o.final_denoise)) // len(sigmas))
        return cls(model, sigmas, o.eps or 0.1 * lo**2, T, o.final_denoise)

    def __init__(self, model: ScoreModel, sigmas, eps: float = 2e-5, steps_per_level: int = 100,
                 final_denoise: bool = False):
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float32).flatten()
        if len(self.sigmas) < 1 or not eps > 0 or steps_per_level < 1:
            raise ValueError("annealed Langevin needs ≥ 1 noise level, eps > 0 and steps_per_level ≥ 1")
        self.model, self.eps, self.final_denoise = model, float(eps), final_denoise
        self.steps_per_level = int(steps_per_level)
        self.n_steps = len(self.sigmas) * self.steps_per_level + int(final_denoise)
        self.hint = f"Try a smaller ε than {self.eps:g} (the step at level i is αᵢ = ε σᵢ²/σ_L²)."
        # per-level σᵢ and αᵢ as Python floats, so a step reads nothing back from a tensor
        self._sigf = self.sigmas.tolist()
        self._alphaf = [self.alpha(i) for i in range(len(self.sigmas))]

    @property
    def prior_std(self):
        return float(self.sigmas[0])

    def sigmas_used(self):
        return self.sigmas

    def step_sigma(self, k):
        return self._sigf[self.level(k)]

    def level(self, k: int) -> int:
        return min(k // self.steps_per_level, len(self.sigmas) - 1)

    def alpha(self, i: int) -> float:
        return self.eps * float(self.sigmas[i] ** 2 / self.sigmas[-1] ** 2)

    def label(self, k):
        if self.final_denoise and k == self.n_steps - 1:
            return "final denoising step"
        i, T = self.level(k), self.steps_per_level
        return f"level {i + 1}/{len(self.sigmas)} (σ = {self._sigf[i]:.3g}), step {k % T + 1}/{T}"

    def plan(self, x, k, generator=None):
        if self.final_denoise and k == self.n_steps - 1:
            sigma = self._sigf[-1]
            x = x + sigma**2 * (yield Query.score(x, sigma))
            self.check(x, k)
            return StepOutput(x, x, self.label(k))
        i = self.level(k)
        sigma = self._sigf[i]
        a = self._alphaf[i]
        s = yield Query.score(x, sigma)
        denoised = x + sigma**2 * s                      # Tweedie's estimate of the clean sample
        x = x + 0.5 * a * s + a**0.5 * noise(x, generator)
        self.check(x, k)
        return StepOutput(x, denoised, self.label(k))
