"""Euler ancestral (k-diffusion's sample_euler_ancestral; diffusers' EulerAncestralDiscreteScheduler)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..score_models import Query
from .base import StepOutput, noise
from .levels import (EtaNoise, clip_option, eta_option, n_timesteps_option, nfe_option, sigma_max_option,
                     sigma_min_option, step_count, steps_option)
from .multistep import GridSolver, denoised, grid_option, rho_option, solver_levels
from .registry import register_sampler


@register_sampler
class EulerAncestralSampler(EtaNoise, GridSolver):
    """Each step from σ to σ' splits σ'² = σ_down² + σ_up², σ_up = min(σ', η σ'√(σ² − σ'²)/σ): an Euler
    step of the PF-ODE to σ_down, y ← y + (σ_down − σ)(y − D(y, σ))/σ, then fresh noise σ_up z (the DDPM
    ancestral step in VE form; η = 0 is the Euler PF-ODE). The step to σ' = 0 returns D. One
    evaluation per step."""
    name = "euler-a"
    title = "Euler ancestral"
    convention = "y ← y + (σ_down − σ)(y − D)/σ + σ_up z"
    description = "Euler ancestral: an Euler step down to σ_down, then noise σ_up back up to σ'"

    @dataclass
    class Options:
        steps: int = steps_option(50, "Steps", "Number of σ levels (one evaluation each; then a last step to "
                                  "σ = 0).", gui=50)
        nfe: int | None = nfe_option()
        sigma_max: float | None = sigma_max_option()
        sigma_min: float | None = sigma_min_option()
        grid: str = grid_option()
        rho: float = rho_option()
        eta: float = eta_option(1.0, "Ancestral noise: σ_up = η σ'√(σ² − σ'²)/σ (1: the ancestral step, 0: "
                                "the Euler PF-ODE).")
        clip_denoised: float | None = clip_option()
        n_timesteps: int = n_timesteps_option()

    @classmethod
    def from_options(cls, model, o):
        n = step_count(o, lambda nfe: nfe)
        return cls(model, solver_levels(model, o, n), o.eta, o.clip_denoised)

    def __init__(self, model, sigmas, eta: float = 1.0, clip_denoised: float | None = None):
        super().__init__(model, sigmas, clip_denoised)
        self.eta = self.check_eta(eta)

    def plan(self, x, k, generator=None):
        s0, s1 = self._sigf[k], self._sigf[k + 1]
        D = denoised(x, s0, (yield Query.score(x, s0)), self.clip)
        up = min(s1, self.eta * math.sqrt(s1 * s1 * (s0 * s0 - s1 * s1) / (s0 * s0)))
        down = math.sqrt(s1 * s1 - up * up)
        x_new = x + (down - s0) * (x - D) / s0
        if up > 0:
            x_new = x_new + up * noise(x, generator)
        self.check(x_new, k)
        return StepOutput(x_new, D, self.label(k))
