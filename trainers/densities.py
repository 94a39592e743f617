"""2D Gaussian-mixture densities: the one density type everything else uses.

`p(x) = Σ_k w_k N(x; μ_k, Σ_k)` with exact log-density, score and sampling. Adding Gaussian
noise keeps it a mixture, so the "true" score of any noised density is exact and cheap:

- `noised(σ)`        p_σ = p * N(0, σ²I): covariances Σ_k + σ²I (NCSN / DSM target, docs/math.md §2, §4)
- `ddpm_marginal(ᾱ)` q(x_t) for x_t = √ᾱ x_0 + √(1−ᾱ) ε: means √ᾱ μ_k, covariances ᾱΣ_k + (1−ᾱ)I (docs/math.md §5)

Parameters are stored as float64 tensors; `log_prob`/`score` return the dtype of `x`.

Classes: a component may carry a class label (an int, `"label"` in the JSON, with the class names in a
top-level `"classes"` list); a mixture without labels is one class. `conditional(c)` is p(x|c), the
class's components with their weights renormalised (a mixture again, so its noised versions and exact
scores come for free); `class_weights()` are p(c) = Σ_{k in c} w_k; `class_posterior(x)` is p(c|x).

Evaluation is three dense matrix products (docs of `GaussianMixture`): with y = x − c (c the centre
of the means) and features φ(y) = (y₀², y₀y₁, y₁², y₀, y₁), all K log-terms are one (N×5)·(5×K)
product computed in float64 (the expanded quadratic cancels badly in float32 for narrow components);
the softmax runs in x's dtype, and the score −(Σ_k r_k P_k) y + Σ_k r_k P_k(μ_k − c) is one more
(N×K)·(K×5) product. Rows are processed in cache-sized chunks spread over the CPU cores. For large
mixtures (K ≥ trainers.truncation.MIN_COMPONENTS) each region of query points uses only the components
that can change p there by more than a stated relative tolerance (docs/math.md §12); exact=True opts out.
"""
from __future__ import annotations

import json
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from . import truncation
from .atomic import atomic_write_text

MAX_COMPONENTS = 5000
_LOG_2PI = math.log(2 * math.pi)
# Work on at most this many (particle, component) pairs per chunk: (N×K) blocks stay in cache.
_CHUNK_PAIRS = 1 << 17
_LOG_FLOOR = -80.0
_N_WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_N_WORKERS, thread_name_prefix="gmm")
        return _POOL


