"""The probability-flow ODE, Euler or Heun (Song et al. 2021; Karras et al. 2022, Alg. 1; docs/math.md §8)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schedules import GRIDS, sigma_grid
from ..schema import option
from ..score_models import Query, ScoreModel
from .base import StepOutput
from .levels import nfe_option, sigma_max_option, sigma_min_option, sigma_range, steps_option
from .multistep import rho_option
from .ode import ODESampler, solver_option
from .registry import register_sampler

SOLVERS = ("heun", "euler")
GRID_TEXT = {"karras": "Karras (ρ)", "geometric": "geometric"}


@register_sampler
class PFODESampler(ODESampler):
    """The probability-flow ODE in VE coordinates with σ as time, dy/dσ = −σ s(y, σ) = (y − D(y, σ))/σ,
    over the grid σ_0, σ_1, … (decreasing to sample; increasing runs it backwards, data → noise).
    "euler": y ← y + (σ' − σ) d(y, σ). "heun" (Karras et al. 2022, Alg. 1): an Euler trial then the
    average of both slopes, except on a step to σ' = 0, which is Euler (there y' = D(y, σ)). So Heun
    costs 2 evaluations per step but 1 on a step to 0."""
    name = "pf-ode"
    title = "PF-ODE"
    convention = "dy/dσ = −σ s(y, σ)  (Euler / Heun)"
    description = "Probability-flow ODE: deterministic, a flow from noise to data"
    hint = "The ODE steps are too coarse for this model: use more steps (or Heun)."
    solvers = SOLVERS

    @dataclass
    class Options:
        steps: int = steps_option(50, "Steps", "Number of σ levels of the ODE grid (then a last step to σ = 0).",
                                  gui=50)
        nfe: int | None = nfe_option()
        sigma_max: float | None = sigma_max_option()
        sigma_min: float | None = sigma_min_option()
        solver: str = solver_option(SOLVERS, "PF-ODE solver: Euler y ← y + (σ'−σ) d, or Heun (Karras "
                                    "et al. 2022, Alg. 1): Euler trial, then the average slope; the step to σ = 0 "
                                    "is Euler.")
        grid: str = option("karras", "σ grid", "σ levels of the ODE: Karras et al.'s σᵢ = (σ_max^{1/ρ} + "
                           "i/(n−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, or geometric.",
                           choices=[(g, GRID_TEXT.get(g, g)) for g in GRIDS])
        rho: float = rho_option()

    @classmethod
    def from_options(cls, model, o):
        hi, lo = sigma_range(model, o)
        n = cls.steps_from(o)                   # n levels + the final 0 = n steps
        grid = torch.cat([sigma_grid(o.grid, hi, lo, n, o.rho), torch.zeros(1)])
        return cls(model, grid, o.solver)

    def __init__(self, model: ScoreModel, sigmas, solver: str = "heun"):
        self.set_solver(solver)
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if len(self.sigmas) < 2 or bool((self.sigmas < 0).any()):
            raise ValueError("the PF-ODE needs a grid of at least two σ ≥ 0")
        self.model, self.n_steps = model, len(self.sigmas) - 1
        self._sigf = self.sigmas.tolist()          # the grid as Python floats: a step reads no tensor

    @property
    def prior_std(self):
        return float(self.sigmas[0])

    @property
    def nfe(self):
        two = self.solver == "heun"
        return sum(1 + int(two and float(self.sigmas[k + 1]) > 0) for k in range(self.n_steps))

    def sigmas_used(self):
        return self.sigmas[self.sigmas > 0].float()

    def step_sigma(self, k):
        return self._sigf[k]

    def label(self, k):
        return f"σ {self._sigf[k]:.3g} → {self._sigf[k + 1]:.3g} (step {k + 1}/{self.n_steps})"

    def plan(self, x, k, generator=None):
        s0, s1 = self._sigf[k], self._sigf[k + 1]
        d = -s0 * (yield Query.score(x, s0))
        x_new = x + (s1 - s0) * d
        if self.solver == "heun" and s1 > 0:
            d1 = -s1 * (yield Query.score(x_new, s1))
            x_new = x + (s1 - s0) * 0.5 * (d + d1)
        self.check(x_new, k)
        return StepOutput(x_new, x - s0 * d, self.label(k))
