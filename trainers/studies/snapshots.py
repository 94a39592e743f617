"""The History tab's study: one weight snapshot of a training run, pictured three ways. Plain torch, no Qt.

For a network at one training step, `snapshot_pictures` gives (a) the learned and the true score on a
grid at the model's least-noisy level (trainers.studies.score_field), with the Fisher divergence there
(fitting.fisher_metric: the Training tab's number, on the same fixed samples); (b) the model's PF-ODE
log-density on a coarse grid and its NLL of fresh samples beside the true one
(trainers.studies.learned_density; noise-conditional models only); (c) fresh samples from the model's
natural sampler (annealed Langevin for NCSN, DDPM for DDPM, Langevin otherwise). Fixed seeds, so two
snapshots differ only by their weights. Progress is reported and a cancel honoured between chunks and
sampler steps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .. import fitting
from ..samplers import Cancelled
from .learned_density import LearnedDensity, compute_learned_density
from .score_field import score_field

# Fractions of the progress bar for the three pictures.
FIELD_DONE = 0.05
DENSITY_DONE = 0.6
# The natural sampler's options where its registry default is slow for a picture: annealed Langevin
# with 20 steps per level (as the Samplers tab), not 100.
SAMPLER_OVERRIDES = {"annealed": {"steps": 20}}


@dataclass
class SnapshotPictures:
    """The three pictures of one snapshot (arrays for drawing, numbers for reading)."""
    step: int
    bounds: tuple
    level_label: str                  # the least-noisy level the field and the Fisher divergence are at
    points: np.ndarray                # (n², 2) arrow origins, row-major (trainers.grid.grid_points)
    true_field: np.ndarray            # (n², 2) ∇log p at that level
    learned_field: np.ndarray         # (n², 2) s_θ at that level
    cell: float                       # arrow grid spacing
    fisher: float                     # E‖s_θ − ∇log p‖² at that level (samples of its density)
    density: LearnedDensity | None    # PF-ODE log p and NLLs; None for models without noise levels
    density_note: str                 # why there is no density ('' when there is one)
    samples: np.ndarray               # (n_particles, 2) from the natural sampler
    sampler: str                      # its registry name
    seconds: float


def snapshot_pictures(model: torch.nn.Module, cfg: fitting.ToyConfig, density, bounds, step: int,
                      n_arrows: int = 20, n_grid: int = 32, n_steps: int = 16, n_nll: int = 500,
                      n_particles: int = 1500, seed: int = 0,
                      progress: Callable[[float, str], None] | None = None,
                      cancelled: Callable[[], bool] | None = None) -> SnapshotPictures | None:
    """The pictures of `model` (trained with cfg on `density`) at training step `step`; None if cancelled."""
    progress = progress or (lambda f, w: None)
    cancelled = cancelled or (lambda: False)
    t0 = time.perf_counter()
    model.eval()
    # (a) the score field at the least-noisy level
    method = fitting.method_for(cfg)
    level = method.levels()[0]
    field = score_field(model, cfg, density, level.value, bounds, n_arrows)
    fisher, _ = fitting.fisher_metric(cfg, density)(model)
    progress(FIELD_DONE, "score field")
    if cancelled():
        return None
    # (b) the learned density by the PF-ODE
    learned, note = None, ""
    if method.has_levels:
        learned = compute_learned_density(
            fitting.score_model(model, cfg, density), density, bounds, n_grid=n_grid, n_steps=n_steps,
            n_samples=n_nll, seed=seed, cancelled=cancelled,
            progress=lambda f, what: progress(FIELD_DONE + (DENSITY_DONE - FIELD_DONE) * f, f"density ({what})"))
        if learned is None:
            return None
    else:
        note = (f"{cfg.objective} trains at a single noise level: the PF-ODE needs a score at every level "
                "(NCSN or DDPM)")
    # (c) fresh samples from the model's own sampler
    name = method.natural_sampler
    sampler = fitting.make_sampler(name, cfg, model, density, **SAMPLER_OVERRIDES.get(name, {}))
    gen = torch.Generator().manual_seed(seed)
    x = fitting.initial_for(sampler, n_particles, generator=gen)

    def report(info: dict):
        if (info["k"] - 1) % 20 == 0:          # after steps 1, 21, 41, …
            progress(DENSITY_DONE + (1 - DENSITY_DONE) * info["k"] / sampler.n_steps, "samples")

    try:
        x = sampler.run(x, gen, progress=report, cancelled=cancelled).x
    except Cancelled:
        return None
    progress(1.0, "samples")
    return SnapshotPictures(
        step=int(step), bounds=tuple(bounds), level_label=level.label, points=field.points,
        true_field=field.true, learned_field=field.learned, cell=field.cell, fisher=float(fisher),
        density=learned, density_note=note, samples=x.double().numpy(), sampler=name,
        seconds=time.perf_counter() - t0)


def problem(result: SnapshotPictures) -> str:
    """Why a finished result is reported as a failure ('' when its Fisher divergence is finite)."""
    if math.isfinite(result.fisher):
        return ""
    return f"the snapshot at step {result.step} gives a non-finite score (the model had diverged there)"