def _parallel_rows(fn, n: int, rows: int) -> None:
    """Call fn(lo, hi) over row blocks of at most `rows` rows; on all cores when torch itself runs
    on one thread (the explorer and the CLIs set that), else block by block (torch parallelises)."""
    blocks = [(lo, min(n, lo + rows)) for lo in range(0, n, rows)]
    if len(blocks) == 1 or _N_WORKERS == 1 or torch.get_num_threads() > 1 \
            or threading.current_thread().name.startswith("gmm"):
        for lo, hi in blocks:
            fn(lo, hi)
        return
    per = -(-len(blocks) // _N_WORKERS)
    groups = [blocks[i:i + per] for i in range(0, len(blocks), per)]

    def run(group):
        for lo, hi in group:
            fn(lo, hi)
    futures = [_pool().submit(run, g) for g in groups[1:]]
    run(groups[0])
    for f in futures:
        f.result()


def _rows_kernel(y, T, t, S, dtype, logp=None, score=None, resp=None) -> None:
    """One block of rows: y (n, 2) centred float64 points against the tables T (5, K), t (K,) and
    S (5, K) (docs of GaussianMixture; S in `dtype`), writing into the given outputs."""
    y0, y1 = y[:, 0], y[:, 1]
    phi = torch.stack([y0 * y0, y0 * y1, y1 * y1, y0, y1], 1)
    e = torch.addmm(t, phi, T)                               # (n, K) log w_k N_k, float64
    if dtype != torch.float64:
        e = e.to(dtype)
    mx = e.amax(1, keepdim=True)
    # terms below e⁻⁸⁰ of the largest change p by < K·e⁻⁸⁰ (relative); clamping them keeps exp
    # out of the (very slow) subnormal range
    e.sub_(mx).clamp_(min=_LOG_FLOOR).exp_()
    tot = e.sum(1, keepdim=True)
    if logp is not None:
        logp.copy_((mx + tot.log()).squeeze(1))
    if score is not None:
        q = torch.mm(S, e.t()).div_(tot.t()).to(torch.float64)   # Σ r (a, b, d, Pm₀, Pm₁)
        score[:, 0] = q[3] - q[0] * y0 - q[1] * y1
        score[:, 1] = q[4] - q[1] * y0 - q[2] * y1
    if resp is not None:
        torch.div(e, tot, out=resp)


class DensityError(ValueError):
    """An invalid density (bad JSON, bad parameters); the message names the offending part."""


def _validate(weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> None:
    """Vectorised checks; a failure names the first offending component."""
    k = len(weights)
    if k == 0:
        raise DensityError("the mixture is empty: it needs at least one component")
    if k > MAX_COMPONENTS:
        raise DensityError(f"the mixture has {k} components; at most {MAX_COMPONENTS} are allowed")
    if weights.shape != (k,) or means.shape != (k, 2) or covs.shape != (k, 2, 2):
        raise DensityError(
            f"shapes do not fit a 2D mixture: weights {weights.shape}, means {means.shape}, "
            f"covs {covs.shape}; expected ({k},), ({k}, 2), ({k}, 2, 2)")

    def first(bad: np.ndarray):
        idx = np.flatnonzero(bad)
        return int(idx[0]) if len(idx) else None

    finite = np.isfinite(weights) & np.isfinite(means).all(1) & np.isfinite(covs).all((1, 2))
    neg = weights < 0
    with np.errstate(invalid="ignore"):
        scale = np.maximum(1.0, np.abs(covs).max((1, 2)))
        asym = np.abs(covs[:, 0, 1] - covs[:, 1, 0]) > 1e-9 * scale
        det = covs[:, 0, 0] * covs[:, 1, 1] - covs[:, 0, 1] * covs[:, 1, 0]
        notpd = ~((covs[:, 0, 0] > 0) & (det > 0))
    for i in sorted(j for j in (first(~finite), first(finite & neg), first(finite & asym),
                                first(finite & notpd)) if j is not None)[:1]:
        if not finite[i]:
            raise DensityError(f"component {i}: contains NaN or infinity")
        if neg[i]:
            raise DensityError(f"component {i}: weight {weights[i]:g} is negative")
        if asym[i]:
            raise DensityError(f"component {i}: covariance {covs[i].tolist()} is not symmetric")
        raise DensityError(f"component {i}: covariance {covs[i].tolist()} is not positive definite")
    if weights.sum() <= 0:
        raise DensityError("all component weights are zero")


def _check_labels(labels, classes, k: int) -> tuple[torch.Tensor, tuple[str, ...]]:
    """(labels as a long tensor (K,), class names) from the optional `labels` (K ints) and `classes`
    (names); no labels: every component in class 0; labels without names: "class 0", "class 1", …"""
    names: tuple[str, ...] = ()
    if classes is not None:
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) and c.strip() for c in classes):
            raise DensityError(f"\"classes\" must be a list of non-empty names, got {classes!r}")
        names = tuple(classes)
        if len(set(names)) != len(names):
            raise DensityError(f"\"classes\" names a class twice: {list(names)}")
    if labels is None:
        return torch.zeros(k, dtype=torch.long), names
    labels = list(labels) if not isinstance(labels, (np.ndarray, torch.Tensor)) else labels.tolist()
    if len(labels) != k:
        raise DensityError(f"{len(labels)} labels for {k} components")
    for i, lab in enumerate(labels):
        if isinstance(lab, bool) or not isinstance(lab, (int, np.integer)):
            raise DensityError(f"component {i}: label {lab!r} is not an integer class index")
        if lab < 0 or (names and lab >= len(names)):
            known = f"the classes 0…{len(names) - 1} ({', '.join(names)})" if names else "non-negative indices"
            raise DensityError(f"component {i}: label {lab} is outside {known}")
    out = torch.tensor([int(v) for v in labels], dtype=torch.long)
    if not names:
        names = tuple(f"class {i}" for i in range(int(out.max()) + 1))
    return out, names


