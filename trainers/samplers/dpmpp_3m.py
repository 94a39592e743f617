"""DPM-Solver++ 3M (Lu et al. 2022; docs/math.md §13): third-order multistep, data prediction."""
from __future__ import annotations

from dataclasses import dataclass

from .dpmpp_2m import DPMSolverPP2M
from .registry import register_sampler


@register_sampler
class DPMSolverPP3M(DPMSolverPP2M):
    """DPM-Solver++ 3M: as 2M (dpmpp_2m.py) with the third-order multistep update once two past D's
    are known (multistep.dpmpp_update); warm-up orders 1, 2, then 3; lower_order_final takes the
    last two steps at orders 1 and 2 with fewer than 15 steps; the step to σ = 0 returns D."""
    name = "dpmpp-3m"
    title = "DPM-Solver++ 3M"
    solver_order = 3
    convention = "y' = (σ'/σ) y − (e^{−h}−1) D + (φ) D₁ − (ψ) D₂  (3rd-order multistep)"
    description = "DPM-Solver++ 3M: third-order multistep in log-SNR; deterministic, few steps"

    @dataclass
    class Options(DPMSolverPP2M.Options):
        pass
