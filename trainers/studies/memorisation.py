"""Finite training sets and memorisation (docs/math.md §11).

Trained on N fixed points {x_n}, denoising score matching at σ is minimised by the score of
p̂_σ = (1/N) Σ_n N(x; x_n, σ²I), the *empirical optimal score*: an exact mixture score, computed here
in closed form. Sampled to small σ it returns the training points themselves; a network that fits it
memorises, one that does not generalises. The meter compares a model's samples with the training set:
the share of samples closer to a training point than c·σ_min, and their distance to the nearest
training point against that of fresh samples of the data density.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .. import fitting
from ..samplers import Cancelled, build_sampler
from ..score_models import ClosedFormScore

NEAR_FACTOR = 2.0     # c: a sample within c·σ_min of a training point counts as a copy (a 2D N(x_n, σ_min²I)
                      # point lands within 2σ_min of x_n 86 % of the time)


def empirical_log_density(y: torch.Tensor, points: torch.Tensor, sigma: float) -> torch.Tensor:
    """log p̂_σ(y) = log (1/N) Σ_n N(y; x_n, σ²I)."""
    d = y.shape[1]
    sq = torch.cdist(y.double(), points.double()) ** 2
    return (torch.logsumexp(-sq / (2 * sigma**2), dim=1) - math.log(len(points))
            - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi))


def empirical_score(y: torch.Tensor, points: torch.Tensor, sigma: float) -> torch.Tensor:
    """∇ log p̂_σ(y) = Σ_n r_n(y) (x_n − y)/σ², r = softmax_n(−‖y − x_n‖²/(2σ²))."""
    yd, pd = y.double(), points.double()
    r = torch.softmax(-torch.cdist(yd, pd) ** 2 / (2 * sigma**2), dim=1)          # (M, N)
    return ((r @ pd - yd) / sigma**2).to(y.dtype)


class EmpiricalScore(ClosedFormScore):
    """The empirical optimal score of a training set, as a ScoreModel (valid at every σ > 0), so any
    sampler can be driven by what a perfectly fitted network would learn from those points."""
    kind = "empirical"
    description = "exact score of the noised training set"

    def __init__(self, points: torch.Tensor, sigma_min: float = 0.01, sigma_max: float | None = None):
        points = torch.as_tensor(points, dtype=torch.float32)
        if sigma_max is None:
            sigma_max = float(torch.cdist(points, points).max()) if len(points) > 1 else 1.0
        super().__init__(sigma_min, max(sigma_max, sigma_min), valid=(0.0, math.inf))
        self.points = points
        if len(points):      # the training set's moments: samplers start from its matched Gaussian
            p = points.double().reshape(len(points), -1)
            m = p.mean(0)
            self.with_data_stats(m, cov=(p - m).T @ (p - m) / len(p))

    def score_at(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        return empirical_score(y, self.points.to(y.device), max(sigma, 1e-12))


def nearest_distance(x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Distance from each x to its nearest point of `points`."""
    return torch.cdist(x.double(), points.double()).min(dim=1).values


def memorisation_report(samples: torch.Tensor, train_points: torch.Tensor, fresh: torch.Tensor,
                        sigma_min: float, c: float = NEAR_FACTOR) -> dict:
    """The memorisation meter: share of samples within c·σ_min of a training point (copies), the median
    distance of samples to their nearest training point, and the same for fresh data samples (what
    a model that generalises should match). ratio = samples' median / fresh median (≪ 1: copying)."""
    finite = samples[torch.isfinite(samples).all(dim=1)]
    d_samples = nearest_distance(finite, train_points)
    d_fresh = nearest_distance(fresh, train_points)
    near = c * sigma_min
    return {
        "threshold": near,
        "share_near_training": float((d_samples < near).double().mean()) if len(finite) else float("nan"),
        "share_near_training_fresh": float((d_fresh < near).double().mean()),
        "median_nn_distance": float(d_samples.median()) if len(finite) else float("nan"),
        "median_nn_distance_fresh": float(d_fresh.median()),
        "ratio": float(d_samples.median() / d_fresh.median()) if len(finite) else float("nan"),
    }


