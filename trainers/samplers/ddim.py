"""DDIM (Song, Meng & Ermon 2021, eq. 12; docs/math.md §8)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..schedules import DDPMSchedule, spaced_timesteps
from ..score_models import Query, ScoreModel
from .base import StepOutput, noise
from .levels import (EtaNoise, clip_option, eta_option, n_timesteps_option, nfe_option, sigma_max_option,
                     sigma_min_option, step_count, steps_option, vp_schedule)
from .registry import register_sampler
from .timesteps import TimestepSampler


@register_sampler
class DDIMSampler(EtaNoise, TimestepSampler):
    """DDIM (Song, Meng & Ermon 2021, eq. 12) over the timesteps τ:
    x̂₀ = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t, σ_η² = η² (1−ᾱ_{t'})/(1−ᾱ_t) (1 − ᾱ_t/ᾱ_{t'}),
    x_{t'} = √ᾱ_{t'} x̂₀ + √(1−ᾱ_{t'}−σ_η²) ε + σ_η z. η = 0: deterministic; η = 1 over all
    timesteps: DDPM ancestral with σ² = β̃.

    With clip_denoised (images) x̂₀ is clipped to [−c, c] and ε re-derived from the clipped x̂₀,
    ε = (x_t − √ᾱ_t x̂₀)/√(1−ᾱ_t), as GLIDE does (diffusers' use_clipped_model_output): the step then
    moves towards the clipped x̂₀ consistently, and η = 1 stays DDPM ancestral with its clipped
    posterior mean. Keeping the unclipped ε instead breaks classifier-free guidance on images: the
    extrapolated ε no longer matches x̂₀ and the chain leaves the class (docs/math.md §15)."""
    name = "ddim"
    title = "DDIM"
    convention = "x_{t'} = √ᾱ' x̂₀ + √(1−ᾱ'−σ_η²) ε + σ_η z"
    description = "DDIM: few-step sampling; η = 0 deterministic, η = 1 DDPM-like"
    hint = "DDIM's steps are fixed by the schedule: check the model, or use more steps."

    @dataclass
    class Options:
        steps: int = steps_option(50, "Steps", "Timesteps visited, evenly spaced over the schedule.", gui=50)
        nfe: int | None = nfe_option()
        sigma_max: float | None = sigma_max_option()
        sigma_min: float | None = sigma_min_option()
        eta: float = eta_option(0.0, "DDIM η: σ_η² = η² (1−ᾱ')/(1−ᾱ) (1 − ᾱ/ᾱ'). η = 0 deterministic (flow "
                                "lines), η = 1 DDPM-like.")
        clip_denoised: float | None = clip_option()
        n_timesteps: int = n_timesteps_option()

    @classmethod
    def from_options(cls, model, o):
        sched = vp_schedule(model, o)
        n = step_count(o, lambda nfe: nfe)
        return cls(model, sched, spaced_timesteps(sched.T, n), o.eta, o.clip_denoised)

    def __init__(self, model: ScoreModel, schedule: DDPMSchedule, timesteps=None, eta: float = 0.0,
                 clip_denoised: float | None = None):
        self.eta = self.check_eta(eta)
        super().__init__(model, schedule, timesteps, clip_denoised)
        self._sig2 = eta**2 * (1 - self._ab_next) / (1 - self._ab) * (1 - self._ab / self._ab_next)
        self._sig2f = self._sig2.tolist()

    def plan(self, x, k, generator=None):
        eps = yield Query.eps(x, self.timesteps[k], self.schedule)
        ab_next, sig2 = self._ab_nextf[k], self._sig2f[k]
        x0 = self._x0(x, eps, k)
        if self.clip is not None:          # ε consistent with the clipped x̂₀ (class docstring)
            ab = self._abf[k]
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        x_new = math.sqrt(ab_next) * x0 + math.sqrt(max(1 - ab_next - sig2, 0.0)) * eps
        if sig2 > 0:
            x_new = x_new + math.sqrt(sig2) * noise(x, generator)
        self.check(x_new, k)
        return StepOutput(x_new, x0, self.label(k))
