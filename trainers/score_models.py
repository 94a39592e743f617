"""One object for every noise-conditional score: an NCSN σ-model, a DDPM ε-model, a single-level
model and the exact score of a mixture all answer the same two questions (docs/math.md §7):

- `score(y, σ)`      ∇_y log p_σ(y), the score of the data convolved with N(0, σ²I)  (VE coordinates y);
- `eps(x, t, sched)` ε(x_t, t) at timestep t of a DDPM schedule                   (VP coordinates x).

The two are tied by x = √ᾱ_t y and σ_t² = (1−ᾱ_t)/ᾱ_t:
    ε(x, t) = −σ_t s(x/√ᾱ_t, σ_t)        and        s(y, σ) = −ε(y/√(1+σ²), t(σ))/σ.
An ε-model asked for a σ that is not one of its timesteps' is evaluated at the *fractional* timestep
t(σ), interpolated linearly in log σ between the two neighbouring integer timesteps (its sinusoidal
embedding is defined for any real t); at a schedule's own σ_t it is evaluated at exactly t.

A model is only trustworthy on the noise range it was trained on. Asked outside it, it still answers,
but remembers the levels it was asked for (`extrapolated`), and `range_note` says so in words.

Evaluation requests (`Query`) can be batched: `evaluate([...])` concatenates the requests to one
network into a single forward pass (the Samplers tab steps several chains on one model this way).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .schedules import DDPMSchedule

RANGE_TOL = 1e-3      # relative slack on the trained σ range before a level counts as outside it


def _per_sample(v, x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """A scalar or (N,) tensor as an (N,) tensor on x's device (a Python number is filled in on the
    device, not copied from the host)."""
    if isinstance(v, (int, float)):
        return torch.full((len(x),), v, dtype=dtype, device=x.device)
    v = torch.as_tensor(v, device=x.device, dtype=dtype)
    return v.expand(len(x)) if v.ndim == 0 else v.reshape(len(x))


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) → (N, 1, …, 1) so it broadcasts against x (points or images)."""
    return v.reshape(len(x), *([1] * (x.ndim - 1))).to(x.dtype)


@dataclass
class Query:
    """One evaluation request. kind "score": x is y (VE) and `sigma` its VE noise level (N,).
    kind "eps": x is x_t (VP) and `t` the 0-based timestep (N,, long) of `schedule`."""
    kind: str
    x: torch.Tensor
    sigma: torch.Tensor | None = None      # "score": σ per row
    t: torch.Tensor | None = None          # "eps": timestep per row
    schedule: DDPMSchedule | None = None
    level: float | None = None      # the σ of every row when known on the host (a Python-scalar query)

    @classmethod
    def score(cls, y: torch.Tensor, sigma) -> "Query":
        level = float(sigma) if isinstance(sigma, (int, float)) else None
        return cls("score", y, sigma=_per_sample(sigma, y), level=level)

    @classmethod
    def eps(cls, x: torch.Tensor, t, schedule: DDPMSchedule) -> "Query":
        level = host_sigmas(schedule)[t] if isinstance(t, int) else None
        return cls("eps", x, t=_per_sample(t, x, torch.long), schedule=schedule, level=level)

    def noise_level(self) -> torch.Tensor:
        """The VE noise level of this request, (N,): `sigma`, or σ_t of an "eps" request's timestep."""
        if self.kind == "score":
            return self.sigma
        return schedule_sigmas(self.schedule).to(self.x.device)[self.t]

    def sqrt_alpha_bar(self) -> torch.Tensor:
        """√ᾱ_t of an "eps" request, (N,)."""
        return self.schedule.sqrt_alpha_bars.to(self.x.device)[self.t]


def sigma_of_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """σ_t = √((1−ᾱ_t)/ᾱ_t): the VE noise level of DDPM timestep t."""
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def schedule_sigmas(schedule: DDPMSchedule) -> torch.Tensor:
    """σ_t for every timestep, from the schedule's √(1−ᾱ) and √ᾱ tables (exact where 1 − ᾱ is tiny)."""
    return schedule.sqrt_one_minus_alpha_bars / schedule.sqrt_alpha_bars


def host_sigmas(schedule: DDPMSchedule) -> list[float]:
    """σ_t of every timestep as Python floats, read once per schedule object and kept on it, so a
    query at an integer timestep knows its σ without reading the (device) table."""
    table = schedule.__dict__.get("_host_sigmas")
    if table is None:
        table = schedule.__dict__["_host_sigmas"] = schedule_sigmas(schedule).tolist()
    return table


def schedule_sigma_range(schedule: DDPMSchedule) -> tuple[float, float]:
    """(σ of the first timestep, σ of the last): the VE noise range a DDPM schedule covers."""
    sig = schedule_sigmas(schedule)
    return float(sig[0]), float(sig[-1])