def model_problem(cfg: fitting.ToyConfig) -> str:
    """Why the meter cannot measure a model trained with cfg ('' when it can): it counts samples within
    c·σ_min of a training point, so the model needs a noise level above 0."""
    if fitting.method_for(cfg).noised:
        return ""
    return ("The meter counts samples within c·σ_min of a training point, and an ESM/SSM model has no "
            "noise level (σ_min = 0): train with dsm, ncsn or ddpm to measure memorisation.")


def empirical_score_at(cfg: fitting.ToyConfig, points: torch.Tensor, level: float):
    """fn(y) -> the empirical optimal score at one noise level of a model trained with cfg (`level` as in
    fitting.Level.value): of p̂_σ for NCSN (σ = level) and DSM (σ = cfg.sigma); for DDPM (level = the
    0-based t) of the marginal (1/N) Σ_n N(√ᾱ_t x_n, (1−ᾱ_t) I), i.e. p̂ at σ = √(1−ᾱ_t) around √ᾱ_t x_n.
    None for ESM/SSM: at σ = 0 the score of N points is undefined."""
    points = torch.as_tensor(points, dtype=torch.float32)
    method = fitting.method_for(cfg)
    if method.schedule() is not None:
        alpha_bar = float(method.schedule().alpha_bars[int(level)])
        scaled, sigma = points * math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
        return lambda y: empirical_score(y, scaled, sigma)
    sigma = float(level) if method.has_levels else method.fixed_level()    # NCSN, FM: the level; DSM: its σ; ESM/SSM: 0
    return (lambda y: empirical_score(y, points, sigma)) if sigma > 0 else None


@dataclass
class Measurement:
    """What the memorisation meter measured: the samples, the fresh data and the training points it
    compared, the sampler that drew the samples and memorisation_report's figures."""
    samples: torch.Tensor
    fresh: torch.Tensor
    points: torch.Tensor
    sampler: str
    sigma_min: float
    report: dict


def measure(model: torch.nn.Module, cfg: fitting.ToyConfig, density, points: torch.Tensor, n: int = 1000,
            seed: int = 0, c: float = NEAR_FACTOR, progress: Callable[[float, str], None] | None = None,
            cancelled: Callable[[], bool] = lambda: False) -> Measurement | None:
    """The meter for a trained model: n samples of its natural sampler (Method.natural_sampler with the
    CLI's default options, as `toy evaluate --train-set`) and n fresh samples of `density`, compared with
    the training `points` at threshold c·σ_min (σ_min: the model's smallest level). None if cancelled()."""
    if points is None or len(points) == 0:
        raise ValueError("no training set to compare with: train with a fixed dataset of N points")
    method = fitting.method_for(cfg, density)
    name = method.natural_sampler
    score = fitting.score_model(model, cfg, density)
    if not score.sigma_min > 0:
        raise ValueError("the meter needs a smallest noise level σ_min > 0 (ESM/SSM models have none)")
    sampler = build_sampler(name, score, method.sampler_defaults(name))
    gen = torch.Generator().manual_seed(seed)
    x = fitting.initial_for(sampler, n, sampler.default_init, density.plot_bounds(), gen)
    every = max(1, sampler.n_steps // 50)

    def report(info: dict):
        k = info["k"]
        if progress and k % every == 0:
            progress(k / sampler.n_steps, f"{sampler.title}: step {k}/{sampler.n_steps}")

    try:
        x = sampler.run(x, gen, progress=report, cancelled=cancelled).x
    except Cancelled:
        return None
    fresh = density.sample(n, gen)
    points = torch.as_tensor(points, dtype=torch.float32)
    return Measurement(x, fresh, points, sampler.title, score.sigma_min,
                       memorisation_report(x, points, fresh, score.sigma_min, c))
