"""Where a chain starts: standard draws (`initial_particles`), mapped to a sampler's Gaussian prior
matched to p_σ₀ (`prior_sample`), exact draws of p_σ₀ for the exact score (`exact_prior_sample`), or
uniform points (a sampler's `default_init` says which start is its own: Langevin's is "uniform")."""
from __future__ import annotations

import math

import torch

from .base import Sampler


def initial_particles(n: int, kind: str = "gaussian", bounds=None, generator: torch.Generator | None = None,
                      shape: tuple[int, ...] = (2,)) -> torch.Tensor:
    """Starting particles: z ~ N(0, I) (`prior_sample` maps it to a sampler's start: the Gaussian
    matched to p_σ₀, or prior_std · z without data statistics), or uniform over
    bounds=(xmin, xmax, ymin, ymax) (2D only)."""
    if kind == "gaussian":
        return torch.randn((n, *shape), generator=generator)
    if kind == "uniform":
        if bounds is None or shape != (2,):
            raise ValueError("uniform initialisation needs 2D points and bounds (xmin, xmax, ymin, ymax)")
        u = torch.rand((n, 2), generator=generator)
        lo = torch.tensor([bounds[0], bounds[2]], dtype=torch.float32)
        hi = torch.tensor([bounds[1], bounds[3]], dtype=torch.float32)
        return lo + u * (hi - lo)
    raise ValueError(f"unknown initialisation {kind!r}; choose gaussian or uniform")


def start_level(sampler: Sampler) -> tuple[float, float]:
    """(σ₀, c): the chain starts at the VE level σ₀ of its first step, in coordinates x = c·y
    (c = √ᾱ of the first timestep for the VP samplers DDPM/DDIM, 1 for the VE ones, 1 − t₀ for the flow
    ODE, whose x_t = (1 − t) y at σ = t/(1 − t))."""
    if sampler.space == "flow":
        t0 = float(sampler.ts[0])
        return t0 / (1 - t0), 1 - t0
    if sampler.space == "vp":
        ab0 = float(sampler._ab[0])
        return math.sqrt((1 - ab0) / ab0), math.sqrt(ab0)
    sigma0 = getattr(sampler, "sigma", None)
    if sigma0 is None:
        sigma0 = float(sampler.sigmas[0])
    return float(sigma0), 1.0


def prior_sample(sampler: Sampler, z: torch.Tensor) -> torch.Tensor:
    """The sampler's Gaussian start from standard normal draws z (docs/math.md §10.1).

    When the model knows its data's mean m and covariance C (2D points) or mean per-dimension
    variance v, the start is the Gaussian matched to p_σ₀ = p * N(0, σ₀²I) in its first two moments,
    N(m, C + σ₀² I) (or N(m, (v + σ₀²) I)), written in the sampler's coordinates (VP: x = √ᾱ₀ y).
    Without data statistics (image models) the legacy start: prior_std · z (VE), z (VP)."""
    model = sampler.model
    if model.data_mean is None:
        return sampler.prior_std * z
    sigma0, c = start_level(sampler)
    mean = model.data_mean.to(z.device, z.dtype).reshape(1, *z.shape[1:]) if z.ndim > 1 else model.data_mean
    cov = getattr(model, "data_cov", None)
    if cov is not None and z.ndim == 2 and z.shape[1] == len(cov):
        eye = torch.eye(len(cov), dtype=torch.float64)
        chol = torch.linalg.cholesky(cov.double() + sigma0**2 * eye).to(z.device, z.dtype)
        return c * mean + c * z @ chol.T
    return c * mean + c * math.sqrt(sigma0**2 + model.data_var) * z


def exact_prior_sample(sampler: Sampler, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n exact draws of the chain's true start p_σ₀ (only for the exact score, whose density p_σ₀ is a
    mixture we can sample), in the sampler's coordinates. With it a chain has no prior mismatch."""
    density = getattr(sampler.model, "density", None)
    if density is None:
        raise ValueError("an exact start p_σmax needs the exact score (a model cannot say what p_σmax is)")
    sigma0, c = start_level(sampler)
    return c * density.noised(sigma0).sample(n, generator)


def start_from(sampler: Sampler, z: torch.Tensor, init: str = "gaussian",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """A chain's first particles from draws z shared by several chains: init "uniform": z itself
    (uniform points); "gaussian": prior_sample(sampler, z); "exact": exact draws of p_σ₀ (with
    `generator`) where the sampler's model is the exact score, prior_sample(sampler, z) elsewhere."""
    if init == "uniform":
        return z
    if init == "exact" and getattr(sampler.model, "density", None) is not None:
        return exact_prior_sample(sampler, len(z), generator)
    if init not in ("gaussian", "exact"):
        raise ValueError(f"unknown start {init!r}; choose gaussian, exact or uniform")
    return prior_sample(sampler, z)
