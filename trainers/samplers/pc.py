"""Predictor–corrector sampling (Song et al. 2021, Alg. 2, VE; docs/math.md §8)."""
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
class PCSampler(Sampler):
    """Predictor–corrector (Song et al. 2021, Alg. 2, VE) over decreasing levels σ_0 … σ_{N−1}, σ_N = 0.
    Step i: predictor (reverse diffusion) y ← y + (σᵢ² − σᵢ₊₁²) s(y, σᵢ) + √(σᵢ² − σᵢ₊₁²) z
    (no noise on the last step, which lands on Tweedie's D(y, σ_{N−1})); then, unless last,
    M = corrector_steps Langevin steps at σᵢ₊₁: y ← y + a s + √(2a) z with a = 2 (r ‖z‖/‖s‖)² (norms
    per particle, averaged over the batch; r the signal-to-noise ratio). Evaluations: N + M (N − 1)."""
    name = "pc"
    title = "Predictor–corrector"
    convention = "reverse diffusion + M Langevin steps at SNR r"
    description = "Song et al.'s predictor–corrector: each step corrected by Langevin"
    hint = "Try a smaller signal-to-noise ratio r (the corrector's step grows as r²)."

    @dataclass
    class Options:
        steps: int = steps_option(100, "Steps", "Number of predictor steps (σ levels).", gui=100)
        nfe: int | None = nfe_option()
        sigma_max: float | None = sigma_max_option()
        sigma_min: float | None = sigma_min_option()
        snr: float = option(0.16, "SNR r", "Predictor–corrector signal-to-noise ratio r: the corrector's step "
                            "is a = 2 (r ‖z‖/‖s‖)².", lo=0.001, hi=10.0, step=0.01, decimals=3)
        corrector_steps: int = option(1, "Corrector M", "M Langevin corrector steps after each predictor step.",
                                      lo=0, hi=1000, step=1)

    @classmethod
    def from_options(cls, model, o):
        hi, lo = sigma_range(model, o)
        M = o.corrector_steps
        n = step_count(o, lambda nfe: (nfe + M) // (M + 1))
        return cls(model, sigma_grid("geometric", hi, lo, n), o.snr, M)

    def __init__(self, model: ScoreModel, sigmas, snr: float = 0.16, corrector_steps: int = 1):
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float32).flatten()
        if len(self.sigmas) < 1 or not snr > 0 or corrector_steps < 0:
            raise ValueError("predictor–corrector needs ≥ 1 level, snr > 0 and corrector_steps ≥ 0")
        self.model, self.snr, self.corrector_steps = model, float(snr), int(corrector_steps)
        self.n_steps = len(self.sigmas)

    @property
    def prior_std(self):
        return float(self.sigmas[0])

    @property
    def nfe(self):
        return self.n_steps + self.corrector_steps * (self.n_steps - 1)

    def sigmas_used(self):
        return self.sigmas

    def step_sigma(self, k):
        return float(self.sigmas[k])

    def label(self, k):
        nxt = float(self.sigmas[k + 1]) if k + 1 < self.n_steps else 0.0
        M = self.corrector_steps
        return f"σ {float(self.sigmas[k]):.3g} → {nxt:.3g}" + (f" + {M} corrector" if k + 1 < self.n_steps and M else "")

    def plan(self, x, k, generator=None):
        s0 = float(self.sigmas[k])
        last = k == self.n_steps - 1
        s1 = 0.0 if last else float(self.sigmas[k + 1])
        score = yield Query.score(x, s0)
        var = s0**2 - s1**2
        denoised = x + s0**2 * score
        x = x + var * score
        if not last:
            x = x + math.sqrt(var) * noise(x, generator)
            for _ in range(self.corrector_steps):
                score = yield Query.score(x, s1)
                z = noise(x, generator)
                s_norm = float(score.flatten(1).norm(dim=1).mean())
                # a zero score (e.g. an untrained net with a zero output layer) gives no corrector step
                a = 2 * (self.snr * float(z.flatten(1).norm(dim=1).mean()) / s_norm) ** 2 if s_norm > 0 else 0.0
                x = x + a * score + math.sqrt(2 * a) * z
        self.check(x, k)
        return StepOutput(x, denoised, self.label(k))
