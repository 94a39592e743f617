"""The Learned-density tab's study — what the model learned, as a density: the PF-ODE log-density of a
score model on a grid and on fresh samples (trainers.likelihood.pf_ode_log_density), beside the true
log p_{σ_min}. The ODE's end term is the exact p_σmax for the exact score and the Gaussian matched to the
training data's moments for a network (docs/math.md §10), so the gap shown is the model's, not an
origin-centred prior's.

Plain torch (no Qt). The grid and the samples go through the ODE in chunks, so `compute_learned_density`
reports progress and honours a cancel between chunks (pf_ode_log_density itself has no callback);
`problem(result)` says why a finished result is no answer.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .. import fitting
from .. import grid
from ..likelihood import pf_ode_log_density
from ..metrics import ddpm_elbo_nats

GRID_CHUNKS = 8          # progress steps for the grid
SAMPLE_CHUNKS = 2        # … and for the NLL samples


@dataclass
class LearnedDensity:
    """log p on an n×n grid (row-major, row 0 = ymin) and the NLLs, all in nats."""
    bounds: tuple
    n_grid: int
    n_steps: int
    sigma_min: float
    sigma_max: float
    model_logp: np.ndarray           # (n, n): log p_{σ_min} as the model implies it (PF-ODE)
    true_logp: np.ndarray            # (n, n): the drawn density's log p_{σ_min}
    model_nll: float                 # −E log p_model(x), x ~ p_{σ_min} (fresh samples)
    true_nll: float                  # −E log p_{σ_min}(x) on the same samples: the floor
    n_samples: int
    grid_seconds: float
    seconds: float
    elbo: dict | None = None         # DDPM: trainers.metrics.ddpm_elbo_nats of clean samples
    clean_true_nll: float | None = None   # DDPM: −E log p(x₀) of those clean samples
    range_note: str = ""

    @property
    def difference(self) -> np.ndarray:
        return self.model_logp - self.true_logp

    @property
    def gap(self) -> float:
        """model NLL − true NLL: an estimate of KL(p_{σ_min} ‖ p_model) ≥ 0."""
        return self.model_nll - self.true_nll

    @property
    def elbo_holds(self) -> bool | None:
        """DDPM: is −ELBO ≥ the true NLL of clean data (no bound on −log p_θ may go below the floor)?"""
        if self.elbo is None or self.clean_true_nll is None:
            return None
        return self.elbo["elbo_nats"] >= self.clean_true_nll


def compute_learned_density(score_model, density, bounds, n_grid: int = 48, n_steps: int = 30,
                            n_samples: int = 1000, ddpm: tuple | None = None, seed: int = 0,
                            progress: Callable[[float, str], None] | None = None,
                            cancelled: Callable[[], bool] | None = None) -> LearnedDensity | None:
    """PF-ODE log-density of `score_model` (over its own σ range, exact 2D divergence, Heun) on an
    n_grid² grid over bounds and on n_samples fresh samples of p_{σ_min}; the truth beside it. With
    `ddpm` = (ε-network, DDPMSchedule), also the −ELBO of n_samples clean samples. None if cancelled."""
    progress = progress or (lambda f, w: None)
    cancelled = cancelled or (lambda: False)
    t0 = time.perf_counter()
    lo, hi = float(score_model.sigma_min), float(score_model.sigma_max)
    if not hi > lo > 0:
        raise ValueError(f"the PF-ODE needs a noise-conditioned model (σ from {lo:.3g} to {hi:.3g} given)")
    target = density.noised(lo)
    points = grid.grid_points(bounds, n_grid)
    gen = torch.Generator().manual_seed(seed)
    samples = target.sample(n_samples, gen).float()
    total = len(points) + len(samples)
    done = 0

    def through_ode(x: torch.Tensor, chunks: int, what: str) -> torch.Tensor | None:
        nonlocal done
        out = []
        for piece in x.chunk(chunks):
            if cancelled():
                return None
            out.append(pf_ode_log_density(score_model, piece, lo, hi, n_steps, "exact"))
            done += len(piece)
            progress(0.95 * done / total, what)
        return torch.cat(out)

    model_grid = through_ode(points, GRID_CHUNKS, "grid")
    if model_grid is None:
        return None
    grid_seconds = time.perf_counter() - t0
    model_x = through_ode(samples, SAMPLE_CHUNKS, "samples")
    if model_x is None:
        return None
    with torch.no_grad():
        true_grid = target.log_prob(points.double())
        true_x = target.log_prob(samples.double())
    elbo = clean_nll = None
    if ddpm is not None:
        if cancelled():
            return None
        net, schedule = ddpm
        x0 = density.sample(n_samples, gen).float()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)            # the ELBO's x_t draws use the global generator
            elbo = ddpm_elbo_nats(net, schedule, x0)
        with torch.no_grad():
            clean_nll = float(-density.log_prob(x0.double()).mean())
        progress(1.0, "ELBO")
    else:
        progress(1.0, "samples")
    n = n_grid
    return LearnedDensity(
        bounds=tuple(bounds), n_grid=n, n_steps=n_steps, sigma_min=lo, sigma_max=hi,
        model_logp=model_grid.numpy().reshape(n, n), true_logp=true_grid.numpy().reshape(n, n),
        model_nll=float(-model_x.mean()), true_nll=float(-true_x.mean()), n_samples=n_samples,
        grid_seconds=grid_seconds, seconds=time.perf_counter() - t0, elbo=elbo, clean_true_nll=clean_nll,
        range_note=score_model.range_note())


def of_model(model, cfg: fitting.ToyConfig, trained_on, density, bounds, n_grid: int = 48, n_steps: int = 30,
             n_samples: int = 1000, progress: Callable[[float, str], None] | None = None,
             cancelled: Callable[[], bool] | None = None) -> LearnedDensity | None:
    """compute_learned_density for a network trained with cfg on `trained_on` (its own σ range and data
    moments), against the drawn `density`; a DDPM model's −ELBO beside it. None if cancelled."""
    sm = fitting.score_model(model, cfg, trained_on)
    schedule = fitting.method_for(cfg).schedule()
    ddpm = (model, schedule) if schedule is not None else None
    return compute_learned_density(sm, density, bounds, n_grid=n_grid, n_steps=n_steps, n_samples=n_samples,
                                   ddpm=ddpm, progress=progress, cancelled=cancelled)


def model_problem(cfg: fitting.ToyConfig) -> str:
    """Why a model trained with cfg has no learned density ('' when it has a score at every level)."""
    if fitting.method_for(cfg).has_levels:
        return ""
    return (f"The model was trained with {cfg.objective} at a single noise level: the PF-ODE needs a score at "
            "every level, so train an NCSN or DDPM model for this tab.")


def problem(result: LearnedDensity) -> str:
    """Why a finished result is reported as a failure ('' when its NLLs are finite)."""
    if math.isfinite(result.model_nll) and math.isfinite(result.true_nll):
        return ""
    return ("learned density: the PF-ODE gave a non-finite log-density "
            "(the model may have diverged); train on, then Compute again")