class GaussianMixture:
    """A 2D Gaussian mixture. Weights are normalised on construction; bounds = (xmin, xmax, ymin, ymax);
    optional per-component class `labels` (ints) and class names `classes` (module docstring).

    Precomputed once (float64): precisions P_k = (a, b; b, d), log-normalisers, and with the centre
    c and m_k = μ_k − c the tables
        log w_k N(x; μ_k, Σ_k) = φ(y)·T_k + t_k,  φ(y) = (y₀², y₀y₁, y₁², y₀, y₁),  y = x − c,
        T_k = (−a/2, −b, −d/2, (P m)₀, (P m)₁),    t_k = log w_k − ½ log det 2πΣ_k − ½ mᵀP m,
        S_k = (a, b, d, (P m)₀, (P m)₁)            (score = −(Σ r_k P_k) y + Σ r_k P_k m_k).
    """

    def __init__(self, weights, means, covs, name: str = "", bounds: Sequence[float] | None = None,
                 labels=None, classes: Sequence[str] | None = None):
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        m = np.asarray(means, dtype=np.float64)
        c = np.asarray(covs, dtype=np.float64)
        _validate(w, m, c)
        self.labels, self.classes = _check_labels(labels, classes, len(w))
        self.weights = torch.from_numpy(w / w.sum())
        self.means = torch.from_numpy(m.copy())
        self.covs = torch.from_numpy(c.copy())
        self.name = name
        if bounds is not None:
            b = [float(v) for v in bounds]
            if len(b) != 4 or not all(map(math.isfinite, b)) or b[0] >= b[1] or b[2] >= b[3]:
                raise DensityError(f"bounds {list(bounds)} must be [xmin, xmax, ymin, ymax] with min < max")
            bounds = tuple(b)
        self.bounds = bounds
        self._build_tables()

    # Set by trainers.grid.paint/erase: how this mixture was made from its parent (a weak reference),
    # so a cached picture of the parent can be updated with just the changed components.
    edit = None

    def _build_tables(self) -> None:
        w, m, c = self.weights.numpy(), self.means.numpy(), self.covs.numpy()
        c01 = 0.5 * (c[:, 0, 1] + c[:, 1, 0])
        det = c[:, 0, 0] * c[:, 1, 1] - c01 ** 2
        a, b, d = c[:, 1, 1] / det, -c01 / det, c[:, 0, 0] / det
        self._precisions = torch.from_numpy(np.stack([np.stack([a, b], -1), np.stack([b, d], -1)], -2))
        with np.errstate(divide="ignore"):
            log_norm = np.log(w) - 0.5 * np.log(det) - _LOG_2PI
        self._log_norm = torch.from_numpy(log_norm)
        self._centre = 0.5 * (m.min(0) + m.max(0))
        mc = m - self._centre
        pm0, pm1 = a * mc[:, 0] + b * mc[:, 1], b * mc[:, 0] + d * mc[:, 1]
        self._T = torch.from_numpy(np.stack([-0.5 * a, -b, -0.5 * d, pm0, pm1]))          # (5, K)
        self._t = torch.from_numpy(log_norm - 0.5 * (mc[:, 0] * pm0 + mc[:, 1] * pm1))    # (K,)
        self._S = torch.from_numpy(np.stack([a, b, d, pm0, pm1], 1))                      # (K, 5)
        self._cache: dict = {}

    # ----------------------------------------------------------------- classes
    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def labelled(self) -> bool:
        """Do the components carry classes (JSON "classes"/"label")? Unlabelled: one class."""
        return bool(self.classes)

    @property
    def n_classes(self) -> int:
        return max(1, len(self.classes))

    def class_index(self, c) -> int:
        """A class given by index or name, as an index (DensityError naming the classes otherwise)."""
        if isinstance(c, str) and c in self.classes:
            return self.classes.index(c)
        if isinstance(c, str) and c.lstrip("-").isdigit():
            c = int(c)
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < self.n_classes:
            return int(c)
        names = ", ".join(f"{i} ({n})" for i, n in enumerate(self.classes)) or "0 (the only class)"
        raise DensityError(f"no class {c!r} in {self.name or 'this density'}; its classes are {names}")

    def class_weights(self) -> torch.Tensor:
        """p(c) = Σ_{k: label_k = c} w_k, float64 (n_classes,)."""
        return torch.zeros(self.n_classes, dtype=torch.float64).index_add_(0, self.labels, self.weights)

    def conditional(self, c) -> "GaussianMixture":
        """p(x|c): the components of class c (index or name), weights renormalised to sum to 1.
        It keeps the class names (its labels are all c), the bounds, and is named "<name>|<class>"."""
        i = self.class_index(c)
        keep = (self.labels == i).numpy()
        if not keep.any() or float(self.weights[keep].sum()) <= 0:
            raise DensityError(f"class {i} ({self.classes[i] if self.classes else 'all'}) has no component with weight")
        label = self.classes[i] if self.classes else str(i)
        return GaussianMixture(self.weights.numpy()[keep], self.means.numpy()[keep], self.covs.numpy()[keep],
                               name=f"{self.name}|{label}", bounds=self.bounds,
                               labels=self.labels.numpy()[keep] if self.labelled else None,
                               classes=self.classes or None)

    def class_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """p(c|x) = Σ_{k in c} r_k(x), shape (N, n_classes), in x's dtype (float32 for other dtypes)."""
        r = self.responsibilities(x)
        return torch.zeros(len(r), self.n_classes, dtype=r.dtype).index_add_(1, self.labels, r)

    # ----------------------------------------------------------------- evaluation

    def _score_table(self, dtype) -> torch.Tensor:
        if dtype not in self._cache:
            self._cache[dtype] = self._S.t().to(dtype).contiguous()      # (5, K)
        return self._cache[dtype]

    def _evaluate(self, x, want_logp=False, want_score=False, want_resp=False):
        """The chunked, multi-core kernel behind log_prob / score / responsibilities."""
        x = torch.as_tensor(x)
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        n, k = len(x), self.n_components
        y = x.detach().to(torch.float64).reshape(-1, 2) - torch.from_numpy(self._centre)
        T, t = self._T, self._t
        S = self._score_table(dtype) if want_score else None
        logp = torch.empty(n, dtype=dtype) if want_logp else None
        score = torch.empty(n, 2, dtype=dtype) if want_score else None
        resp = torch.empty(n, k, dtype=dtype) if want_resp else None

        def block(lo, hi):
            _rows_kernel(y[lo:hi], T, t, S, dtype, logp[lo:hi] if want_logp else None,
                         score[lo:hi] if want_score else None, resp[lo:hi] if want_resp else None)

        if n:
            with torch.no_grad():
                _parallel_rows(block, n, max(16, _CHUNK_PAIRS // k))
        return logp, score, resp

    def _evaluate_some(self, x, want_logp, want_score, exact):
        """log p and/or score: the truncated kernel (trainers.truncation) when the mixture is large,
        the query set big enough and `exact` is False and it saves work; else the full one."""
        x = torch.as_tensor(x)
        if not exact and self.n_components >= truncation.MIN_COMPONENTS and len(x) >= truncation.MIN_POINTS:
            out = truncation.evaluate(self, x, want_logp, want_score, _rows_kernel, _parallel_rows)
            if out is not None:
                return out
        logp, score, _ = self._evaluate(x, want_logp=want_logp, want_score=want_score)
        return logp, score

    # x that needs a gradient (likelihood by the PF-ODE differentiates the exact score) takes the
    # direct, autograd-friendly form; everything else the fast kernel. For K ≥ truncation.MIN_COMPONENTS
    # the fast kernel skips, per block of points, the components whose share of p is provably below a
    # relative tolerance (docs/math.md §12; 1e-6 for float32 x, 1e-15 for float64); exact=True never skips.
    def log_prob(self, x: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """log p(x) for x of shape (N, 2)."""
        x = torch.as_tensor(x)
        if x.requires_grad and torch.is_grad_enabled():
            return _reference_log_prob(self, x)
        return self._evaluate_some(x, True, False, exact)[0]

    def score(self, x: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """∇ₓ log p(x) = −Σ_k r_k(x) Σ_k⁻¹ (x − μ_k), r the posterior responsibilities."""
        x = torch.as_tensor(x)
        if x.requires_grad and torch.is_grad_enabled():
            return _reference_score(self, x)
        return self._evaluate_some(x, False, True, exact)[1]

    def log_prob_and_score(self, x: torch.Tensor, exact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Both at the cost of one."""
        return self._evaluate_some(x, True, True, exact)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities r_k(x), shape (N, K)."""
        return self._evaluate(x, want_resp=True)[2]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n float32 samples, drawn with `generator` (reproducible for a fixed seed)."""
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(n float32 samples, their classes (n,) long): the same draws as `sample` with the same generator."""
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covs)
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        x = self.means[idx] + torch.einsum("nij,nj->ni", chol[idx], z)
        return x.float(), self.labels[idx]

    def mean(self) -> torch.Tensor:
        """E[x] = Σ w_k μ_k, float64 (2,)."""
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self) -> torch.Tensor:
        """Cov[x] = Σ w_k (Σ_k + μ_k μ_kᵀ) − E[x] E[x]ᵀ, float64 (2, 2)."""
        m = self.mean()
        second = (self.weights[:, None, None] * (self.covs + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        return second - m[:, None] * m[None, :]

    # ----------------------------------------------------------------- transforms
    def _with(self, means, covs) -> "GaussianMixture":
        """A mixture with the same weights (already valid: σ²I or ᾱ-scaling keeps covariances PD)."""
        new = object.__new__(GaussianMixture)
        new.weights, new.means, new.covs = self.weights, means, covs
        new.name, new.bounds = self.name, self.bounds
        new.labels, new.classes = self.labels, self.classes
        new._build_tables()
        return new

    def noised(self, sigma: float) -> "GaussianMixture":
        """p_σ = p * N(0, σ²I)."""
        eye = torch.eye(2, dtype=torch.float64)
        return self._with(self.means, self.covs + float(sigma) ** 2 * eye)

    def ddpm_marginal(self, alpha_bar: float) -> "GaussianMixture":
        """q(x_t) when x_t = √ᾱ x_0 + √(1−ᾱ) ε and x_0 ~ p."""
        ab = float(alpha_bar)
        eye = torch.eye(2, dtype=torch.float64)
        return self._with(math.sqrt(ab) * self.means, ab * self.covs + (1 - ab) * eye)

    def plot_bounds(self, margin: float = 0.15) -> tuple[float, float, float, float]:
        """A square view box: the stored bounds, or the components' 3-σ extent plus a margin."""
        if self.bounds is not None:
            return self.bounds
        sd = torch.sqrt(torch.diagonal(self.covs, dim1=1, dim2=2))
        lo = (self.means - 3 * sd).min(0).values
        hi = (self.means + 3 * sd).max(0).values
        centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * (1 + margin)
        return (float(centre[0]) - half, float(centre[0]) + half, float(centre[1]) - half, float(centre[1]) + half)

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        d = {"kind": "gmm", "components": [
            {"weight": float(w), "mean": m.tolist(), "cov": c.tolist()}
            for w, m, c in zip(self.weights.numpy(), self.means.numpy(), self.covs.numpy())]}
        if self.labelled:
            d["classes"] = list(self.classes)
            for comp, lab in zip(d["components"], self.labels.tolist()):
                comp["label"] = lab
        if self.name:
            d["name"] = self.name
        if self.bounds is not None:
            d["bounds"] = list(self.bounds)
        return d

    @classmethod
    def from_dict(cls, d) -> "GaussianMixture":
        if not isinstance(d, dict):
            raise DensityError("a density must be a JSON object with \"kind\" and \"components\"")
        if d.get("kind") != "gmm":
            raise DensityError(f"unknown density kind {d.get('kind')!r}; expected \"gmm\"")
        comps = d.get("components")
        if not isinstance(comps, list):
            raise DensityError("\"components\" must be a list of {weight, mean, cov} objects")
        if len(comps) > MAX_COMPONENTS:
            raise DensityError(f"the mixture has {len(comps)} components; at most {MAX_COMPONENTS} are allowed")
        w, m, c, labels = [], [], [], []
        for i, comp in enumerate(comps):
            try:
                wi = float(comp["weight"])
                mi = np.asarray(comp["mean"], dtype=np.float64)
                ci = np.asarray(comp["cov"], dtype=np.float64)
            except (KeyError, TypeError, ValueError) as e:
                raise DensityError(f"component {i}: needs numeric \"weight\", \"mean\" and \"cov\" ({e})") from None
            if mi.shape != (2,) or ci.shape != (2, 2):
                raise DensityError(f"component {i}: mean must be [x, y] and cov [[a, b], [b, c]]; "
                                   f"got shapes {mi.shape} and {ci.shape}")
            w.append(wi), m.append(mi), c.append(ci)
            labels.append(comp.get("label"))
        missing = [i for i, lab in enumerate(labels) if lab is None]
        if missing and len(missing) < len(labels):
            raise DensityError(f"component {missing[0]}: no \"label\" while other components have one "
                               "(label every component, or none for a one-class density)")
        return cls(np.array(w), np.array(m).reshape(-1, 2), np.array(c).reshape(-1, 2, 2),
                   name=str(d.get("name", "")), bounds=d.get("bounds"),
                   labels=None if missing else labels, classes=d.get("classes"))

    def save(self, path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path) -> "GaussianMixture":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise DensityError(f"no density file at {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DensityError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def __repr__(self) -> str:
        return f"GaussianMixture(name={self.name!r}, n_components={self.n_components})"


# ============================================================================ reference (autograd path, test oracle)
def _reference_log_components(d: GaussianMixture, x: torch.Tensor):
    """The direct (N, K, 2) form: log w_k N(x; μ_k, Σ_k) and P_k (x − μ_k). Differentiable in x."""
    means, prec, log_norm = (t.to(dtype=x.dtype, device=x.device) for t in (d.means, d._precisions, d._log_norm))
    diff = x[:, None, :] - means[None]
    pdiff = torch.einsum("kij,nkj->nki", prec, diff)
    return log_norm[None] - 0.5 * (diff * pdiff).sum(-1), pdiff


def _reference_chunks(d: GaussianMixture, x: torch.Tensor):
    rows = max(1, (1 << 21) // d.n_components)
    return x.split(rows) if len(x) > rows else (x,)


def _reference_log_prob(d: GaussianMixture, x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return torch.cat([torch.logsumexp(_reference_log_components(d, c)[0], dim=1) for c in _reference_chunks(d, x)])


def _reference_score(d: GaussianMixture, x) -> torch.Tensor:
    x = torch.as_tensor(x)
    out = []
    for c in _reference_chunks(d, x):
        logc, pdiff = _reference_log_components(d, c)
        out.append(-(torch.softmax(logc, dim=1)[..., None] * pdiff).sum(1))
    return torch.cat(out)


def _reference_responsibilities(d: GaussianMixture, x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return torch.cat([torch.softmax(_reference_log_components(d, c)[0], dim=1) for c in _reference_chunks(d, x)])


# ============================================================================ constructors
def _iso(n: int, var: float) -> np.ndarray:
    return np.tile(np.eye(2) * var, (n, 1, 1))


def _along_curve(points: np.ndarray, std: float, name: str, bounds, weights=None) -> GaussianMixture:
    w = np.ones(len(points)) if weights is None else weights
    return GaussianMixture(w, points, _iso(len(points), std**2), name=name, bounds=bounds)


def _preset_two_gaussians():
    return GaussianMixture([0.8, 0.2], [[-3.0, 0.0], [3.0, 0.0]], _iso(2, 0.5**2),
                           "two_gaussians", (-6, 6, -6, 6))


def _preset_eight_gaussians():
    a = np.arange(8) * 2 * np.pi / 8
    return _along_curve(4 * np.stack([np.cos(a), np.sin(a)], 1), 0.4, "eight_gaussians", (-6, 6, -6, 6))


def _preset_rings():
    pts, w = [], []
    for r, n in ((1.5, 24), (3.5, 56)):
        a = np.arange(n) * 2 * np.pi / n
        pts.append(r * np.stack([np.cos(a), np.sin(a)], 1))
        w.append(np.full(n, r / n))      # equal mass per unit length, both rings
    return _along_curve(np.concatenate(pts), 0.2, "rings", (-5, 5, -5, 5), np.concatenate(w))


def _preset_two_moons():
    a = np.linspace(0, np.pi, 24)
    upper = np.stack([np.cos(a), np.sin(a)], 1)
    lower = np.stack([1 - np.cos(a), 0.5 - np.sin(a)], 1)
    pts = 2.0 * (np.concatenate([upper, lower]) - [0.5, 0.25])
    return _along_curve(pts, 0.18, "two_moons", (-4, 4, -4, 4))


def _preset_spiral():
    t = np.linspace(0.5, 3.0 * np.pi, 60)
    pts = 0.4 * np.stack([t * np.cos(t), t * np.sin(t)], 1)
    return _along_curve(pts, 0.2, "spiral", (-5, 5, -5, 5))


def _preset_checkerboard():
    pts = []
    side = 2.0
    for i in range(4):
        for j in range(4):
            if (i + j) % 2 == 0:
                x0, y0 = -4 + i * side, -4 + j * side
                for u in (0.25, 0.75):
                    for v in (0.25, 0.75):
                        pts.append([x0 + u * side, y0 + v * side])
    return _along_curve(np.array(pts), 0.3, "checkerboard", (-5, 5, -5, 5))


def _preset_swiss_roll():
    t = np.linspace(1.5 * np.pi, 4.5 * np.pi, 70)
    pts = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 3.0
    # equal mass per unit arc length: weight ∝ local speed |d(pts)/dt| ∝ sqrt(1 + t²)
    return _along_curve(pts, 0.2, "swiss_roll", (-6, 6, -6, 6), np.sqrt(1 + t**2))


def _preset_three_classes():
    """Three classes of unequal weight (0.5, 0.3, 0.2), two components each with unequal weights,
    off-centre, "left"'s and "bottom"'s inner components close enough to overlap at moderate noise."""
    means = np.array([[-1.0, 0.5], [1.0, 2.0],        # left
                      [2.5, 1.5], [3.5, -1.0],        # right
                      [1.5, -1.5], [0.0, -0.5]])      # bottom
    weights = np.array([0.3, 0.2, 0.2, 0.1, 0.15, 0.05])
    covs = _iso(6, 0.35 ** 2)
    covs[1] = [[0.6 ** 2, 0.1], [0.1, 0.25 ** 2]]
    covs[3] = [[0.25 ** 2, 0.0], [0.0, 0.6 ** 2]]
    return GaussianMixture(weights, means, covs, "three_classes", (-3.5, 6.5, -4.5, 5.5),
                           labels=[0, 0, 1, 1, 2, 2], classes=["left", "right", "bottom"])


def tree_mixture(depth: int = 5, seed: int = 2, per_branch: int = 6) -> GaussianMixture:
    """Two classes ("A", "B") of tree-shaped mixtures, in the spirit of the 2D toy of Karras et al.
    2024 (NVlabs/edm2 toy_example.py), our own construction: each branch is `per_branch` thin
    components along a segment, branching in two at each of `depth` levels with the length shrinking
    by 0.8 and the weight halving per level, so the tips hold little mass (the modes CFG drops)."""
    rnd = np.random.default_rng(seed)
    w, m, c, lab = [], [], [], []

    def branch(cls, level, pos, angle):
        if level >= depth:
            return
        u = np.array([np.cos(angle), np.sin(angle)])
        length = 1.2 * 0.8 ** level * (1 + 0.15 * rnd.standard_normal())
        width = 0.08 * 0.8 ** level
        cov = np.outer(u, u) * (0.5 * length / per_branch) ** 2 + (np.eye(2) - np.outer(u, u)) * width ** 2
        for t in np.linspace(0.08, 0.92, per_branch):
            w.append(length * 0.5 ** level), m.append(pos + u * length * t), c.append(cov), lab.append(cls)
        for sign in (1, -1):
            branch(cls, level + 1, pos + u * length, angle + sign * 0.7 ** level * (1 + 0.15 * rnd.standard_normal()))

    branch(0, 0, np.array([0.0, 0.0]), np.pi / 4)
    branch(1, 0, np.array([0.0, 0.0]), 5 * np.pi / 4)
    return GaussianMixture(np.array(w), np.array(m), np.array(c), "tree", (-4, 4, -4, 4),
                           labels=lab, classes=["A", "B"])


_PRESETS = {
    "two_gaussians": _preset_two_gaussians,
    "eight_gaussians": _preset_eight_gaussians,
    "rings": _preset_rings,
    "two_moons": _preset_two_moons,
    "spiral": _preset_spiral,
    "checkerboard": _preset_checkerboard,
    "swiss_roll": _preset_swiss_roll,
    "three_classes": _preset_three_classes,
    "tree": tree_mixture,
}
PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)
DEFAULT_DENSITY = "eight_gaussians"


def preset(name: str) -> GaussianMixture:
    try:
        return _PRESETS[name]()
    except KeyError:
        raise DensityError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}") from None


def load_density(spec: str) -> GaussianMixture:
    """A preset name, or the path of a density JSON file."""
    if spec in _PRESETS:
        return preset(spec)
    if spec.endswith(".json") or Path(spec).exists():
        return GaussianMixture.load(spec)
    raise DensityError(f"{spec!r} is neither a preset ({', '.join(PRESET_NAMES)}) nor a density JSON file")


@dataclass(frozen=True)
class Stroke:
    """A brush stroke in data coordinates. `width` is the brush diameter; erase strokes remove components.
    `label`: the class of the painted components (None: an unlabelled stroke, class 0 in a labelled mixture)."""
    points: np.ndarray
    width: float
    strength: float = 1.0
    erase: bool = False
    label: int | None = None


def _resample_polyline(points: np.ndarray, spacing: float) -> np.ndarray:
    if len(points) == 1:
        return points
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 1e-12:
        return points[:1]
    n = max(1, int(math.ceil(s[-1] / spacing))) + 1
    u = np.linspace(0, s[-1], n)
    return np.stack([np.interp(u, s, points[:, 0]), np.interp(u, s, points[:, 1])], 1)


def kept_by_eraser(means: np.ndarray, stroke: Stroke) -> np.ndarray:
    """Boolean mask of the component means an erase stroke keeps: those at least width/2 from its path."""
    pts = np.asarray(stroke.points, dtype=np.float64).reshape(-1, 2)
    path = _resample_polyline(pts, stroke.width / 4)
    if len(means) == 0:
        return np.zeros(0, dtype=bool)
    return np.linalg.norm(means[:, None, :] - path[None], axis=2).min(1) > stroke.width / 2


def from_strokes(strokes: Iterable[Stroke], name: str = "drawn", bounds=None,
                 max_components: int = MAX_COMPONENTS) -> GaussianMixture:
    """Each painting stroke becomes isotropic components of std width/4, spaced width/4 along its
    path, each of weight `strength`; an erase stroke removes components closer than width/2 to it."""
    means = np.zeros((0, 2))
    weights = np.zeros(0)
    stds = np.zeros(0)
    labels = np.zeros(0, dtype=int)
    strokes = list(strokes)
    labelled = any(st.label is not None for st in strokes)
    for st in strokes:
        pts = np.asarray(st.points, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0 or not np.all(np.isfinite(pts)) or not st.width > 0:
            raise DensityError("a stroke needs at least one finite point and a positive width")
        if st.erase:
            keep = kept_by_eraser(means, st)
            means, weights, stds, labels = means[keep], weights[keep], stds[keep], labels[keep]
            continue
        path = _resample_polyline(pts, st.width / 4)
        labels = np.concatenate([labels, np.full(len(path), st.label or 0)])
        means = np.concatenate([means, path])
        weights = np.concatenate([weights, np.full(len(path), float(st.strength))])
        stds = np.concatenate([stds, np.full(len(path), st.width / 4)])
    if len(means) == 0:
        raise DensityError("nothing is drawn: paint at least one stroke")
    if len(means) > max_components:
        keep = np.linspace(0, len(means) - 1, max_components).round().astype(int)
        scale = len(means) / max_components
        means, weights, stds, labels = means[keep], weights[keep] * scale, stds[keep], labels[keep]
    covs = stds[:, None, None] ** 2 * np.eye(2)[None]
    return GaussianMixture(weights, means, covs, name=name, bounds=bounds, labels=labels if labelled else None,
                           classes=brush_classes(int(labels.max()) + 1) if labelled else None)


BRUSH_CLASSES = ("red", "blue", "green", "orange")     # the Density tab's brush classes, by colour


def brush_classes(n: int) -> list[str]:
    """The first n brush class names (at least one; "class K" beyond the named colours)."""
    return [BRUSH_CLASSES[i] if i < len(BRUSH_CLASSES) else f"class {i}" for i in range(max(1, n))]


def from_points(points, bandwidth: float, name: str = "points", bounds=None,
                max_components: int = MAX_COMPONENTS, seed: int = 0) -> GaussianMixture:
    """Kernel density estimate: one N(x_i, h²I) component per point (a random subset if too many)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not bandwidth > 0:
        raise DensityError(f"bandwidth must be positive, got {bandwidth}")
    if len(pts) > max_components:
        pts = pts[np.random.default_rng(seed).choice(len(pts), max_components, replace=False)]
    return GaussianMixture(np.ones(len(pts)), pts, _iso(len(pts), bandwidth**2), name=name, bounds=bounds)


def from_image(gray, bounds=(-4.0, 4.0, -4.0, 4.0), max_components: int = 2000,
               name: str = "image") -> GaussianMixture:
    """Pixels become components weighted by intensity (1 = bright = mass). Row 0 is the top of the
    image (largest y). The image is block-averaged until at most `max_components` pixels are lit."""
    img = np.asarray(gray, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 1 or not np.all(np.isfinite(img)):
        raise DensityError(f"an image density needs a finite 2D grayscale array, got shape {img.shape}")
    img = np.clip(img, 0, None)
    while np.count_nonzero(img > 1e-3 * max(img.max(), 1e-12)) > max_components:
        h, w = (img.shape[0] + 1) // 2 * 2, (img.shape[1] + 1) // 2 * 2
        pad = np.zeros((h, w))
        pad[:img.shape[0], :img.shape[1]] = img
        img = pad.reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    if img.max() <= 0:
        raise DensityError("the image is black everywhere: nothing to make a density from")
    xmin, xmax, ymin, ymax = bounds
    h, w = img.shape
    dx, dy = (xmax - xmin) / w, (ymax - ymin) / h
    rows, cols = np.nonzero(img > 1e-3 * img.max())
    means = np.stack([xmin + (cols + 0.5) * dx, ymax - (rows + 0.5) * dy], 1)
    covs = np.tile(np.diag([(0.5 * dx) ** 2, (0.5 * dy) ** 2]), (len(means), 1, 1))
    return GaussianMixture(img[rows, cols], means, covs, name=name, bounds=bounds)
