"""The sampler's start and how far it is from the truth (docs/math.md §10.1).

A VE chain over [σ_min, σ_max] should start from p_σ = p * N(0, σ²I) at σ = σ_max. It starts instead
from the Gaussian matched to p_σ in its first two moments,

    q_σ = N(m, C + σ² I),     m = E[x],  C = Cov[x]

(isotropic, C = vI with v = tr C / d, where only the mean per-dimension variance is known: images).
q_σ = q₀ * N(0, σ²I) with q₀ = N(m, C): p_σ and q_σ are the data and its Gaussian stand-in pushed
through the *same* noise channel, so KL(p_σ ‖ q_σ) never increases with σ (data processing).

`prior_kl(density, σ)` is KL(p_σ ‖ q_σ) in nats, computed deterministically: tensor Gauss–Hermite
quadrature under q_σ of r log r, r = p_σ/q_σ (no Monte Carlo). Its meaning:

- every sampler driven by the exact score maps its start through one Markov kernel, so the output's
  total-variation distance from the output of an exact start is ≤ TV(p_σ, q_σ) ≤ √(KL/2) (Pinsker);
  mode weights ŵ_k = E[r_k(x)] (r_k ∈ [0, 1]) move by at most that much: ½Σ|Δŵ_k| ≤ TV;
- the PF-ODE log-density closed with log q_σ instead of log p_σ is off by −KL on average over the data.

`sigma_max_for(density, tol)` is the σ_max rule: the smallest σ with KL(p_σ ‖ q_σ) ≤ tol (found to
0.5 % and rounded up), but at least the data's RMS radius √(tr C) (so a density that is already
Gaussian still gets a noise range that covers its spread). TOL = 1e-5 nats: TV ≤ 0.0022, five times
below the sampling noise of mode weights at n = 2000 (≈ 0.011 for weights 0.6/0.3/0.1), and a mean
log-density error ≤ 1e-5 nats. Cached per density object (the explorer asks on every density change;
one evaluation is 256 log-density evaluations of p_σ, a search 4–8 of them).
"""
from __future__ import annotations

import math
import weakref

import numpy as np
import torch

TOL = 1e-5                # nats: the default tolerance on KL(p_σmax ‖ q_σmax)
GH_NODES = 16             # Gauss–Hermite nodes per dimension (16² = 256 evaluations of log p_σ; at the
                          # rule's σ within 1e-8 relative of 40², on every preset)
_REL = 5e-3               # relative precision of the σ found (then rounded up)

_gh = np.polynomial.hermite.hermgauss(GH_NODES)
_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def matched_cov(cov, sigma: float, dim: int | None = None) -> torch.Tensor:
    """C + σ² I for a covariance (d, d), or (v + σ²) I for a mean per-dimension variance v (needs dim)."""
    cov = torch.as_tensor(cov, dtype=torch.float64)
    if cov.ndim == 0:
        return (float(cov) + float(sigma) ** 2) * torch.eye(dim, dtype=torch.float64)
    return cov + float(sigma) ** 2 * torch.eye(len(cov), dtype=torch.float64)


def matched_log_prob(y: torch.Tensor, mean, cov, sigma: float) -> torch.Tensor:
    """log q_σ(y) = log N(y; m, C + σ² I) for y of shape (N, d) (cov a (d, d) matrix, or a float v for
    vI), computed in float64."""
    y = y.double()
    d = y.shape[1]
    L = torch.linalg.cholesky(matched_cov(cov, sigma, d)).to(y.device)
    m = torch.as_tensor(mean, dtype=torch.float64, device=y.device).reshape(1, -1)
    u = torch.linalg.solve_triangular(L, (y - m).T, upper=False).T
    return -0.5 * (u**2).sum(1) - torch.log(torch.diagonal(L)).sum() - 0.5 * d * math.log(2 * math.pi)


def prior_kl(density, sigma: float) -> float:
    """KL(p_σ ‖ q_σ) in nats, q_σ = N(m, C + σ² I) the Gaussian matched to p_σ (module doc)."""
    m, cov = density.mean().double(), density.covariance().double()
    L = torch.linalg.cholesky(matched_cov(cov, sigma))
    t, w = (torch.from_numpy(a) for a in _gh)
    tx, ty = torch.meshgrid(t, t, indexing="ij")
    u = math.sqrt(2.0) * torch.stack([tx.flatten(), ty.flatten()], 1)        # nodes for N(0, I)
    weights = (w[:, None] * w[None, :]).flatten() / math.pi
    pts = m.reshape(1, 2) + u @ L.T
    log_q = -0.5 * (u**2).sum(1) - torch.log(torch.diagonal(L)).sum() - math.log(2 * math.pi)
    with torch.no_grad():
        log_r = density.noised(float(sigma)).log_prob(pts, exact=True).double() - log_q
    return max(float((weights * log_r.exp() * log_r).sum()), 0.0)


def sigma_floor(density) -> float:
    """The rule's lower bound: the data's RMS radius √(tr C)."""
    return math.sqrt(float(torch.diagonal(density.covariance()).sum()))


def sigma_max_for(density, tol: float = TOL) -> float:
    """The smallest σ ≥ √(tr C) with KL(p_σ ‖ q_σ) ≤ tol (to 0.5 %, rounded up): the σ_max rule."""
    if not tol > 0:
        raise ValueError(f"the KL tolerance must be positive, got {tol}")
    per = _cache.setdefault(density, {})
    if tol in per:
        return per[tol]
    lo = max(sigma_floor(density), 1e-3)
    f_lo = prior_kl(density, lo)
    if f_lo <= tol:
        per[tol] = lo
        return lo
    # Bracket: KL falls like σ⁻⁴ or faster once p_σ is nearly Gaussian; step by that estimate (≥ ×1.5).
    hi = lo
    f_hi = f_lo
    while f_hi > tol:
        lo, f_lo = hi, f_hi
        hi = hi * max(1.5, 1.1 * (f_hi / tol) ** 0.25)
        f_hi = prior_kl(density, hi)
        if hi > 1e6:
            raise ValueError("no σ_max below 1e6 brings the prior mismatch under the tolerance")
    # Illinois (regula falsi) on log KL against log σ: nearly a straight line there.
    u0, u1 = math.log(lo), math.log(hi)
    g0, g1 = math.log(max(f_lo, 1e-300) / tol), math.log(max(f_hi, 1e-300) / tol)
    side = 0
    while u1 - u0 > _REL:
        u = u1 - g1 * (u1 - u0) / (g1 - g0) if g1 != g0 else 0.5 * (u0 + u1)
        u = min(max(u, u0 + 0.1 * _REL), u1 - 0.1 * _REL)
        g = math.log(max(prior_kl(density, math.exp(u)), 1e-300) / tol)
        if g > 0:
            u0, g0 = u, g
            if side == -1:
                g1 /= 2
            side = -1
        else:
            u1, g1 = u, g
            if side == 1:
                g0 /= 2
            side = 1
    per[tol] = math.exp(u1)
    return per[tol]


def kl_bound_tv(kl: float) -> float:
    """Pinsker: TV ≤ √(KL/2)."""
    return math.sqrt(max(kl, 0.0) / 2)
