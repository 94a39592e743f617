"""The log-density a score model implies, by the probability-flow ODE (docs/math.md §10).

With f(y, σ) = dy/dσ = −σ s(y, σ), the instantaneous change of variables gives

    log p_{σ_min}(y(σ_min)) = log p_{σ_max}(y(σ_max)) + ∫_{σ_min}^{σ_max} ∇·f(y(σ), σ) dσ,

integrating the pair (y, Δ log p) from σ_min *up* to σ_max along the ODE. The end term log p_σmax
(`prior_log_prob`, docs/math.md §10.1) is

- the exact score's: the exact mixture p_σmax = p * N(0, σ_max² I) (no error from the end at all);
- a model that carries its data's moments: the matched Gaussian q = N(m, C + σ_max² I). Its pointwise
  error log q − log p_σmax is third order in (data spread)/σ_max (the first two moments agree; measured:
  it falls 8× per doubling of σ_max), its mean over the data is −KL(p_σmax ‖ q) (≤ priors.TOL = 1e-5
  nats at the σ_max rule);
- otherwise (legacy: images) N(0, σ_max² I), off pointwise by −⟨y − m, m⟩/σ_max² + O(|m|²/σ_max²):
  first order in |m|/σ_max, and by −|m|²/(2σ_max²) − KL(p_σmax ‖ q) − … on average.

The divergence is exact in 2D (one backward pass per dimension) or Hutchinson's estimate
E_v[vᵀ ∇(vᵀ f)] with Rademacher v (one backward pass). Heun steps on a Karras σ grid, as the sampler.
"""
from __future__ import annotations

import math

import torch

from .priors import matched_log_prob
from .schedules import karras_sigmas
from .score_models import ScoreModel


def prior_log_prob(model: ScoreModel, y: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """log p_σmax(y) as the likelihood closes it (module doc): the exact mixture for the exact score,
    the matched Gaussian for a model with data statistics, N(0, σ_max² I) otherwise; float64."""
    y = y.double()
    density = getattr(model, "density", None)
    if density is not None and hasattr(density, "noised"):
        with torch.no_grad():
            return density.noised(float(sigma_max)).log_prob(y, exact=True).double()
    if model.data_mean is not None:
        cov = model.data_cov if getattr(model, "data_cov", None) is not None else model.data_var
        return matched_log_prob(y, model.data_mean, cov, sigma_max)
    d = y.shape[1]
    return -0.5 * (y**2).sum(1) / sigma_max**2 - d * math.log(sigma_max) - 0.5 * d * math.log(2 * math.pi)


def _drift_and_divergence(model: ScoreModel, y: torch.Tensor, sigma: float, divergence: str,
                          generator: torch.Generator | None):
    """f(y, σ) = −σ s(y, σ) and ∇·f, detached."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        f = -sigma * model.score_with_grad(y, sigma)
        if divergence == "exact":
            div = torch.zeros(len(y), dtype=y.dtype, device=y.device)
            for i in range(y.shape[1]):
                (g,) = torch.autograd.grad(f[:, i].sum(), y, retain_graph=i + 1 < y.shape[1])
                div = div + g[:, i]
        elif divergence == "hutchinson":
            v = torch.randint(0, 2, y.shape, generator=generator, device=y.device).to(y.dtype) * 2 - 1
            (g,) = torch.autograd.grad((f * v).sum(), y)
            div = (g * v).flatten(1).sum(1)
        else:
            raise ValueError(f"unknown divergence {divergence!r}; choose exact or hutchinson")
    return f.detach(), div.detach()


def pf_ode_log_density(model: ScoreModel, y: torch.Tensor, sigma_min: float | None = None,
                       sigma_max: float | None = None, n_steps: int = 100, divergence: str = "exact",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """log p_{σ_min}(y) as the model implies it, for points y of shape (N, d); float64 inside.
    σ range: the model's own by default (a model cannot say more than it was trained for)."""
    lo = model.sigma_min if sigma_min is None else float(sigma_min)
    hi = model.sigma_max if sigma_max is None else float(sigma_max)
    if not hi > lo > 0:
        raise ValueError(f"need sigma_max > sigma_min > 0, got {hi} and {lo}")
    grid = karras_sigmas(hi, lo, n_steps + 1).double().flip(0).tolist()      # increasing: data → noise
    y = y.detach().double()
    delta = torch.zeros(len(y), dtype=torch.float64, device=y.device)
    for s0, s1 in zip(grid[:-1], grid[1:]):
        h = s1 - s0
        f0, d0 = _drift_and_divergence(model, y.float(), s0, divergence, generator)
        y_trial = y + h * f0.double()
        f1, d1 = _drift_and_divergence(model, y_trial.float(), s1, divergence, generator)
        y = y + h * 0.5 * (f0.double() + f1.double())
        delta = delta + h * 0.5 * (d0.double() + d1.double())
    return prior_log_prob(model, y, hi) + delta
