"""Guidance as a score-model wrapper, so every sampler works with it (docs/math.md, guidance section).

`Guided(model, reference, w)` answers every query a ScoreModel answers (σ-score and ε queries,
batched) with the extrapolation

    s_w(x, σ) = (1 + w) s_model(x, σ) − w s_reference(x, σ)  =  s_model + w (s_model − s_reference),

and, ε being −σ·s, the same combination of ε's. Two uses:

- classifier-free guidance (`cfg`, Ho & Salimans 2022): model = s(x|c), reference = s(x) (the same
  network with the null class). w = 0 is the conditional model, w = −1 the unconditional one; the
  "guidance scale" of diffusers/Stable Diffusion, ε_u + γ(ε_c − ε_u), is γ = 1 + w.
- autoguidance (`autoguidance`, Karras et al. 2024): model = a good model, reference = a weaker one of
  the same task (smaller, or an earlier checkpoint); their weight w_K = 1 + w (edm2's
  `gnet.score.lerp(net.score, guidance)`). With bad = good it is the plain model for every w.

`exact_cfg(density, c, w)` is CFG with the exact scores of p_σ(x|c) (density.conditional(c)) and p_σ(x).
Its samples are *not* draws of the tilted density p_w(x|c) ∝ p(x|c)^{1+w} p(x)^{−w}: the guided score
at σ is the score of the tilted *noised* densities, p_σ(x|c)^{1+w} p_σ(x)^{−w}, which is not the tilted
density noised. `TiltedTarget` computes p_w on a fine grid and draws from it exactly (to the grid's
resolution), so trainers.studies.guidance can measure the difference per sampler.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .densities import GaussianMixture
from .grid import grid_axes, grid_points
from .score_models import ExactScore, Query, ScoreModel

GUIDES = ("cfg", "auto")


class Guided(ScoreModel):
    """(1 + w)·model − w·reference, query by query (module docstring). Its σ range, schedule (VP
    samplers use it) and data moments (the samplers' matched start) are the model's."""
    kind = "guided"

    def __init__(self, model: ScoreModel, reference: ScoreModel, w: float, guide: str = "cfg"):
        if guide not in GUIDES:
            raise ValueError(f"unknown guidance {guide!r}; choose one of {', '.join(GUIDES)}")
        if not math.isfinite(float(w)):
            raise ValueError(f"the guidance weight must be finite, got {w}")
        super().__init__(model.sigma_min, model.sigma_max, valid=model.valid)
        self.model, self.reference, self.w, self.guide = model, reference, float(w), guide
        self.schedule = getattr(model, "schedule", None)
        self.data_mean, self.data_var, self.data_cov = model.data_mean, model.data_var, model.data_cov
        self.description = (f"{'CFG' if guide == 'cfg' else 'autoguidance'} w = {self.w:g} "
                            f"(scale 1 + w = {1 + self.w:g}) on {model.description or model.kind}")
        # at w = 0 the guided score is the model's: an exact model's density is then the chain's exact
        # start (p_σmax(x|c)); for w ≠ 0 no density has this score family, so starts stay matched Gaussians
        if self.w == 0 and getattr(model, "density", None) is not None:
            self.density = model.density

    def evaluate_with_grad(self, queries: list[Query]) -> list[torch.Tensor]:
        if self.w == 0:
            return self.model.evaluate_with_grad(queries)
        a = self.model.evaluate_with_grad(queries)
        b = self.reference.evaluate_with_grad(queries)
        return [(1 + self.w) * ai - self.w * bi for ai, bi in zip(a, b)]

    def range_note(self, sigmas=None) -> str:
        return self.model.range_note(sigmas) or self.reference.range_note(sigmas)

    @property
    def extrapolated(self):
        return self.model.extrapolated

    @extrapolated.setter
    def extrapolated(self, value):       # ScoreModel.__init__ sets it; the wrapped models keep their own
        pass


def cfg(cond: ScoreModel, uncond: ScoreModel, w: float) -> Guided:
    """Classifier-free guidance: (1 + w) s(x|c) − w s(x)."""
    return Guided(cond, uncond, w, "cfg")


def autoguidance(good: ScoreModel, bad: ScoreModel, w: float) -> Guided:
    """Autoguidance: s_good + w (s_good − s_bad) (Karras et al. 2024; their weight is 1 + w)."""
    return Guided(good, bad, w, "auto")


def exact_cfg(density: GaussianMixture, c, w: float, sigma_min: float = 0.01, sigma_max: float | None = None,
              schedule=None) -> Guided:
    """CFG with exact scores: ExactScore of p(x|c) and of p(x), both over the same range (σ_max by the
    σ_max rule of the whole density, or the given DDPM `schedule`'s); the chain starts from the
    Gaussian matched to p_σmax(x|c)."""
    if sigma_max is None and schedule is None:
        from .priors import sigma_max_for
        sigma_max = sigma_max_for(density)
    return cfg(ExactScore(density.conditional(c), sigma_min, sigma_max, schedule),
               ExactScore(density, sigma_min, sigma_max, schedule), w)


# ============================================================================ the tilted target
TILTED_GRID = 768         # cells per side of the grid the tilted density is normalised on


class TiltedTarget:
    """p_w(x|c) = p(x|c)^{1+w} p(x)^{−w} / Z on an n×n grid over `bounds` (default: the density's
    plot box, widened by half on each side). For w ≥ 0 it is at most p(c)^{−w} p(x|c), so it lives where
    p(x|c) does. Z is the midpoint-rule integral; `sample` draws a cell with probability its mass and
    a uniform point inside it (exact up to the piecewise-constant approximation on cells of side h)."""

    def __init__(self, density: GaussianMixture, c, w: float, n: int = TILTED_GRID, bounds=None):
        self.density, self.c, self.w, self.n = density, density.class_index(c), float(w), int(n)
        if bounds is None:
            x0, x1, y0, y1 = density.plot_bounds()
            hx, hy = 0.25 * (x1 - x0), 0.25 * (y1 - y0)
            bounds = (x0 - hx, x1 + hx, y0 - hy, y1 + hy)
        self.bounds = tuple(float(b) for b in bounds)
        self.cell = ((self.bounds[1] - self.bounds[0]) / n, (self.bounds[3] - self.bounds[2]) / n)
        pts = grid_points(self.bounds, n).double()
        with torch.no_grad():
            log_u = (1 + self.w) * density.conditional(self.c).log_prob(pts, exact=True) \
                - self.w * density.log_prob(pts, exact=True)
        shift = float(log_u.max())
        area = self.cell[0] * self.cell[1]
        mass = torch.exp(log_u - shift) * area
        self.log_z = math.log(float(mass.sum())) + shift            # log ∫ p(x|c)^{1+w} p(x)^{−w} dx
        self.log_density = (log_u - self.log_z).reshape(n, n)        # log p_w on the grid, row-major
        self.mass = (mass / mass.sum()).reshape(n, n)                # each cell's probability

    def image(self) -> np.ndarray:
        """p_w on the grid (n, n), row-major (trainers.grid's layout), for a heat map."""
        return self.log_density.exp().numpy()

    def integral(self) -> float:
        """∫ p_w on the grid (1 up to rounding: the normalisation itself)."""
        return float(self.log_density.exp().sum()) * self.cell[0] * self.cell[1]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_w(x) in closed form up to the grid's Z: (1+w) log p(x|c) − w log p(x) − log Z."""
        x = torch.as_tensor(x).double()
        return (1 + self.w) * self.density.conditional(self.c).log_prob(x) - self.w * self.density.log_prob(x) \
            - self.log_z

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n float32 draws: a cell by its mass, then uniform jitter within the cell."""
        idx = torch.multinomial(self.mass.flatten(), n, replacement=True, generator=generator)
        xs, ys = grid_axes(self.bounds, self.n)
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64) - 0.5
        col, row = idx % self.n, idx // self.n
        x = torch.from_numpy(xs)[col] + u[:, 0] * self.cell[0]
        y = torch.from_numpy(ys)[row] + u[:, 1] * self.cell[1]
        return torch.stack([x, y], 1).float()

    def mean(self) -> torch.Tensor:
        """E_{p_w}[x] on the grid, float64 (2,)."""
        return (self.mass.flatten()[:, None] * self._centres()).sum(0)

    def covariance(self) -> torch.Tensor:
        """Cov_{p_w}[x] on the grid (cell-centre second moments plus the uniform jitter's h²/12), float64 (2, 2)."""
        pts, m = self._centres() - self.mean(), self.mass.flatten()[:, None]
        jitter = torch.diag(torch.tensor([self.cell[0] ** 2, self.cell[1] ** 2], dtype=torch.float64)) / 12
        return (m * pts).T @ pts + jitter

    def _centres(self) -> torch.Tensor:
        return grid_points(self.bounds, self.n).double()

    def edge_mass(self) -> float:
        """The probability of the grid's outer ring of cells: near 0 when the box holds p_w."""
        m = self.mass
        return float(m[0].sum() + m[-1].sum() + m[1:-1, 0].sum() + m[1:-1, -1].sum())
