"""Score-matching objectives as pure functions `(model, x, ...) -> scalar loss` (docs/math.md §2, §4, §5).

Conventions: every loss carries the ½ of Hyvärinen/Vincent, so ESM, SSM and DSM at the same
density differ only by model-independent constants; per-example terms are summed over the data
dimensions and averaged over the batch. The noise-based losses (DSM, NCSN, DDPM) are rank-agnostic:
x may be (N, 2) points or (N, C, H, W) images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .schedules import DDPMSchedule


def _sum_dims(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(len(v), -1).sum(1)


def _randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def esm_loss(model, x: torch.Tensor) -> torch.Tensor:
    """Exact (implicit) score matching, Hyvärinen 2005: E[½‖s_θ(x)‖² + tr ∇ₓ s_θ(x)].
    The trace costs one backward pass per dimension (fine in 2D)."""
    x = x.detach().requires_grad_(True)
    s = model(x).reshape(len(x), -1)
    flat = x.reshape(len(x), -1)
    trace = torch.zeros(len(x), device=x.device, dtype=x.dtype)
    for d in range(flat.shape[1]):
        (g,) = torch.autograd.grad(s[:, d].sum(), x, create_graph=True)
        trace = trace + g.reshape(len(x), -1)[:, d]
    return (0.5 * (s**2).sum(1) + trace).mean()


def ssm_loss(model, x: torch.Tensor, generator: torch.Generator | None = None,
             projection: str = "rademacher", variance_reduced: bool = True) -> torch.Tensor:
    """Sliced score matching, Song et al. 2019: E_v E_p[vᵀ∇ₓs v + ½‖s‖²] with one random projection v
    per example; vᵀ∇ₓs v = ∇ₓ(vᵀs)·v costs one extra backward pass (Hutchinson).

    `variance_reduced=True` is that paper's SSM-VR (the ½‖s‖² term taken in closed form); False is the
    plain sliced objective with ½(vᵀs)². Both have the same expectation since E[vvᵀ] = I for Rademacher
    and Gaussian v. (the paper's naming of the two forms is used here.)
    """
    x = x.detach().requires_grad_(True)
    s = model(x)
    if projection == "rademacher":
        v = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
    elif projection == "gaussian":
        v = _randn_like(x, generator)
    else:
        raise ValueError(f"projection must be rademacher or gaussian, got {projection!r}")
    vs = _sum_dims(v * s)
    (g,) = torch.autograd.grad(vs.sum(), x, create_graph=True)
    quad = _sum_dims(g * v)
    norm_term = 0.5 * _sum_dims(s**2) if variance_reduced else 0.5 * vs**2
    return (norm_term + quad).mean()


def dsm_loss(model, x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising score matching at one σ, Vincent 2011: x̃ = x + σz, E[½‖s_θ(x̃) + (x̃−x)/σ²‖²].
    Its minimiser is the score of p_σ = p * N(0, σ²I). A σ-conditioned model is called with σ."""
    z = _randn_like(x, generator)
    x_noisy = x + sigma * z
    s = model(x_noisy, torch.full((len(x),), float(sigma), device=x.device)) if getattr(model, "cond", None) == "sigma" \
        else model(x_noisy)
    return (0.5 * _sum_dims((s + z / sigma) ** 2)).mean()


def ncsn_loss(model, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
              continuous: bool = False, per_example: bool = False):
    """NCSN, Song & Ermon 2019, eq. 6: Σᵢ λ(σᵢ) E[½‖s_θ(x̃, σᵢ) + (x̃−x)/σᵢ²‖²] with λ(σ) = σ².
    One level is drawn uniformly per example (an unbiased estimate of the average over levels), so the
    per-example term is ½‖σ s_θ(x̃, σ) + z‖². With `continuous`, σ is drawn log-uniformly from
    [σ_L, σ₁] instead (the L → ∞ limit, as score-SDE's VE training), so the model knows every σ in
    its range and can drive samplers that ask between the L levels (PF-ODE, DDPM, DDIM).
    per_example: return (per-example terms, their σ) instead of the mean (loss per noise level)."""
    sigmas = sigmas.to(x.device, x.dtype)
    if continuous:
        lo, hi = sigmas.min().log(), sigmas.max().log()
        u = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype)
        sigma = torch.exp(lo + u * (hi - lo))
    else:
        sigma = sigmas[torch.randint(0, len(sigmas), (len(x),), generator=generator, device=x.device)]
    sig = sigma.reshape(len(x), *([1] * (x.ndim - 1)))
    z = _randn_like(x, generator)
    s = model(x + sig * z, sigma)
    terms = 0.5 * _sum_dims((sig * s + z) ** 2)
    return (terms, sigma) if per_example else terms.mean()


