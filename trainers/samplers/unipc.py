"""UniPC (Zhao et al. 2023; docs/math.md §13): the unified predictor UniP and corrector UniC, B(h) = e^{−h} − 1
("bh2"), data prediction, in log-SNR."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..schema import option
from ..score_models import Query
from .base import StepOutput
from .levels import clip_option, n_timesteps_option, step_count
from .multistep import GridOptions, GridSolver, denoised, final_option, lower_order_final_option, solver_levels
from .registry import register_sampler


def _bh2(h: float, rks: list[float], order: int):
    """(hφ₁ = e^{−h} − 1, B(h), R, b) of UniPC-bh2 with data prediction (diffusers' UniPCMultistepScheduler):
    R[i] = rks^i, b[i] = hφ_{i+1}(−h) (i+1)!/B(h), i = 0 … order−1 (rks ends with 1)."""
    hh = -h
    h_phi_1 = math.expm1(hh)
    b_h = h_phi_1
    h_phi_k, fact = h_phi_1 / hh - 1, 1
    R, b = [], []
    for i in range(1, order + 1):
        R.append([r ** (i - 1) for r in rks])
        b.append(h_phi_k * fact / b_h)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1 / fact
    return h_phi_1, b_h, torch.tensor(R, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)


def _differences(past: list, s0: float, h: float, order: int):
    """(rks, D1s): r_i = (λ_i − λ₀)/h and (m_i − m₀)/r_i for the order − 1 D's before the newest of `past`."""
    m0 = past[-1][1]
    rks, d1s = [], []
    for i in range(1, order):
        si, mi = past[-(i + 1)]
        r = math.log(s0 / si) / h
        rks.append(r)
        d1s.append((mi - m0) / r)
    return rks + [1.0], d1s


def unip(x, s0: float, s1: float, past: list, order: int):
    """UniP-p from y at σ₀ (past[-1] = (σ₀, D(y, σ₀))) to σ₁."""
    m0 = past[-1][1]
    if s1 == 0:
        return m0
    h = math.log(s0 / s1)
    rks, d1s = _differences(past, s0, h, order)
    h_phi_1, b_h, R, b = _bh2(h, rks, order)
    out = (s1 / s0) * x - h_phi_1 * m0
    if d1s:
        rhos = [0.5] if order == 2 else torch.linalg.solve(R[:-1, :-1], b[:-1]).tolist()
        out = out - b_h * sum(r * d for r, d in zip(rhos, d1s))
    return out


def unic(last_x, x, m_t, s_prev: float, s_t: float, past: list, order: int):
    """UniC-p: the corrected y at σ_t from the last state `last_x` at σ_prev (past[-1] = (σ_prev, its D)),
    with m_t = D at the predicted y (the evaluation the next step makes anyway, reused: no extra NFE)."""
    m0 = past[-1][1]
    h = math.log(s_prev / s_t)
    rks, d1s = _differences(past, s_prev, h, order)
    h_phi_1, b_h, R, b = _bh2(h, rks, order)
    rhos = [0.5] if order == 1 else torch.linalg.solve(R, b).tolist()
    corr = rhos[-1] * (m_t - m0)
    for r, d in zip(rhos[:-1], d1s):
        corr = corr + r * d
    return (s_t / s_prev) * last_x - h_phi_1 * m0 - b_h * corr


@register_sampler
class UniPCSampler(GridSolver):
    """UniPC-bh2 (Zhao et al. 2023) in VE coordinates, as diffusers' UniPCMultistepScheduler
    (predict_x0, solver_type="bh2"): step k evaluates D at y_k; unless k = 0 the corrector UniC first
    refines y_k from y_{k−1} with that D (reused, not re-evaluated: the corrector costs no evaluation),
    then the predictor UniP-p moves to σ_{k+1}. p warms up 1, 2, … up to `order`; lower_order_final
    caps it at the steps left; the step to σ = 0 returns D. One evaluation per step."""
    name = "unipc"
    title = "UniPC"
    convention = "UniP-p predictor + UniC corrector (B(h) = e^{−h}−1), data prediction"
    description = "UniPC (bh2): multistep predictor-corrector in log-SNR; deterministic, few steps"

    @dataclass
    class Options(GridOptions):                   # steps, nfe, sigma_max, sigma_min, grid, rho, then:
        order: int = option(2, "Order p", "UniP-p's order (the corrector adds one; 2 for guided, 3 for "
                            "unconditional sampling in the paper).", choices=[1, 2, 3])
        corrector: bool = option(True, "Corrector (UniC)", "Refine each state with the next evaluation (free).")
        lower_order_final: bool = lower_order_final_option()
        final: str = final_option()
        clip_denoised: float | None = clip_option()
        n_timesteps: int = n_timesteps_option()

    @classmethod
    def from_options(cls, model, o):
        n = step_count(o, lambda nfe: nfe)
        return cls(model, solver_levels(model, o, n), o.order, o.corrector, o.lower_order_final, o.clip_denoised)

    @classmethod
    def deterministic(cls, o):
        return True

    @classmethod
    def title_for(cls, o):
        return f"{cls.title} (p={o.order}{'' if o.corrector else ', no corrector'})"

    def __init__(self, model, sigmas, order: int = 2, corrector: bool = True, lower_order_final: bool = True,
                 clip_denoised: float | None = None):
        super().__init__(model, sigmas, clip_denoised)
        if order not in (1, 2, 3):
            raise ValueError(f"UniPC's order must be 1, 2 or 3, got {order}")
        self.order, self.corrector, self.lower_order_final = int(order), bool(corrector), bool(lower_order_final)
        self.title = f"UniPC (p={order})"

    def plan(self, x, k, generator=None):
        s0, s1 = self._sigf[k], self._sigf[k + 1]
        notes = self.memory.take(x, k)           # (past [(σ, D)], last state, its order) or None
        m = denoised(x, s0, (yield Query.score(x, s0)), self.clip)
        past = []
        if notes is not None:
            past, last_x, last_order = notes
            if self.corrector:
                x = unic(last_x, x, m, past[-1][0], s0, past, last_order)
        past = (past + [(s0, m)])[-self.order:]
        order = min(self.order, self.n_steps - k) if self.lower_order_final else self.order
        order = 1 if s1 == 0 else min(order, len(past))
        x_new = unip(x, s0, s1, past, order)
        self.check(x_new, k)
        if k + 1 < self.n_steps:
            self.memory.put(x_new, k + 1, (past, x, order))
        return StepOutput(x_new, m, self.label(k, order))
