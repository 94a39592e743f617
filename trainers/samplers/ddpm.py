"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2; docs/math.md §8)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..schedules import DDPMSchedule, VARIANCES, check_variance, posterior_mean_coefs, spaced_timesteps
from ..schema import option
from ..score_models import Query, ScoreModel
from .base import StepOutput, noise
from .levels import (clip_option, n_timesteps_option, nfe_option, sigma_max_option, sigma_min_option, step_count,
                     steps_option, vp_schedule)
from .registry import register_sampler
from .timesteps import TimestepSampler

VARIANCE_TEXT = {"beta": "σ² = β", "beta_tilde": "σ² = β̃"}


@register_sampler
class DDPMSampler(TimestepSampler):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) over the timesteps τ (0-based t):
    with β = 1 − ᾱ_t/ᾱ_{t'} (= β_t for consecutive steps),
    x_{t'} = (x_t − β/√(1−ᾱ_t) ε(x_t, t))/√(1−β) + σ z, σ² = β ("beta") or β̃ = (1−ᾱ_{t'})/(1−ᾱ_t) β
    ("beta_tilde"), z = 0 at the last step. With clip_denoised, x̂₀ is clipped to [−c, c] and the
    posterior mean μ̃(x_t, x̂₀) used instead (as the reference image code does). On a subsequence of
    timesteps it is the respaced chain of Nichol & Dhariwal 2021."""
    name = "ddpm"
    title = "DDPM"
    convention = "x_{t'} = (x_t − β/√(1−ᾱ_t) ε)/√(1−β) + σ z"
    description = "DDPM's ancestral sampler (respaced when given fewer steps than timesteps)"
    hint = "The schedule's steps are fixed: check the model (NaN weights?) or use more timesteps."

    @dataclass
    class Options:
        steps: int | None = steps_option(None, "Steps", "Timesteps visited (default: all of the schedule's T; "
                                         "fewer: the respaced chain of Nichol & Dhariwal).",
                                         gui=200, unset="all")
        nfe: int | None = nfe_option()
        sigma_max: float | None = sigma_max_option()
        sigma_min: float | None = sigma_min_option()
        variance: str = option("beta", "Variance", "Reverse-step variance: β or β̃ = (1−ᾱ_{t'})/(1−ᾱ_t) β; "
                               "x_{t'} = (x_t − β/√(1−ᾱ_t) ε)/√(1−β) + σ z, z = 0 at the last step.",
                               choices=[(v, VARIANCE_TEXT[v]) for v in VARIANCES])
        clip_denoised: float | None = clip_option()
        n_timesteps: int = n_timesteps_option()

    @classmethod
    def from_options(cls, model, o):
        sched = vp_schedule(model, o)
        n = step_count(o, lambda nfe: nfe, sched.T)
        return cls(model, sched, o.variance, o.clip_denoised, spaced_timesteps(sched.T, n))

    def __init__(self, model: ScoreModel, schedule: DDPMSchedule, variance: str = "beta",
                 clip_denoised: float | None = None, timesteps=None):
        check_variance(variance)
        super().__init__(model, schedule, timesteps, clip_denoised)
        self.variance = variance
        self._beta = 1 - self._ab / self._ab_next
        self._var = self._beta if variance == "beta" else (1 - self._ab_next) / (1 - self._ab) * self._beta
        self._betaf, self._varf = self._beta.tolist(), self._var.tolist()
        self._c0f, self._ctf = (c.tolist() for c in posterior_mean_coefs(self._beta, self._ab, self._ab_next))

    def plan(self, x, k, generator=None):
        eps = yield Query.eps(x, self.timesteps[k], self.schedule)
        ab, beta = self._abf[k], self._betaf[k]
        x0 = self._x0(x, eps, k)
        if self.clip is not None:
            mean = self._c0f[k] * x0 + self._ctf[k] * x          # μ̃(x_t, x̂₀)
        else:
            mean = (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(1 - beta)
        x = mean + math.sqrt(self._varf[k]) * noise(x, generator) if k < self.n_steps - 1 else mean
        self.check(x, k)
        return StepOutput(x, x0, self.label(k))