def ddpm_elbo_weights(schedule: DDPMSchedule, variance: str = "beta") -> torch.Tensor:
    """λ_t = β_t² / (2σ_t² α_t (1−ᾱ_t)) of L_{t−1} (Ho et al. eq. 12). With σ_t² = β̃_t the first step's
    β̃ is 0, so it takes β̃ of the second step (the clipping of the reference code)."""
    var = schedule.betas if variance == "beta" else schedule.posterior_variance.clone()
    if variance == "beta_tilde" and schedule.T > 1:
        var[0] = var[1]
    elif variance not in ("beta", "beta_tilde"):
        raise ValueError(f"unknown reverse variance {variance!r}; choose beta or beta_tilde")
    return schedule.betas**2 / (2 * var * schedule.alphas * (1 - schedule.alpha_bars))


def ddpm_loss(model, x0: torch.Tensor, schedule: DDPMSchedule, generator: torch.Generator | None = None,
              weighting: str = "simple", variance: str = "beta", per_example: bool = False):
    """DDPM ε-prediction, Ho et al. 2020: t ~ U{0..T−1}, x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε.
    "simple": L_simple = E‖ε − ε_θ(x_t, t)‖² averaged over elements (the paper's training loss);
    "elbo":   E_t[λ_t ‖ε − ε_θ‖²] with the true-ELBO weights λ_t (summed over dims; ×T gives Σ_t L_{t−1}).
    per_example: return (per-example terms, their t) instead of the mean (loss per timestep)."""
    t = torch.randint(0, schedule.T, (len(x0),), generator=generator, device=x0.device)
    eps = _randn_like(x0, generator)
    x_t = schedule.q_sample(x0, t, eps)
    err = (eps - model(x_t, t)) ** 2
    if weighting == "simple":
        terms = err.reshape(len(err), -1).mean(1)          # mean over elements, as L_simple
    elif weighting == "elbo":
        terms = ddpm_elbo_weights(schedule, variance).to(x0.device)[t] * _sum_dims(err)
    else:
        raise ValueError(f"unknown DDPM weighting {weighting!r}; choose simple or elbo")
    return (terms, t) if per_example else terms.mean()


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str
    label: str
    cond: str | None          # what the model must be conditioned on
    needs: tuple[str, ...]    # keyword parameters make_objective requires


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "esm": ObjectiveSpec("esm", "Exact score matching", None, ()),
    "ssm": ObjectiveSpec("ssm", "Sliced score matching", None, ()),
    "dsm": ObjectiveSpec("dsm", "Denoising score matching (one σ)", None, ("sigma",)),
    "ncsn": ObjectiveSpec("ncsn", "NCSN: multi-σ denoising score matching", "sigma", ("sigmas",)),
    "ddpm": ObjectiveSpec("ddpm", "DDPM ε-prediction", "time", ("schedule",)),
}


# name -> loss(model, x, generator, params); `params` are the keywords given to make_objective.
_LOSSES: dict[str, Callable] = {
    "esm": lambda model, x, g, p: esm_loss(model, x),
    "ssm": lambda model, x, g, p: ssm_loss(model, x, g, p.get("projection", "rademacher"),
                                           p.get("variance_reduced", True)),
    "dsm": lambda model, x, g, p: dsm_loss(model, x, p["sigma"], g),
    "ncsn": lambda model, x, g, p, **kw: ncsn_loss(model, x, p["sigmas"], g, p.get("continuous", False), **kw),
    "ddpm": lambda model, x, g, p, **kw: ddpm_loss(model, x, p["schedule"], g, p.get("weighting", "simple"),
                                                   p.get("variance", "beta"), **kw),
}


class Objective:
    """A loss bound to its parameters: `objective(model, x, generator) -> loss`."""

    def __init__(self, name: str, **params):
        if name not in OBJECTIVES:
            raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
        self.spec = OBJECTIVES[name]
        missing = [k for k in self.spec.needs if k not in params]
        if missing:
            raise ValueError(f"objective {name} needs {', '.join(missing)}")
        self.params = params
        self._loss = _LOSSES[name]

    @property
    def cond(self):
        return self.spec.cond

    def __call__(self, model, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._loss(model, x, generator, self.params)

    def terms(self, model, x: torch.Tensor, generator: torch.Generator | None = None):
        """(per-example loss terms, their noise level: σ for NCSN, t for DDPM) — their mean is the loss;
        (the loss as a 1-element tensor, None) for objectives without noise levels."""
        if self.spec.name in ("ncsn", "ddpm"):
            return self._loss(model, x, generator, self.params, per_example=True)
        return self(model, x, generator).reshape(1), None


def make_objective(name: str, **params) -> Objective:
    return Objective(name, **params)
