"""What the fast solvers (dpmpp_2m.py, dpmpp_3m.py, unipc.py, edm.py, euler_ancestral.py) share
(docs/math.md §13): their σ grid, their option fields, the data prediction and the per-chain memory
of a multistep solver.

All of them move y in VE coordinates with the data prediction D(y, σ) = y + σ² s(y, σ) and the
log-SNR λ = −log σ (in VP coordinates x = √ᾱ y, λ = log(√ᾱ/√(1−ᾱ)) is the same number, which is why
the updates below agree step for step with diffusers' VP schedulers).

Grids ("grid" option): "karras" (Karras et al. 2022, eq. 5, ρ), "geometric" (uniform in log-SNR:
diffusers' use_lu_lambdas) and "time" (the time-uniform DDPM spacing of diffusers' "linspace":
timesteps round(linspace(0, T−1, n+1)) of the model's schedule, or of the VP schedule over its σ
range for a σ-model). "final": the chain ends at σ = 0 (n levels, then a step to 0 returning D) or at
the grid's σ_min (n + 1 levels, diffusers' final_sigmas_type="sigma_min"); either way n steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..schedules import sigma_grid
from ..schema import option
from ..score_models import ScoreModel
from .base import Sampler
from .levels import nfe_option, sigma_max_option, sigma_min_option, sigma_range, steps_option, vp_schedule

GRID_CHOICES = [("karras", "Karras (ρ)"), ("geometric", "uniform log-SNR"), ("time", "DDPM time-uniform")]
FINAL_CHOICES = [("zero", "σ = 0 (denoised)"), ("sigma_min", "σ_min (not denoised)")]
MAX_CHAINS = 64          # chains one sampler instance remembers at once (the Samplers tab runs ≤ 4)


def grid_option(default: str = "karras"):
    return option(default, "σ grid", "Noise levels of the solver: Karras et al.'s ρ grid, uniform in log-SNR "
                  "λ = −log σ (geometric σ), or the DDPM time-uniform spacing (diffusers' \"linspace\" "
                  "timesteps of the model's schedule).", choices=GRID_CHOICES)


def rho_option():
    return option(7.0, "ρ", "Karras grid ρ (larger: denser near σ_min; 7 in the paper).",
                  lo=1.0, hi=100.0, step=0.5, decimals=1)


def final_option():
    return option("zero", "Last level", "Where the chain ends: σ = 0 (the last step returns the denoised "
                  "D(y, σ), first order) or the grid's σ_min (diffusers' final_sigmas_type=\"sigma_min\").",
                  choices=FINAL_CHOICES)


def lower_order_final_option():
    return option(True, "Lower order at the end", "With fewer than 15 steps, take the last steps at lower "
                  "order (last: first order; second to last: at most second). Stabilises few-step sampling "
                  "(diffusers' lower_order_final, on by default there too).")


@dataclass
class GridOptions:
    """The leading option fields of the one-evaluation-per-step solvers (dpmpp_2m.py, dpmpp_3m.py,
    unipc.py): steps or an NFE budget, the σ range and the grid. Their Options extend it."""
    steps: int = steps_option(20, "Steps", "Number of σ levels (one evaluation each; then a last step to "
                              "σ = 0, or to σ_min).", gui=20)
    nfe: int | None = nfe_option()
    sigma_max: float | None = sigma_max_option()
    sigma_min: float | None = sigma_min_option()
    grid: str = grid_option()
    rho: float = rho_option()


def solver_levels(model, o, n: int) -> torch.Tensor:
    """The chain's σ levels (float64, decreasing) for n steps of options `o` (grid, rho, final,
    sigma_max, sigma_min, n_timesteps): final "zero": n levels then 0; "sigma_min": n + 1 levels
    whose last is the range's σ_min."""
    count = n + (o.final == "sigma_min") if hasattr(o, "final") else n
    if o.grid == "time":
        sched = vp_schedule(model, o)
        ab = torch.cumprod(1 - sched.betas.double().cpu(), 0)
        T = len(ab)
        ts = torch.linspace(0, T - 1, n + 1, dtype=torch.float64).round().long().flip(0)[:count]
        levels = ((1 - ab[ts]) / ab[ts]).sqrt()
    else:
        hi, lo = sigma_range(model, o)
        levels = sigma_grid(o.grid, hi, lo, count, o.rho).double()
    if count == n:
        levels = torch.cat([levels, torch.zeros(1, dtype=torch.float64)])
    return levels


def denoised(x: torch.Tensor, sigma: float, score: torch.Tensor, clip: float | None) -> torch.Tensor:
    """D(y, σ) = y + σ² s(y, σ), clipped to [−clip, clip] when clip is set."""
    d = x + sigma * sigma * score
    return d.clamp(-clip, clip) if clip is not None else d


def log_snr_step(s0: float, s1: float) -> float:
    """h = λ(σ₁) − λ(σ₀) = log(σ₀/σ₁) (inf for σ₁ = 0)."""
    return math.inf if s1 == 0 else math.log(s0 / s1)


