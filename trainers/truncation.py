"""Truncated evaluation of large Gaussian mixtures: per region of query points, only the components
that can matter there (docs/math.md §12).

With e_k(x) = log w_k N(x; μ_k, Σ_k), λ⁻_k the smallest eigenvalue of the precision P_k and d_k the
distance from μ_k to a box B holding some query points,
    e_k(x) ≤ U_k = log w_k − ½ log det 2πΣ_k − ½ λ⁻_k d_k²      for every x ∈ B,
and for each query point x, ℓ(x) = e_j(x) for its nearest mean μ_j is ≤ max_k e_k(x); L = min over
the region's points of ℓ(x). Components with U_k < L − C, C = log(K / tol), are dropped: at every
point of the region their total is < K e^{−C} e^{L} ≤ tol · max_k e^{e_k(x)} ≤ tol · p_kept(x), so
    |p_trunc − p| / p ≤ tol,   |log p_trunc − log p| ≤ tol,   dropped responsibility < tol,
    |score_trunc − score| ≤ tol · max over dropped k of |P_k(x − μ_k) + score_trunc(x)|.
tol is 1e-6 for float32 x (about float32's own rounding of a sum over many terms) and 1e-15 for
float64 x. Regions are squares holding about POINTS_PER_REGION points if spread evenly over the
points' central 90 % (outliers join the edge regions); B is the bounding box of a region's points.
Each region runs the full kernel (densities._rows_kernel) on its candidate components only.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import spatial

MIN_COMPONENTS = 512      # below this the full kernel is as fast
MIN_POINTS = 2048         # … and for fewer query points the regions do not pay (a 1k-particle panel: no gain)
TOL = {torch.float32: 1e-6, torch.float64: 1e-15}
POINTS_PER_REGION = 600
MAX_KEPT_FRACTION = 0.6   # if more (point, component) pairs than this survive, use the full kernel …
SKIP_AFTER_FALLBACK = 15  # … and for this mixture's next this-many calls too (it rarely changes)
_CHUNK_PAIRS = 1 << 17
_REGION_INDEX_LIMIT = 1 << 20


def _tables(d) -> dict:
    """Per-mixture constants, cached on the mixture (float64)."""
    if "truncation" not in d._cache:
        prec = d._precisions
        a, b, dd = prec[:, 0, 0], prec[:, 0, 1], prec[:, 1, 1]
        lam_min = (0.5 * (a + dd) - torch.sqrt((0.5 * (a - dd)) ** 2 + b ** 2)).clamp(min=0.0)
        means = d.means - torch.from_numpy(d._centre)
        d._cache["truncation"] = {"lam_min": lam_min, "means": means,
                                  "tree": spatial.cKDTree(means.numpy())}
    return d._cache["truncation"]


def _regions(y: torch.Tensor):
    """Sort points into square regions. Returns (order, points per region), regions in sorted order."""
    n = len(y)
    q = torch.quantile(y[::max(1, n // 2048)], torch.tensor([0.05, 0.95], dtype=y.dtype), dim=0)
    extent = (q[1] - q[0]).clamp(min=1e-12)
    side = math.sqrt(float(extent.prod()) * POINTS_PER_REGION / n)
    cells = torch.ceil(extent / side).clamp(1, _REGION_INDEX_LIMIT).long()
    ij = torch.minimum(torch.floor((y - q[0]) / side).clamp(min=-1, max=_REGION_INDEX_LIMIT).long() + 1,
                       cells + 1)
    order = torch.argsort(ij[:, 0] * (cells[1] + 2) + ij[:, 1])
    _, counts = torch.unique_consecutive((ij[order, 0] * (cells[1] + 2) + ij[order, 1]), return_counts=True)
    return order, counts


def _nearest_term(d, tab, ys: torch.Tensor) -> torch.Tensor:
    """ℓ(x) = log w_j N(x; μ_j, Σ_j) for the nearest mean μ_j: a lower bound of max_k e_k(x)."""
    _, j = tab["tree"].query(ys.numpy())
    j = torch.from_numpy(np.asarray(j, dtype=np.int64))
    diff = ys - tab["means"][j]
    prec = d._precisions[j]
    quad = prec[:, 0, 0] * diff[:, 0] ** 2 + 2 * prec[:, 0, 1] * diff[:, 0] * diff[:, 1] \
        + prec[:, 1, 1] * diff[:, 1] ** 2
    return d._log_norm[j] - 0.5 * quad


def selection(d, y: torch.Tensor, tol: float):
    """The regions and what they keep, for centred float64 points y (y = x − d._centre): (order of
    the points, points per region in that order, boolean (regions × K) mask of kept components)."""
    tab = _tables(d)
    order, counts = _regions(y)
    ys = y[order]
    n_reg = len(counts)
    region = torch.repeat_interleave(torch.arange(n_reg), counts)
    idx = region[:, None].expand(-1, 2)
    lo = torch.full((n_reg, 2), math.inf, dtype=ys.dtype).scatter_reduce(0, idx, ys, "amin")
    hi = torch.full((n_reg, 2), -math.inf, dtype=ys.dtype).scatter_reduce(0, idx, ys, "amax")
    low = torch.full((n_reg,), math.inf, dtype=ys.dtype).scatter_reduce(0, region, _nearest_term(d, tab, ys), "amin")
    m = tab["means"]
    near2 = (m[None] - torch.minimum(torch.maximum(m[None], lo[:, None]), hi[:, None])).square_().sum(2)
    upper = d._log_norm[None] - 0.5 * tab["lam_min"][None] * near2
    return order, counts, upper >= (low - math.log(d.n_components / tol))[:, None]


def evaluate(d, x: torch.Tensor, want_logp: bool, want_score: bool, kernel, parallel):
    """(log p or None, score or None) by the truncated kernel, or None when it would not save work
    (components overlapping everywhere, non-finite points). `kernel` is densities._rows_kernel;
    `parallel(fn, n, rows)` runs fn(lo, hi) over blocks of range(n) on the CPU cores."""
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    tol = TOL[dtype]
    y = x.detach().to(torch.float64).reshape(-1, 2) - torch.from_numpy(d._centre)
    n, k = len(y), d.n_components
    if not bool(torch.isfinite(y).all()):
        return None
    tab = _tables(d)
    if tab.get("skip", 0) > 0:          # it fell back recently (overlapping components): no bounds for a while
        tab["skip"] -= 1
        return None
    with torch.no_grad():
        order, counts, keep = selection(d, y, tol)
        ys = y[order]
        n_reg = len(counts)
        kept = keep.sum(1)
        if float((kept * counts).sum()) > MAX_KEPT_FRACTION * n * k:
            tab["skip"] = SKIP_AFTER_FALLBACK
            return None
        starts = (torch.cumsum(counts, 0) - counts).tolist()
        counts_l = counts.tolist()
        S_full = d._score_table(dtype) if want_score else None
        logp = torch.empty(n, dtype=dtype) if want_logp else None
        score = torch.empty(n, 2, dtype=dtype) if want_score else None

        def run_region(r):
            cols = keep[r].nonzero().squeeze(1)
            T, t = d._T[:, cols], d._t[cols]
            S = S_full[:, cols] if want_score else None
            a, b = starts[r], starts[r] + counts_l[r]
            rows = max(16, _CHUNK_PAIRS // max(1, len(cols)))
            for lo_ in range(a, b, rows):
                hi_ = min(b, lo_ + rows)
                kernel(ys[lo_:hi_], T, t, S, dtype, logp[lo_:hi_] if want_logp else None,
                       score[lo_:hi_] if want_score else None)

        parallel(lambda lo_, hi_: [run_region(r) for r in range(lo_, hi_)], n_reg, 1)
        lp_out = sc_out = None
        if want_logp:
            lp_out = torch.empty(n, dtype=dtype)
            lp_out[order] = logp
        if want_score:
            sc_out = torch.empty(n, 2, dtype=dtype)
            sc_out[order] = score
    return lp_out, sc_out
