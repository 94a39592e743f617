"""Grid evaluation and incremental mixture editing for the explorer (Qt-free, no drawing).

The explorer draws densities, score fields and histograms on regular grids, and edits a density
one brush stroke at a time. The maths for both lives here so `explorer/` holds none.

Image convention: arrays returned for images are row-major, `img[i, j]` is the value at
`y = ys[i]`, `x = xs[j]` (row 0 = smallest y; pyqtgraph's `imageAxisOrder="row-major"` with the
y axis pointing up shows it the right way round).
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Callable

import contourpy
import numpy as np
import torch

from .densities import DensityError, GaussianMixture, Stroke, brush_classes, from_strokes, kept_by_eraser

Bounds = tuple[float, float, float, float]


# ============================================================================ grids
def grid_axes(bounds: Bounds, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates of an n×n grid covering bounds = (xmin, xmax, ymin, ymax)."""
    xmin, xmax, ymin, ymax = bounds
    dx, dy = (xmax - xmin) / n, (ymax - ymin) / n
    return xmin + (np.arange(n) + 0.5) * dx, ymin + (np.arange(n) + 0.5) * dy


def grid_points(bounds: Bounds, n: int) -> torch.Tensor:
    """(n*n, 2) float32 points, row-major: point i*n + j is (xs[j], ys[i])."""
    xs, ys = grid_axes(bounds, n)
    gx, gy = np.meshgrid(xs, ys)
    return torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32))


def density_image(density: GaussianMixture, bounds: Bounds, n: int = 160, dtype=torch.float32) -> np.ndarray:
    """p(x) on an n×n grid, row-major (see module doc), float64; evaluated in float32 by default (a
    picture: relative accuracy ~1e-6 is plenty, and float32 exp is twice as fast)."""
    with torch.no_grad():
        lp = density.log_prob(grid_points(bounds, n).to(dtype))
    return np.exp(lp.double().numpy()).reshape(n, n)


FLAT_TOL = 0.15      # a level is "flat" when the cells within ±15 % of it …
FLAT_MASS = 0.5      # … hold at least half of the mass shown (a plateau, not a slope)


def contour_levels(img: np.ndarray, n_levels: int = 5) -> list[float]:
    """Density levels enclosing roughly 20%, 40%, … of the mass shown on the grid (highest-density regions).

    A level inside a plateau (a near-constant region, e.g. an image's evenly lit area: its pixels'
    Gaussians leave a ripple of a few per cent) would trace that ripple as many tiny loops. A level
    is flat when the cells within ±FLAT_TOL of it hold at least FLAT_MASS of the mass (a 2D
    Gaussian's band holds at most 2·FLAT_TOL of it); flat levels are replaced by one level at half
    the lowest of them, which outlines the plateau."""
    v = np.sort(img.ravel())[::-1]
    c = np.cumsum(v)
    if c[-1] <= 0:
        return []
    c /= c[-1]
    fracs = np.linspace(0, 1, n_levels + 2)[1:-1]
    levels = sorted({float(v[min(np.searchsorted(c, f), len(v) - 1)]) for f in fracs})
    total = float(v.sum())
    flat = [lev for lev in levels
            if float(v[np.abs(v - lev) <= FLAT_TOL * lev].sum()) >= FLAT_MASS * total]
    if not flat:
        return levels
    outline = 0.5 * min(flat)
    return sorted({lev for lev in levels if lev not in flat} | {outline})


def smoothed(img: np.ndarray, cells: float = 1.0) -> np.ndarray:
    """img blurred by a Gaussian of std `cells` grid cells (edges repeated), for tracing contours: a
    ripple finer than a few cells (an image density's pixel Gaussians) would otherwise cut a gentle
    slope's level line into many small loops; smooth densities' contours barely move."""
    img = np.asarray(img, dtype=np.float64)
    if cells <= 0:
        return img.copy()
    r = int(math.ceil(3 * cells))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / cells) ** 2)
    k /= k.sum()
    p = np.pad(img, r, mode="edge")
    rows = sum(w * p[:, i:i + img.shape[1]] for i, w in enumerate(k))          # along x
    return sum(w * rows[i:i + img.shape[0], :] for i, w in enumerate(k))       # along y