class ChainMemory:
    """What a multistep solver remembers of each chain between steps: the state it handed out after
    step k − 1, and its own notes (past data predictions …). Callers run plan(x, k) for k = 0, 1, …
    on one chain or several (chains.advance_together, the Samplers tab): a chain is found by the
    tensor it holds (the very object the last step returned, else an equal one at the same k).
    k = 0, or a state it never handed out (a chain restarted from elsewhere), starts afresh: the
    solver warms up again with lower orders, as at the start."""

    def __init__(self):
        self._chains: dict[int, tuple[torch.Tensor, int, object]] = {}

    def take(self, x: torch.Tensor, k: int):
        """The notes left for the chain now at x before step k (None: start afresh)."""
        if k == 0:
            return None
        entry = self._chains.pop(id(x), None)
        if entry is not None and entry[0] is x and entry[1] == k:
            return entry[2]
        for key, (held, at, notes) in list(self._chains.items()):
            if at == k and held.shape == x.shape and held.device == x.device and torch.equal(held, x):
                del self._chains[key]
                return notes
        return None

    def put(self, x: torch.Tensor, k: int, notes) -> None:
        """Leave `notes` for the chain that step k − 1 left at x."""
        self._chains[id(x)] = (x, k, notes)
        while len(self._chains) > MAX_CHAINS:
            self._chains.pop(next(iter(self._chains)))

    def clear(self) -> None:
        self._chains.clear()


def low_order_at_end(order: int, k: int, n_steps: int, enabled: bool, cutoff: int = 15) -> int:
    """diffusers' lower_order_final: with fewer than `cutoff` steps, the last step is first order and
    the second to last at most second order."""
    if not enabled or n_steps >= cutoff:
        return order
    if k == n_steps - 1:
        return 1
    if k == n_steps - 2:
        return min(order, 2)
    return order


class GridSolver(Sampler):
    """Base of the fast solvers: n_steps steps over the σ grid `sigmas` (σ_0 > … > σ_n ≥ 0) in VE
    coordinates, a per-chain memory (`memory`) for the multistep ones, D clipped at `clip`."""
    hint = "Too few steps for this model: use more steps (or lower_order_final)."

    def __init__(self, model: ScoreModel, sigmas, clip: float | None = None):
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if len(self.sigmas) < 2 or bool((self.sigmas[:-1] <= 0).any()) or float(self.sigmas[-1]) < 0 \
                or bool((self.sigmas[1:] >= self.sigmas[:-1]).any()):
            raise ValueError(f"{self.title} needs a decreasing grid of at least two σ, the last ≥ 0 and the others > 0")
        self.model, self.clip, self.n_steps = model, clip, len(self.sigmas) - 1
        self._sigf = self.sigmas.tolist()
        self.memory = ChainMemory()

    @property
    def prior_std(self):
        return self._sigf[0]

    def sigmas_used(self):
        return self.sigmas[:self.n_steps].float()

    def step_sigma(self, k):
        return self._sigf[k]

    def label(self, k, order: int | None = None):
        extra = f", order {order}" if order is not None else ""
        return f"σ {self._sigf[k]:.3g} → {self._sigf[k + 1]:.3g} (step {k + 1}/{self.n_steps}{extra})"


def dpmpp_update(x: torch.Tensor, s0: float, s1: float, D: torch.Tensor, past: list, order: int) -> torch.Tensor:
    """One DPM-Solver++ multistep update (Lu et al. 2022, data prediction; diffusers'
    DPMSolverMultistepScheduler, algorithm_type="dpmsolver++", solver_type="midpoint") from y at σ₀
    to σ₁, with D = D(y, σ₀) and `past` = [(σ, D), …] of the previous steps (newest last). With
    h = log(σ₀/σ₁), rₖ = h_{k}/h:
      1st order: y' = (σ₁/σ₀) y − (e^{−h} − 1) D;
      2nd order: D̃ = D + ½ (D − D₋₁)/r₀ in the same formula;
      3rd order: + ((e^{−h} − 1)/h + 1) D₁ − ((e^{−h} − 1 + h)/h² − ½) D₂, with D₁, D₂ the first and
      second divided differences of D in λ (as diffusers writes them)."""
    if s1 == 0:
        return D                                   # λ = ∞: every order ends at D
    h = math.log(s0 / s1)
    em1 = math.expm1(-h)
    y = (s1 / s0) * x - em1 * D
    if order == 1:
        return y
    (sa, Da) = past[-1]
    r0 = math.log(sa / s0) / h
    D1_0 = (D - Da) / r0
    if order == 2:
        return y - 0.5 * em1 * D1_0
    (sb, Db) = past[-2]
    r1 = math.log(sb / sa) / h
    D1_1 = (Da - Db) / r1
    D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1)
    D2 = (D1_0 - D1_1) / (r0 + r1)
    return y + (em1 / h + 1.0) * D1 - ((em1 + h) / (h * h) - 0.5) * D2
