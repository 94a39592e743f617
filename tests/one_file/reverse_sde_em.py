"""Example: a sampler as one file (docs/adding.md). Dropped into trainers/samplers/, it appears in
the 2D command line (`sample --sampler reverse-sde --noise-scale r`), the image command line, the
Samplers-tab panel form and the lab, with no other edit.

Euler–Maruyama on the reverse VE SDE dy = −d[σ²] ∇log p_σ(y) + √(d[σ²]/dt) dw̄, on a decreasing
geometric grid σ_0 > … > σ_{N−1}, σ_N = 0:
    y ← y + (σᵢ² − σᵢ₊₁²) s(y, σᵢ) + r √(σᵢ² − σᵢ₊₁²) z,     r = noise_scale (1: the SDE),
the last step without noise (it lands on Tweedie's D(y, σ_{N−1}) = y + σ² s). With r = 1 this is the
predictor of "pc" with no corrector steps (Song et al. 2021, Alg. 2, VE): the same numbers for the
same generator. One evaluation per step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..schedules import sigma_grid
from ..schema import option
from ..score_models import Query, ScoreModel
from .base import Sampler, StepOutput, noise
from .levels import nfe_option, sigma_max_option, sigma_min_option, sigma_range, step_count, steps_option
from .registry import register_sampler


@register_sampler
class ReverseSDESampler(Sampler):
    name = "reverse-sde"
    title = "Reverse SDE (Euler–Maruyama)"
    convention = "y ← y + Δσ² s(y, σ) + r √Δσ² z"
    description = "Euler–Maruyama on the reverse VE SDE (pc without corrector); r scales the noise"
    hint = "Use more steps: the Euler–Maruyama steps are too coarse for this model."

    @dataclass
    class Options:
        steps: int = steps_option(100, "Steps", "Number of σ levels (Euler–Maruyama steps, the last to σ = 0).",
                                  gui=100)
        nfe: int | None = nfe_option()
        sigma_max: float | None = sigma_max_option()
        sigma_min: float | None = sigma_min_option()
        noise_scale: float = option(1.0, "Noise scale r", "Multiplies the injected noise √Δσ² z: 1 is the reverse "
                                    "SDE; below 1 a colder chain that crowds the modes.", lo=0.0, hi=2.0,
                                    step=0.05, decimals=2)

    @classmethod
    def from_options(cls, model, o):
        hi, lo = sigma_range(model, o)
        return cls(model, sigma_grid("geometric", hi, lo, step_count(o, lambda nfe: nfe)), o.noise_scale)

    @classmethod
    def title_for(cls, o):
        return cls.title if o.noise_scale == 1 else f"{cls.title}, r = {o.noise_scale:g}"

    def __init__(self, model: ScoreModel, sigmas, noise_scale: float = 1.0):
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float32).flatten()
        if len(self.sigmas) < 1 or not noise_scale >= 0:
            raise ValueError("the reverse SDE needs ≥ 1 level and noise_scale ≥ 0")
        self.model, self.noise_scale, self.n_steps = model, float(noise_scale), len(self.sigmas)

    @property
    def prior_std(self):
        return float(self.sigmas[0])

    def sigmas_used(self):
        return self.sigmas

    def step_sigma(self, k):
        return float(self.sigmas[k])

    def label(self, k):
        nxt = float(self.sigmas[k + 1]) if k + 1 < self.n_steps else 0.0
        return f"σ {float(self.sigmas[k]):.3g} → {nxt:.3g}"

    def plan(self, x, k, generator=None):
        s0 = float(self.sigmas[k])
        last = k == self.n_steps - 1
        s1 = 0.0 if last else float(self.sigmas[k + 1])
        score = yield Query.score(x, s0)
        var = s0**2 - s1**2
        denoised = x + s0**2 * score
        x = x + var * score
        if not last:
            x = x + math.sqrt(var) * self.noise_scale * noise(x, generator)
        self.check(x, k)
        return StepOutput(x, denoised, self.label(k))