def contour_lines(img: np.ndarray, bounds: Bounds, levels) -> tuple[np.ndarray, np.ndarray]:
    """x, y of the level lines of an n×n grid image (row-major, values at the cells' centres as in
    grid_axes) at each of `levels`, linearly interpolated along cell edges (marching squares, by
    contourpy); all lines in one pair of arrays, separated by NaN (for one connect="finite" line)."""
    img = np.asarray(img, dtype=np.float64)
    xs, ys = grid_axes(bounds, img.shape[1])[0], grid_axes(bounds, img.shape[0])[1]
    gen = contourpy.contour_generator(xs, ys, img, line_type=contourpy.LineType.ChunkCombinedNan)
    parts = [pts for lev in levels for pts in gen.lines(float(lev))[0] if pts is not None and len(pts)]
    if not parts:
        return np.zeros(0), np.zeros(0)
    sep = np.full((1, 2), np.nan)
    pts = np.concatenate([q for part in parts for q in (part, sep)][:-1])
    return pts[:, 0], pts[:, 1]


def marginal_x(density: GaussianMixture, xs: np.ndarray) -> np.ndarray:
    """Exact marginal density of the first coordinate, p(x₁) = Σ_k w_k N(x₁; μ_k1, Σ_k,11)."""
    w = density.weights.numpy()
    mu = density.means[:, 0].numpy()
    var = density.covs[:, 0, 0].numpy()
    z = (np.asarray(xs, dtype=np.float64)[:, None] - mu[None]) ** 2 / var[None]
    return (w[None] * np.exp(-0.5 * z) / np.sqrt(2 * math.pi * var[None])).sum(1)


def field_on_grid(fn: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor) -> np.ndarray:
    """Evaluate a vector field (score function) at points, without autograd bookkeeping left over."""
    with torch.no_grad():
        return fn(points).detach().double().numpy()


def shared_arrow_scale(fields: list[np.ndarray], cell: float, quantile: float = 0.95) -> float:
    """One length scale for several fields drawn on the same grid: the `quantile` magnitude of all
    fields together maps to `cell` (one grid spacing), so true and learned arrows compare by length."""
    mags = np.concatenate([np.linalg.norm(f, axis=1) for f in fields if f is not None and len(f)])
    mags = mags[np.isfinite(mags)]
    ref = float(np.quantile(mags, quantile)) if len(mags) else 0.0
    return cell / ref if ref > 0 else 0.0


# ============================================================================ stroke-by-stroke editing
# The canvas keeps unnormalised mass: a painted component has mass `strength`, exactly as in
# `densities.from_strokes`; a density that did not come from strokes (preset, file, image) gets a
# total mass of one unit per component, so a brush dab weighs about as much as one preset component.
def initial_mass(density: GaussianMixture) -> float:
    return float(density.n_components)


def paint(density: GaussianMixture | None, mass: float, stroke: Stroke,
          bounds=None) -> tuple[GaussianMixture, float]:
    """Add one painted stroke's components (from `from_strokes`) to a mixture of total mass `mass`."""
    if stroke.erase:
        return erase(density, mass, stroke)
    new = from_strokes([stroke], bounds=bounds)
    # from_strokes gives every component weight `strength`; its total mass (before normalising):
    new_mass = float(stroke.strength) * new.n_components
    if density is None or mass <= 0:
        return GaussianMixture(new.weights.numpy(), new.means.numpy(), new.covs.numpy(),
                               name="drawn", bounds=bounds, **_classes_of(None, new, stroke)), new_mass
    w = np.concatenate([density.weights.numpy() * mass, new.weights.numpy() * new_mass])
    m = np.concatenate([density.means.numpy(), new.means.numpy()])
    c = np.concatenate([density.covs.numpy(), new.covs.numpy()])
    out = GaussianMixture(w, m, c, name="drawn", bounds=bounds, **_classes_of(density, new, stroke))
    out.edit = Edit(weakref.ref(density), added=np.arange(density.n_components, out.n_components))
    return out, mass + new_mass


def _classes_of(density: GaussianMixture | None, new: GaussianMixture, stroke: Stroke) -> dict:
    """labels/classes of `density` + the stroke's components: unlabelled unless either carries classes
    (an unlabelled side is class 0; the brush names classes by colour, densities.brush_classes)."""
    if stroke.label is None and (density is None or not density.labelled):
        return {}
    old = density.labels.numpy() if density is not None else np.zeros(0, dtype=int)
    labels = np.concatenate([old, np.full(new.n_components, stroke.label or 0)])
    names = list(density.classes) if density is not None and density.labelled else []
    names += brush_classes(int(labels.max()) + 1)[len(names):]
    return {"labels": labels, "classes": names}


@dataclass(frozen=True)
class Edit:
    """`child` = `parent` with components appended (`added`: their indices in child) or removed
    (`removed`: their indices in parent). `parent` is a weak reference."""
    parent: "weakref.ref[GaussianMixture]"
    added: np.ndarray | None = None
    removed: np.ndarray | None = None


