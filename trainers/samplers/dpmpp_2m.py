"""DPM-Solver++ 2M (Lu et al. 2022; docs/math.md §13): multistep, data prediction, in log-SNR."""
from __future__ import annotations

from dataclasses import dataclass

from ..score_models import Query
from .base import StepOutput
from .levels import clip_option, n_timesteps_option, step_count
from .multistep import (GridOptions, GridSolver, denoised, dpmpp_update, final_option, low_order_at_end,
                        lower_order_final_option, solver_levels)
from .registry import register_sampler


@register_sampler
class DPMSolverPP2M(GridSolver):
    """DPM-Solver++ 2M in VE coordinates (multistep.dpmpp_update): y' = (σ'/σ) y − (e^{−h} − 1) D̃,
    h = log(σ/σ'), D̃ = (1 + 1/(2r)) D − D₋₁/(2r), r = h₋₁/h; the first step (and a chain restarted
    mid-way) is first order, the step to σ = 0 returns D. One evaluation per step. A chain's past D's
    stay on the sampler (`memory`), so the sampler steps any number of chains one step at a time."""
    name = "dpmpp-2m"
    title = "DPM-Solver++ 2M"
    solver_order = 2
    convention = "y' = (σ'/σ) y − (e^{−h}−1) D̃,  D̃ = (1+1/2r) D − D₋₁/2r"
    description = "DPM-Solver++ 2M: second-order multistep in log-SNR; deterministic, few steps"

    @dataclass
    class Options(GridOptions):                   # steps, nfe, sigma_max, sigma_min, grid, rho, then:
        lower_order_final: bool = lower_order_final_option()
        final: str = final_option()
        clip_denoised: float | None = clip_option()
        n_timesteps: int = n_timesteps_option()

    @classmethod
    def from_options(cls, model, o):
        n = step_count(o, lambda nfe: nfe)
        return cls(model, solver_levels(model, o, n), o.lower_order_final, o.clip_denoised)

    @classmethod
    def deterministic(cls, o):
        return True

    def __init__(self, model, sigmas, lower_order_final: bool = True, clip_denoised: float | None = None):
        super().__init__(model, sigmas, clip_denoised)
        self.lower_order_final = bool(lower_order_final)

    def order_at(self, k: int, n_past: int) -> int:
        """The order of step k with n_past earlier D's remembered: warm-up, lower_order_final, 1 to σ = 0."""
        order = min(self.solver_order, n_past + 1)
        if self._sigf[k + 1] == 0:
            return 1
        return low_order_at_end(order, k, self.n_steps, self.lower_order_final)

    def plan(self, x, k, generator=None):
        s0, s1 = self._sigf[k], self._sigf[k + 1]
        past = self.memory.take(x, k) or []
        D = denoised(x, s0, (yield Query.score(x, s0)), self.clip)
        order = self.order_at(k, len(past))
        x_new = dpmpp_update(x, s0, s1, D, past, order)
        self.check(x_new, k)
        if k + 1 < self.n_steps:
            self.memory.put(x_new, k + 1, (past + [(s0, D)])[-(self.solver_order - 1):])
        return StepOutput(x_new, D, self.label(k, order))
