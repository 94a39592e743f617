"""Order of convergence of the deterministic solvers, measured without sampling noise (docs/math.md §13;
issue #23).

From the same standard draws z, each solver's start y₀ (the Gaussian prior matched to p_σmax,
`samplers.prior_sample`; every solver here shares σ_max) is carried to σ = 0 at several NFE budgets,
and compared particle by particle with a converged solve of the same ODE from the same y₀: the
error is the mean over particles of ‖y_solver − y_converged‖. A solver of order p has error ∝ NFE^−p
where the score is smooth, so the fitted log–log slope is ≈ −p (Euler 1; Heun, DPM-Solver++ 2M 2;
3M and UniPC-2 with its corrector 3). With a trained model the same curves show where its
non-smoothness at small σ breaks the order.

The converged solve: DPM-Solver++ 3M on `REFERENCE_STEPS` levels uniform in log-SNR from σ_max to the
same σ_min, then the same last step every solver takes, y ↦ D(y, σ_min) (tests/trainers/
test_fast_solvers.py checks it against torchdiffeq's dopri5 at rtol 1e-8). Its own error is
estimated by comparing it with the same solve at half the steps (`reference_error`); slopes are
fitted only over the budgets whose error is at least 10× that. The exact score runs in float64; a
trained network in float32 (its error floor is then ~1e-6 of the data's scale).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from ..samplers import SamplerOptions, build_sampler, prior_sample
from ..samplers.multistep import denoised
from ..score_models import ClosedFormScore, ScoreModel

# label → (registry name, its options, nominal order)
ORDER_SOLVERS: dict[str, tuple[str, dict, int]] = {
    "euler": ("pf-ode", {"solver": "euler"}, 1),
    "heun": ("pf-ode", {"solver": "heun"}, 2),
    "edm": ("edm", {"s_churn": 0.0}, 2),
    "dpmpp-2m": ("dpmpp-2m", {}, 2),
    "dpmpp-3m": ("dpmpp-3m", {}, 3),
    "unipc": ("unipc", {}, 3),
}
ORDER_NFES = (10, 20, 40, 80)
REFERENCE_STEPS = 2048
FLOOR_FACTOR = 10.0          # fit only budgets whose error is ≥ this × the reference's own error


@dataclass
class OrderCurve:
    label: str
    sampler: str                     # registry name
    nominal: int                     # the solver's order in theory
    nfe: list[int]                   # evaluations actually spent, per budget
    error: list[float]               # mean over seeds of the per-particle mean distance
    error_sd: list[float]            # sd over seeds (ddof 1; nan with one seed)
    errors: list[list[float]] = field(default_factory=list)   # [budget][seed]
    slope: float = math.nan          # fitted log–log slope of the mean error against NFE (≈ −order)
    slope_sd: float = math.nan       # sd over seeds of the per-seed slopes
    fitted: list[int] = field(default_factory=list)          # the NFE the slope was fitted on


@dataclass
class OrderResult:
    curves: list[OrderCurve]
    n: int
    seeds: int
    seed: int
    sigma_max: float
    sigma_min: float
    grid: str
    reference: str
    reference_error: float           # mean distance of the converged solve to itself at half the steps
    dtype: str
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def log_log_slope(nfe: list[float], error: list[float]) -> float:
    """Least-squares slope of log error against log NFE (nan with fewer than two points)."""
    if len(nfe) < 2:
        return math.nan
    x = torch.tensor(nfe, dtype=torch.float64).log()
    y = torch.tensor(error, dtype=torch.float64).log()
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def converged_solve(model: ScoreModel, y0: torch.Tensor, sigma_max: float, sigma_min: float,
                    steps: int = REFERENCE_STEPS) -> torch.Tensor:
    """The PF-ODE from y0 at σ_max to σ_min by DPM-Solver++ 3M on `steps` log-SNR-uniform levels, then D(·, σ_min)."""
    ref = build_sampler("dpmpp-3m", model, steps=steps, grid="geometric", final="sigma_min",
                        sigma_max=sigma_max, sigma_min=sigma_min)
    y = ref.run(y0).x
    return denoised(y, sigma_min, model.score(y, sigma_min), None)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), (float(t.std()) if len(values) > 1 else math.nan)


def run_order_study(model: ScoreModel, solvers=tuple(ORDER_SOLVERS), nfes=ORDER_NFES, n: int = 500,
                    seeds: int = 3, seed: int = 0, options: SamplerOptions | dict | None = None,
                    reference_steps: int = REFERENCE_STEPS) -> OrderResult:
    """Every solver label (ORDER_SOLVERS) at every NFE budget, `seeds` times with n fresh draws z each.
    `options`: shared sampler settings (sigma_max, sigma_min, grid, rho; the model's range by default)."""
    start = time.perf_counter()
    unknown = [s for s in solvers if s not in ORDER_SOLVERS]
    if unknown:
        raise ValueError(f"unknown solver(s) {', '.join(unknown)}; choose from {', '.join(ORDER_SOLVERS)}")
    if seeds < 1 or n < 1 or not nfes:
        raise ValueError(f"the order study needs seeds ≥ 1, n ≥ 1 and NFE budgets (got {seeds}, {n}, {list(nfes)})")
    shared = (options.to_dict() if isinstance(options, SamplerOptions) else dict(options or {}))
    shared = {k: v for k, v in shared.items() if k in ("sigma_max", "sigma_min", "grid", "rho") and v is not None}
    dtype = torch.float64 if isinstance(model, ClosedFormScore) else torch.float32
    probe = build_sampler("dpmpp-2m", model, shared, steps=2)
    sigma_max, sigma_min = float(probe.sigmas[0]), float(probe.sigmas[-2])
    per_seed: dict[str, list[list[float]]] = {s: [[] for _ in nfes] for s in solvers}
    spent: dict[str, list[int]] = {}
    ref_errors = []
    g = torch.Generator().manual_seed(seed)
    for _ in range(seeds):
        z = torch.randn(n, 2, generator=g, dtype=torch.float64).to(dtype)
        y0 = prior_sample(probe, z)
        truth = converged_solve(model, y0, sigma_max, sigma_min, reference_steps)
        half = converged_solve(model, y0, sigma_max, sigma_min, reference_steps // 2)
        ref_errors.append(float((half - truth).norm(dim=1).mean()))
        for label in solvers:
            name, own, _ = ORDER_SOLVERS[label]
            spent[label] = []
            for i, nfe in enumerate(nfes):
                sampler = build_sampler(name, model, {**shared, **own}, nfe=nfe)
                if abs(float(sampler.sigmas[0]) - sigma_max) > 1e-9 * sigma_max:
                    raise ValueError(f"{label} starts at σ = {float(sampler.sigmas[0])}, not the study's σ_max {sigma_max}")
                y = sampler.run(y0.clone()).x
                per_seed[label][i].append(float((y - truth).norm(dim=1).mean()))
                spent[label].append(sampler.nfe)
    ref_error = sum(ref_errors) / len(ref_errors)
    curves = []
    for label in solvers:
        name, _, nominal = ORDER_SOLVERS[label]
        stats = [_mean_sd(v) for v in per_seed[label]]
        mean = [m for m, _ in stats]
        keep = [i for i, m in enumerate(mean) if math.isfinite(m) and m >= FLOOR_FACTOR * ref_error]
        fit_nfe = [spent[label][i] for i in keep]
        slope = log_log_slope(fit_nfe, [mean[i] for i in keep])
        seed_slopes = [log_log_slope(fit_nfe, [per_seed[label][i][k] for i in keep]) for k in range(seeds)]
        slope_sd = _mean_sd(seed_slopes)[1] if len(keep) >= 2 else math.nan
        curves.append(OrderCurve(label, name, nominal, spent[label], mean, [s for _, s in stats],
                                 per_seed[label], slope, slope_sd, fit_nfe))
    return OrderResult(curves, n, seeds, seed, sigma_max, sigma_min, shared.get("grid", "karras"),
                       f"DPM-Solver++ 3M, {reference_steps} log-SNR-uniform steps to σ_min, then D(·, σ_min)",
                       ref_error, str(dtype).replace("torch.", ""), time.perf_counter() - start)


def format_order_table(result: OrderResult) -> str:
    """Per solver: the mean per-particle error (± sd over seeds) at each budget, and the fitted slope."""
    budgets = max(len(c.nfe) for c in result.curves)
    lines = [f"per-particle distance to a converged solve from the same start (n = {result.n}, {result.seeds} seed(s) "
             f"from {result.seed}; σ {result.sigma_max:.3g} → {result.sigma_min:.3g}, {result.grid} grid, {result.dtype})",
             f"converged solve: {result.reference}; its own error ≈ {result.reference_error:.2e} (slopes use errors ≥ "
             f"{FLOOR_FACTOR:g}× that)",
             f"{'solver':<10} {'order':>5} " + " ".join(f"{'NFE':>4} {'error':>19}" for _ in range(budgets))
             + f" {'slope':>14}"]
    for c in result.curves:
        cells = " ".join(f"{nfe:>4} {_pm(e, sd):>19}" for nfe, e, sd in zip(c.nfe, c.error, c.error_sd))
        slope = "—" if not math.isfinite(c.slope) else _pm(c.slope, c.slope_sd, "+.2f")
        lines.append(f"{c.label:<10} {c.nominal:>5} {cells} {slope:>14}")
    return "\n".join(lines)


def _pm(mean: float, sd: float, fmt: str = ".2e") -> str:
    if not math.isfinite(mean):
        return "div."
    return f"{mean:{fmt}}" + (f"±{sd:{fmt.lstrip('+')}}" if math.isfinite(sd) else "")
