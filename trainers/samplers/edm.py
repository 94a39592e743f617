"""The EDM stochastic sampler (Karras et al. 2022, Alg. 2; docs/math.md §13): churn, then a Heun step."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..schema import option
from ..score_models import Query
from .base import StepOutput, noise
from .levels import clip_option, n_timesteps_option, nfe_option, sigma_max_option, sigma_min_option, step_count, steps_option
from .multistep import GridSolver, denoised, grid_option, rho_option, solver_levels
from .registry import register_sampler


@register_sampler
class EDMSampler(GridSolver):
    """Karras et al. 2022, Alg. 2, on the grid σ_0 > … > σ_{N−1} > σ_N = 0 (N steps): at σ_i ∈ [S_tmin,
    S_tmax] raise σ to σ̂ = σ_i(1 + γ), γ = min(S_churn/N, √2 − 1), adding √(σ̂² − σ_i²) S_noise z;
    then Heun from σ̂ to σ_{i+1}: d = (y − D(y, σ̂))/σ̂, y' = y + (σ_{i+1} − σ̂) d, and unless σ_{i+1} = 0
    the average with d' = (y' − D(y', σ_{i+1}))/σ_{i+1}. 2 evaluations per step, 1 on the step to 0.
    S_churn = 0 is the deterministic Heun of Alg. 1 (the PF-ODE sampler's "heun")."""
    name = "edm"
    title = "EDM (Heun + churn)"
    convention = "σ̂ = σ(1+γ), y += √(σ̂²−σ²) S_noise z, then Heun σ̂ → σ'"
    description = "EDM stochastic sampler: Heun steps with noise churn (S_churn = 0: deterministic)"

    @dataclass
    class Options:
        steps: int = steps_option(18, "Steps", "Number of σ levels N (then a last step to σ = 0); 2 evaluations "
                                  "per step, 1 on the last.", gui=18)
        nfe: int | None = nfe_option()
        sigma_max: float | None = sigma_max_option()
        sigma_min: float | None = sigma_min_option()
        grid: str = grid_option()
        rho: float = rho_option()
        s_churn: float = option(40.0, "S_churn", "Noise churn: γ = min(S_churn/N, √2 − 1) per step (0: the "
                                "deterministic Heun sampler; 40 in the paper's ImageNet-64 setting).",
                                lo=0.0, hi=1000.0, step=1.0, decimals=1)
        s_tmin: float = option(0.05, "S_tmin", "Churn only at σ ≥ S_tmin (paper: 0.05).",
                               lo=0.0, hi=1e4, step=0.01, decimals=3)
        s_tmax: float = option(50.0, "S_tmax", "Churn only at σ ≤ S_tmax (paper: 50).",
                               lo=0.0, hi=1e6, step=1.0, decimals=1)
        s_noise: float = option(1.003, "S_noise", "Scale of the churn noise (paper: 1.003, a little above 1 to "
                                "offset the denoiser's loss of detail).", lo=0.0, hi=2.0, step=0.001, decimals=3)
        clip_denoised: float | None = clip_option()
        n_timesteps: int = n_timesteps_option()

    @classmethod
    def from_options(cls, model, o):
        n = step_count(o, lambda nfe: (nfe + 1) // 2)
        return cls(model, solver_levels(model, o, n), o.s_churn, o.s_tmin, o.s_tmax, o.s_noise, o.clip_denoised)

    @classmethod
    def deterministic(cls, o):
        return not o.s_churn

    @classmethod
    def title_for(cls, o):
        return f"EDM (S_churn={o.s_churn:g})"

    def __init__(self, model, sigmas, s_churn: float = 40.0, s_tmin: float = 0.05, s_tmax: float = 50.0,
                 s_noise: float = 1.003, clip_denoised: float | None = None):
        super().__init__(model, sigmas, clip_denoised)
        if float(self.sigmas[-1]) != 0:
            raise ValueError("the EDM sampler's grid ends at σ = 0")
        self.s_churn, self.s_tmin, self.s_tmax, self.s_noise = float(s_churn), float(s_tmin), float(s_tmax), float(s_noise)
        gamma = min(self.s_churn / self.n_steps, math.sqrt(2) - 1)
        self._hat = [s * (1 + gamma) if gamma > 0 and self.s_tmin <= s <= self.s_tmax else s for s in self._sigf[:-1]]
        self.title = f"EDM (S_churn={self.s_churn:g})"

    @property
    def nfe(self):
        return 2 * self.n_steps - 1

    def sigmas_used(self):
        return torch.tensor(sorted(set(self._sigf[:-1]) | set(self._hat), reverse=True))

    def plan(self, x, k, generator=None):
        s0, s_hat, s1 = self._sigf[k], self._hat[k], self._sigf[k + 1]
        if s_hat > s0:
            x = x + math.sqrt(s_hat * s_hat - s0 * s0) * self.s_noise * noise(x, generator)
        D = denoised(x, s_hat, (yield Query.score(x, s_hat)), self.clip)
        d = (x - D) / s_hat
        x_new = x + (s1 - s_hat) * d
        if s1 > 0:
            D1 = denoised(x_new, s1, (yield Query.score(x_new, s1)), self.clip)
            x_new = x + (s1 - s_hat) * 0.5 * (d + (x_new - D1) / s1)
        self.check(x_new, k)
        return StepOutput(x_new, D, self.label(k))
