"""The score field at one noise level, as the Score-field and History tabs draw it: the learned score
s_θ and the true score ∇log p of the level's target density (p_σ, or the DDPM marginal q(x_t)) on an
n × n grid of arrow origins, the error map ‖s_θ − ∇log p‖ on a finer grid, and the empirical optimal
score of a fixed training set (trainers.studies.memorisation). Plain torch and numpy, no Qt.

Conventions: grid points are row-major with row 0 at ymin (trainers.grid.grid_points); fields are
float64 (n², 2) arrays; `level` is a `fitting.Level.value` (σ, or the 0-based timestep t for DDPM).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import fitting
from .. import grid
from . import memorisation


Level = fitting.Level      # one noise level a model has a score for (label, σ or t)


def levels(cfg: fitting.ToyConfig, density=None) -> list[Level]:
    """The levels a model trained with cfg (on `density`: an automatic σ₁ is its) has a score for,
    least noisy first: the slider's stops."""
    return fitting.method_for(cfg, density).levels()


def training_points(cfg: fitting.ToyConfig, density) -> torch.Tensor | None:
    """The fixed training set cfg draws from `density` ((N, 2)), None when it trains on fresh data."""
    return fitting.training_data(cfg, density)[1]


@dataclass
class ScoreField:
    """Both fields at one level on the arrow grid."""
    points: np.ndarray               # (n², 2) arrow origins
    true: np.ndarray                 # (n², 2) ∇log p of `target`
    learned: np.ndarray | None       # (n², 2) s_θ; None without a model
    cell: float                      # arrow grid spacing
    target: object                   # the level's target density (a GaussianMixture: contours, heat)
    grid_points: torch.Tensor        # the arrow origins as computed on (float32), for further fields

    @property
    def mean_squared_error(self) -> float | None:
        """Mean ‖s_θ − ∇log p‖² over the grid (None without a model)."""
        if self.learned is None:
            return None
        return float(np.mean(np.sum((self.learned - self.true) ** 2, 1)))


def score_field(model, cfg: fitting.ToyConfig, density, level: float, bounds, n: int) -> ScoreField:
    """The true and (with a model trained with cfg) the learned score at `level` on an n × n grid over bounds."""
    pts = grid.grid_points(bounds, n)
    target = fitting.method_for(cfg).target_density(density, level)
    true = grid.field_on_grid(target.score, pts.double())
    learned = None if model is None else grid.field_on_grid(_learned(model, cfg, level), pts)
    return ScoreField(points=pts.numpy().astype(np.float64), true=true, learned=learned,
                      cell=(bounds[1] - bounds[0]) / n, target=target, grid_points=pts)


def _learned(model, cfg: fitting.ToyConfig, level: float):
    """x ↦ the network's score at `level`, through its ScoreModel (Method.score_field)."""
    method = fitting.method_for(cfg)
    return method.score_field(method.score_model(model), level)


def error_map(model, cfg: fitting.ToyConfig, target, level: float, bounds, n: int, weighted: bool = False) -> np.ndarray:
    """‖s_θ − ∇log p‖ on an n × n grid (row 0 = ymin); weighted: times p(x)/max p (where the error counts
    for the Fisher divergence)."""
    fine = grid.grid_points(bounds, n)
    err = np.linalg.norm(grid.field_on_grid(_learned(model, cfg, level), fine)
                         - grid.field_on_grid(target.score, fine.double()), axis=1).reshape(n, n)
    if weighted:
        p = grid.density_image(target, bounds, n)
        err = err * p / p.max()
    return err


def empirical_field(cfg: fitting.ToyConfig, training_points: torch.Tensor, level: float,
                    points: torch.Tensor) -> np.ndarray | None:
    """The empirical optimal score of `training_points` at `level` on `points`; None at σ = 0 (ESM/SSM),
    where the score of N points is undefined."""
    fn = memorisation.empirical_score_at(cfg, training_points, level)
    return None if fn is None else grid.field_on_grid(fn, points)


@dataclass
class GuidedField:
    """Classifier-free guidance of class c at weight w at one level, on the arrow grid (issue #22)."""
    conditional: np.ndarray          # (n², 2) exact ∇log p_level(x|c)
    unconditional: np.ndarray        # (n², 2) exact ∇log p_level(x)
    guided: np.ndarray               # (n², 2) exact (1 + w)·conditional − w·unconditional
    learned: np.ndarray | None       # (n², 2) a class-conditional model's CFG at w; None otherwise
    note: str = ""                   # why there is no learned guided field, if there is none


def guided_field(model, cfg: fitting.ToyConfig, density, c, w: float, level: float,
                 points: torch.Tensor) -> GuidedField:
    """The exact conditional, unconditional and guided scores of class c (index or name) at `level` on
    `points`, and a class-conditional model's guided score (trainers.conditional.guide)."""
    from ..conditional import guide
    method = fitting.method_for(cfg)
    cond = grid.field_on_grid(method.target_density(density.conditional(c), level).score, points.double())
    uncond = grid.field_on_grid(method.target_density(density, level).score, points.double())
    learned, note = None, ""
    if model is not None:
        try:
            learned = grid.field_on_grid(method.score_field(guide(method.score_model(model), density, c, w), level),
                                         points)
        except ValueError as e:
            note = str(e)
    return GuidedField(cond, uncond, (1 + w) * cond - w * uncond, learned, note)


TILTED_IMAGE_N = 384          # cells per side of the tilted target's heat map (normalised on that grid)


@dataclass
class TiltedImage:
    """The tilted target p_w(x|c) ∝ p(x|c)^{1+w} p(x)^{−w} of the clean data (σ = 0) on a grid, normalised
    there (trainers.guidance.TiltedTarget): what CFG is said to sample, which its samples are not draws of."""
    image: np.ndarray                # (n, n) p_w at the cell centres, row-major, row 0 = ymin
    bounds: tuple                    # (xmin, xmax, ymin, ymax) of the grid (the density's plot box widened by half)
    integral: float                  # Σ p_w · cell area: 1 up to rounding
    edge_mass: float                 # the probability of the grid's outer ring of cells (≈ 0: the box holds p_w)
    w: float
    c: int


def tilted_image(density, c, w: float, n: int = TILTED_IMAGE_N) -> TiltedImage:
    """The tilted target of class c (index or name) at weight w as a heat map."""
    from ..guidance import TiltedTarget
    t = TiltedTarget(density, c, w, n=n)
    return TiltedImage(t.image(), t.bounds, t.integral(), t.edge_mass(), t.w, t.c)