class ScoreModel:
    """Base class. Subclasses say how a Query maps to their network's native input (`_prepare`)
    and run the network (`_forward`); conversions and batching live here, once."""

    kind = "model"
    description = ""
    CHUNK = 8192          # rows per network call when several queries are batched together

    def __init__(self, sigma_min: float, sigma_max: float, valid: tuple[float, float] | None = None):
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)   # default sampling range
        self.valid = valid or (self.sigma_min, self.sigma_max)                # trained range (for flags)
        self.extrapolated: list[float] = []          # [lowest, highest] σ asked outside `valid`, if any
        # The data's mean (d,), mean per-dimension variance and, for points, covariance (d, d), where
        # known (the exact score's density; a network's training data): samplers start from the
        # Gaussian matched to p_σmax with them (trainers.samplers.prior_sample), the PF-ODE likelihood
        # closes with it (docs/math.md §10.1). None: the legacy start, centred at the origin.
        self.data_mean: torch.Tensor | None = None
        self.data_var: float | None = None
        self.data_cov: torch.Tensor | None = None

    def with_data_stats(self, mean, var: float | None = None, cov=None) -> "ScoreModel":
        """Record the data's mean (d,) and mean per-dimension variance (default: tr cov / d), and
        optionally its covariance (d, d) (then the matched start is N(m, C + σ²I), else N(m, (v + σ²)I));
        returns self."""
        self.data_mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.data_cov = None if cov is None else torch.as_tensor(cov, dtype=torch.float64).reshape(
            len(self.data_mean), len(self.data_mean))
        if var is None:
            if self.data_cov is None:
                raise ValueError("with_data_stats needs the variance or the covariance")
            var = float(torch.diagonal(self.data_cov).mean())
        self.data_var = float(var)
        return self

    def data_stats(self) -> dict | None:
        """{"mean": [...], "var": v, "cov": [[...]] or None}, JSON-able; None without statistics."""
        if self.data_mean is None:
            return None
        return {"mean": self.data_mean.tolist(), "var": self.data_var,
                "cov": None if self.data_cov is None else self.data_cov.tolist()}

    # -- public API
    @torch.no_grad()
    def score(self, y: torch.Tensor, sigma) -> torch.Tensor:
        return self.evaluate([Query.score(y, sigma)])[0]

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t, schedule: DDPMSchedule) -> torch.Tensor:
        return self.evaluate([Query.eps(x, t, schedule)])[0]

    def denoise(self, y: torch.Tensor, sigma) -> torch.Tensor:
        """Tweedie: D(y, σ) = y + σ² s(y, σ), the posterior mean of the clean sample."""
        s = _per_sample(sigma, y)
        return y + _bcast(s, y) ** 2 * self.score(y, s)

    @torch.no_grad()
    def evaluate(self, queries: list[Query]) -> list[torch.Tensor]:
        """Answer several requests with one network call (inputs concatenated along the batch)."""
        return self.evaluate_with_grad(queries)

    def score_with_grad(self, y: torch.Tensor, sigma) -> torch.Tensor:
        """score(y, σ) differentiable with respect to y (for divergences: trainers.likelihood)."""
        return self.evaluate_with_grad([Query.score(y, sigma)])[0]

    def evaluate_with_grad(self, queries: list[Query]) -> list[torch.Tensor]:
        """`evaluate` without switching autograd off."""
        for q in queries:
            self._flag(q.level if q.level is not None else q.noise_level())
        prepared = [self._prepare(q) for q in queries]
        infer = getattr(getattr(self, "net", None), "infer", None)
        if infer is not None and not torch.is_grad_enabled():
            # the 2D ScoreMLP's inference pass: every request in one call, constant conditions folded
            outs = infer([(p[0], p[1]) for p in prepared])
            return [p[2](o) for p, o in zip(prepared, outs)]
        if len(prepared) == 1:
            inp, cond, finish = prepared[0]
            return [finish(self._forward(inp, cond))]
        inp = torch.cat([p[0] for p in prepared])
        cond = torch.cat([p[1] for p in prepared]) if prepared[0][1] is not None else None
        outs = self._forward_chunked(inp, cond).split([len(p[0]) for p in prepared])
        return [p[2](o) for p, o in zip(prepared, outs)]

    def _forward_chunked(self, inp, cond):
        """One forward pass, in pieces of at most CHUNK rows: on a CPU a 30k-row pass of the 2D MLP is
        slower than three 10k-row ones (its activations leave the cache)."""
        if len(inp) <= self.CHUNK:
            return self._forward(inp, cond)
        pieces = [self._forward(inp[i:i + self.CHUNK], None if cond is None else cond[i:i + self.CHUNK])
                  for i in range(0, len(inp), self.CHUNK)]
        return torch.cat(pieces)

    def in_range(self, sigma: float) -> bool:
        lo, hi = self.valid
        return lo * (1 - RANGE_TOL) <= sigma <= hi * (1 + RANGE_TOL)

    def range_note(self, sigmas=None) -> str:
        """'' when every level in `sigmas` (default: those asked so far) lies in the trained range,
        else one sentence saying which levels the model had to extrapolate to."""
        if sigmas is None:
            outside = self.extrapolated
        else:
            outside = [float(s) for s in torch.as_tensor(sigmas).flatten() if not self.in_range(float(s))]
        if not outside:
            return ""
        lo, hi = self.valid
        trained = f"σ = {lo:.3g}" if math.isclose(lo, hi) else f"σ ∈ [{lo:.3g}, {hi:.3g}]"
        asked = f"σ = {min(outside):.3g}" if math.isclose(min(outside), max(outside)) \
            else f"σ from {min(outside):.3g} to {max(outside):.3g}"
        return f"this {self.kind} model was trained on {trained}; it is also asked for {asked}, where it extrapolates"

    # -- for subclasses
    def _flag(self, sigma: torch.Tensor | float) -> None:
        lo, hi = (sigma, sigma) if isinstance(sigma, float) else (float(sigma.min()), float(sigma.max()))
        for s in {lo, hi}:
            if not self.in_range(s):
                self.extrapolated = [min([s] + self.extrapolated[:1]), max([s] + self.extrapolated[1:])]

    def _prepare(self, q: Query):
        """→ (native input, native condition (N,) or None, finish(native output) → requested quantity)."""
        raise NotImplementedError

    def _forward(self, inp: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class SigmaScoreModel(ScoreModel):
    """An NCSN network s_θ(y, σ), trained on σ ∈ [σ_L, σ₁], or, given `levels`, on those L levels
    only (Song & Ermon's discrete training: a σ between two levels is then flagged too)."""
    kind = "NCSN"
    description = "σ-conditioned score network (NCSN)"

    def __init__(self, net: Callable, sigma_min: float, sigma_max: float, levels=None):
        super().__init__(sigma_min, sigma_max)
        self.net = net
        self.levels = None if levels is None else torch.as_tensor(levels, dtype=torch.float64).flatten()
        self._level_list = None if levels is None else self.levels.tolist()

    def in_range(self, sigma: float) -> bool:
        if self.levels is None:
            return super().in_range(sigma)
        return any(abs(lv - sigma) <= RANGE_TOL * lv for lv in self._level_list)

    def range_note(self, sigmas=None) -> str:
        """As ScoreModel's; with discrete `levels`, a σ between two of them inside the trained range is
        an interpolation (the network never saw it, but it lies between levels it did see), not an
        extrapolation: the note says which."""
        note = super().range_note(sigmas)
        if note and self.levels is not None:
            note = note.replace("was trained on", f"was trained on its {len(self.levels)} levels only, in")
            outside = self.extrapolated if sigmas is None else [
                float(s) for s in torch.as_tensor(sigmas).flatten() if not self.in_range(float(s))]
            lo, hi = self.valid
            if outside and lo * (1 - RANGE_TOL) <= min(outside) and max(outside) <= hi * (1 + RANGE_TOL):
                note = note.replace(", where it extrapolates", ", between those levels, where it interpolates")
        return note

    def _prepare(self, q):
        if q.kind == "score":
            return q.x, q.sigma, lambda out: out
        sigma = q.noise_level()
        return q.x / _bcast(q.sqrt_alpha_bar(), q.x), sigma, lambda out: -_bcast(sigma, out) * out

    def _forward(self, inp, cond):
        return self.net(inp, cond)


class EpsScoreModel(ScoreModel):
    """A DDPM network ε_θ(x_t, t) with its own schedule; its σ range is σ_t of t = 1 … T."""
    kind = "DDPM"
    description = "ε-prediction network (DDPM)"

    def __init__(self, net: Callable, schedule: DDPMSchedule):
        self._log_sigmas = schedule_sigmas(schedule).double().log()          # increasing in t
        super().__init__(float(self._log_sigmas[0].exp()), float(self._log_sigmas[-1].exp()))
        host_sigmas(schedule)                       # read once here, not at the first query
        self.net, self.schedule = net, schedule

    def timestep_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """The (fractional) timestep t(σ): linear in log σ between integer timesteps, clamped to [0, T−1]."""
        table = self._log_sigmas.to(sigma.device)
        ls = sigma.double().clamp_min(1e-30).log()
        hi = torch.searchsorted(table, ls).clamp(1, len(table) - 1)
        lo = hi - 1
        w = ((ls - table[lo]) / (table[hi] - table[lo])).clamp(0, 1)
        return (lo + w).float()

    def _own(self, schedule) -> bool:
        return schedule is self.schedule or (len(schedule.betas) == len(self.schedule.betas) and
                                             torch.equal(schedule.betas.cpu(), self.schedule.betas.cpu()))

    def _prepare(self, q):
        if q.kind == "eps":
            t = q.t.float() if self._own(q.schedule) else self.timestep_of_sigma(q.noise_level())
            return q.x, t, lambda out: out          # same x: √ᾱ matches whenever σ_t does
        sigma = q.sigma
        x = q.x / _bcast((1 + sigma.double() ** 2).sqrt().float(), q.x)
        return x, self.timestep_of_sigma(sigma), lambda out: -out / _bcast(sigma, out)

    def _forward(self, inp, cond):
        return self.net(inp, cond)


class FixedLevelScoreModel(ScoreModel):
    """An unconditioned score network s_θ(y), trained at one noise level (σ of DSM; 0 for exact or
    sliced score matching). It answers every σ with the same field."""
    kind = "single-level"
    description = "unconditioned score network"

    def __init__(self, net: Callable, sigma: float = 0.0):
        super().__init__(sigma, sigma)
        self.net = net

    def _prepare(self, q):
        if q.kind == "score":
            return q.x, None, lambda out: out
        sigma = q.noise_level()
        return q.x / _bcast(q.sqrt_alpha_bar(), q.x), None, lambda out: -_bcast(sigma, out) * out

    def _forward(self, inp, cond):
        return self.net(inp)


class ScoreFunction(SigmaScoreModel):
    """Any callable fn(y, σ) → ∇log p_σ(y) (σ of shape (N,)), e.g. a closed form in a test."""
    kind = "function"

    def __init__(self, fn: Callable, sigma_min: float = 0.0, sigma_max: float = math.inf):
        super().__init__(fn, sigma_min, sigma_max)


class ClosedFormScore(ScoreModel):
    """A score known in closed form at each σ (`score_at(y, σ)`), not a network: queries are answered
    one noise level at a time (every sampler shares σ across its particles), eps by the conversion."""

    def score_at(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        raise NotImplementedError

    def evaluate_with_grad(self, queries):
        out = []
        for q in queries:
            sigma = q.noise_level()
            y = q.x if q.kind == "score" else q.x / _bcast(q.sqrt_alpha_bar(), q.x)
            s = torch.empty_like(y)
            for level in torch.unique(sigma).tolist():
                m = sigma == level
                s[m] = self.score_at(y[m], float(level))
            out.append(s if q.kind == "score" else -_bcast(sigma, s) * s)
        return out


class ExactScore(ClosedFormScore):
    """The exact score of p_σ = p * N(0, σ²I) for a Gaussian mixture p (σ = 0: p itself). Valid at
    every σ; its default sampling range is [sigma_min, sigma_max] (σ_max defaults to the σ_max rule,
    trainers.priors.sigma_max_for: the smallest σ at which the start N(m, C + σ²I) is within 1e-5 nats
    of p_σ). Given a DDPM `schedule`, VP samplers use it (as they would an ε-model's) and the default
    range is that schedule's. It carries the density's mean and covariance (the matched start)."""
    kind = "exact"
    description = "exact score of the drawn density"
    CACHE = 256

    def __init__(self, density, sigma_min: float = 0.01, sigma_max: float | None = None,
                 schedule: DDPMSchedule | None = None):
        self.schedule = schedule
        if schedule is not None:
            sigma_min, sigma_max = schedule_sigma_range(schedule)
        if sigma_max is None:
            from .priors import sigma_max_for
            sigma_max = sigma_max_for(density)
        super().__init__(sigma_min, max(sigma_max, sigma_min), valid=(0.0, math.inf))
        self.density = density
        self._cache: dict[float, object] = {}
        if hasattr(density, "mean"):
            self.with_data_stats(density.mean(), cov=density.covariance())

    def noised(self, sigma: float):
        """The mixture p_σ (cached per σ; PF-ODE grids ask for many)."""
        if sigma == 0:
            return self.density
        if sigma not in self._cache:
            if len(self._cache) >= self.CACHE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[sigma] = self.density.noised(sigma)
        return self._cache[sigma]

    def score_at(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.noised(sigma).score(y).to(y.dtype)


def from_network(net, cond, *, sigmas=None, schedule: DDPMSchedule | None = None,
                 sigma: float = 0.0, discrete: bool = False) -> ScoreModel:
    """Wrap a trained network by what it is conditioned on: "sigma" (needs the trained `sigmas`;
    `discrete`: trained on those levels only), "time" (needs its DDPM `schedule`) or None (trained
    at the single level `sigma`)."""
    if cond == "sigma":
        s = torch.as_tensor(sigmas).flatten()
        return SigmaScoreModel(net, float(s.min()), float(s.max()), levels=s if discrete else None)
    if cond == "time":
        return EpsScoreModel(net, schedule)
    return FixedLevelScoreModel(net, sigma)