def _part(density: GaussianMixture, idx: np.ndarray) -> tuple[GaussianMixture, float]:
    """The sub-mixture of components idx (renormalised) and its share f of density's mass."""
    w = density.weights.numpy()[idx]
    return GaussianMixture(w, density.means.numpy()[idx], density.covs.numpy()[idx]), float(w.sum())


# a changed part is evaluated only within this many of its components' largest standard deviations
# of their means: farther out each is below e^{-PART_REACH²/2} = 1e-12 of its own peak density
PART_REACH = math.sqrt(2 * math.log(1e12))


def _part_image(part: GaussianMixture, bounds: Bounds, n: int) -> np.ndarray:
    """p_part on the n×n grid (float64 array, evaluated in float32 as density_image), computed only
    at pixels within PART_REACH standard deviations (widest direction) of some component's mean;
    elsewhere 0, where each of the part's weighted components is below 1e-12 of its own peak."""
    xs, ys = grid_axes(bounds, n)
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    means = part.means.numpy()
    reach = PART_REACH * np.sqrt(np.linalg.eigvalsh(part.covs.numpy())[:, 1])
    c0 = np.clip(np.floor((means[:, 0] - reach - xs[0]) / dx), 0, n).astype(int)
    c1 = np.clip(np.ceil((means[:, 0] + reach - xs[0]) / dx) + 1, 0, n).astype(int)
    r0 = np.clip(np.floor((means[:, 1] - reach - ys[0]) / dy), 0, n).astype(int)
    r1 = np.clip(np.ceil((means[:, 1] + reach - ys[0]) / dy) + 1, 0, n).astype(int)
    mask = np.zeros((n, n), dtype=bool)
    for a, b, c, d in zip(r0, r1, c0, c1):
        mask[a:b, c:d] = True
    rows, cols = np.nonzero(mask)
    img = np.zeros((n, n))
    if len(rows):
        # float32 like density_image (a picture), at the same pixel coordinates as grid_points
        pts = torch.from_numpy(np.stack([xs[cols], ys[rows]], 1).astype(np.float32))
        with torch.no_grad():
            img[rows, cols] = np.exp(part.log_prob(pts).double().numpy())
    return img


def updated_image(old: GaussianMixture, old_img: np.ndarray, new: GaussianMixture, bounds: Bounds,
                  n: int) -> np.ndarray | None:
    """The n×n picture of `new` from the picture of `old` when one is a stroke/erasure of the other
    (either direction: undo and redo too), evaluating only the changed components:
        p_new = (1 − f) p_old + f p_part    (f = the added part's share of new's mass),
        p_new = (p_old − f p_part) / (1 − f) (f = the removed part's share of old's mass),
    i.e. p_new = (m_old p_old ± m_part p_part) / m_new. None when they are not related by one edit."""
    for child, parent, forward in ((new, old, True), (old, new, False)):
        e = child.edit
        if e is None or e.parent() is not parent:
            continue
        if e.added is not None:                       # child = parent + part
            part, f = _part(child, e.added)
            add = f * _part_image(part, bounds, n)
            if forward:
                return (1 - f) * old_img + add
            return np.clip(old_img - add, 0, None) / (1 - f)
        part, f = _part(parent, e.removed)             # child = parent − part
        sub = f * _part_image(part, bounds, n)
        if forward:
            return np.clip(old_img - sub, 0, None) / (1 - f)
        return (1 - f) * old_img + sub
    return None


def erase(density: GaussianMixture | None, mass: float, stroke: Stroke) -> tuple[GaussianMixture, float]:
    """Remove components whose mean is closer than width/2 to the stroke (the rule of `from_strokes`).
    Raises DensityError if nothing would be left."""
    if density is None:
        raise DensityError("nothing to erase")
    means = density.means.numpy()
    keep = kept_by_eraser(means, stroke)
    if keep.all():
        return density, mass
    if not keep.any():
        raise DensityError("erasing this would leave an empty density; use Clear to start over")
    w = density.weights.numpy()
    kept_mass = mass * float(w[keep].sum())
    out = GaussianMixture(w[keep], means[keep], density.covs.numpy()[keep],
                          name=density.name, bounds=density.bounds,
                          labels=density.labels.numpy()[keep] if density.labelled else None,
                          classes=density.classes or None)
    out.edit = Edit(weakref.ref(density), removed=np.flatnonzero(~keep))
    return out, kept_mass
