"""Guided experiments: each claim of the lecture reproduced, measured over several seeds, and judged.

An experiment has a name, a title, the claim, the expected outcome in words, the criterion, default
parameters (a dict the user may override, values of the defaults' types), a *negative control* (the same
experiment with the mechanism the claim is about removed: an untrained network, one noise level, no
annealing, no noise, no finite training set …) and a body run once per seed. `run(params, progress,
control=False) -> ExperimentResult` runs the body for seeds seed, seed+1, …, seed+seeds−1, keeps every
per-seed figure, and judges the claim on their means with a margin of t·SE (SE = sd/√seeds over the
seeds, t the one-sided 95 % Student quantile with seeds−1 degrees of freedom): a claim "a < b" holds only
if mean(a) + t·SE(a) < b, so it cannot hold by a seed's luck. Each criterion is one that an untrained
network or a do-nothing sampler does not satisfy, and each control must come out "does not hold".

"Reaches the density" is judged one way throughout: the excess energy distance of a sample over the
median energy distance of exact samples of the same size to the same reference (computed per seed from
`null_reps` exact draws), + t·SE, must be below `reach_share` × the excess of a sample of the
moment-matched Gaussian N(m, Σ) (a model that knows only the mean and covariance): the sample is that
many times closer to the density than the best Gaussian. The exact samples' 95th percentile and the
sampler's start (what a do-nothing sampler scores) are reported beside it.

Every run uses fixed seeds and one torch thread.

    python -m trainers.studies.experiments list
    python -m trainers.studies.experiments run langevin-mode-weights [--json] [--control] [n=4000 seeds=5]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..densities import GaussianMixture, preset
from ..fitting import (ToyConfig, build_model_and_method, build_network, initial_for, make_sampler, method_for,
                      score_model, train, training_data, training_steps)
from ..methods import method_class
from ..metrics import (ddpm_elbo_nats, energy_distance, fisher_divergence, mean_pairwise_distance,
                      mode_weight_error, mode_weights)
from ..samplers import SamplerOptions, build_sampler, initial_particles
from ..score_models import ExactScore

Progress = Callable[[float, str], None]

_T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812}


def t95(df: int) -> float:
    """The one-sided 95 % quantile of Student's t with df degrees of freedom (df > 10: within 0.002)."""
    if df < 1:
        raise ValueError("the t quantile needs at least 1 degree of freedom (2 seeds)")
    return _T95.get(df, 1.645 + 1.6 / df)


class Stats:
    """Per-seed values of named figures: mean, sd (n−1), se = sd/√n and the one-sided 95 % bounds
    mean ± t·se (paired comparisons are per-seed figures of their own, e.g. a difference per seed)."""

    def __init__(self, per_seed: dict[str, list[float]]):
        self.per_seed = per_seed

    def values(self, key: str) -> torch.Tensor:
        return torch.tensor(self.per_seed[key], dtype=torch.float64)

    def n(self, key: str) -> int:
        return len(self.per_seed[key])

    def mean(self, key: str) -> float:
        return float(self.values(key).mean())

    def sd(self, key: str) -> float:
        v = self.values(key)
        return float(v.std()) if len(v) > 1 else float("nan")

    def se(self, key: str) -> float:
        return self.sd(key) / math.sqrt(self.n(key))

    def margin(self, key: str) -> float:
        return t95(self.n(key) - 1) * self.se(key)

    def hi(self, key: str) -> float:
        """mean + t·se: the figure is below this with 95 % confidence."""
        return self.mean(key) + self.margin(key)

    def lo(self, key: str) -> float:
        """mean − t·se: the figure is above this with 95 % confidence."""
        return self.mean(key) - self.margin(key)

    def pm(self, key: str, fmt: str | None = None) -> str:
        """'mean ± sd' for a sentence (by default rounded to the spread's second significant digit)."""
        if fmt is None:
            return format_value(self.mean(key), self.sd(key))
        return f"{self.mean(key):{fmt}} ± {self.sd(key):{fmt}}"


@dataclass
class ExperimentResult:
    name: str
    figures: dict[str, float]      # named measured numbers: the mean over the seeds
    holds: bool                    # the criterion, evaluated on the figures' means and standard errors
    criterion: str                 # the criterion in words
    measured: str                  # one sentence: what was measured (mean ± sd over the seeds)
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    spread: dict[str, float] = field(default_factory=dict)            # sd over the seeds
    per_seed: dict[str, list[float]] = field(default_factory=dict)    # every seed's value
    seeds: list[int] = field(default_factory=list)
    control: bool = False          # True: the negative control ran (the mechanism removed)
    control_what: str = ""         # what the control removes
    labels: dict[str, str] = field(default_factory=dict)             # short labels of the figures

    def label(self, key: str) -> str:
        return self.labels.get(key, key.replace("_", " "))

    def to_dict(self) -> dict:
        return {"name": self.name, "holds": self.holds, "control": self.control, "control_what": self.control_what,
                "criterion": self.criterion, "measured": self.measured, "seeds": self.seeds,
                "figures": self.figures, "spread": self.spread, "per_seed": self.per_seed,
                "labels": self.labels, "params": self.params, "seconds": self.seconds}


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    claim: str
    expected: str
    criterion: str
    control: str                   # what the negative control removes (it must come out "does not hold")
    defaults: dict
    body: Callable = field(repr=False, compare=False)    # body(p, seed, control, progress) -> figures of one seed
    judge: Callable = field(repr=False, compare=False)   # judge(stats, p) -> (holds, measured)
    labels: dict = field(default_factory=dict, repr=False, compare=False)

    def params(self, overrides: dict | None = None) -> dict:
        """The defaults with `overrides` applied; strings are converted to the default's type.
        An unknown key or a value that does not convert raises ValueError naming it."""
        p = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in p:
                raise ValueError(f"{self.name} has no parameter {key!r}; it takes {', '.join(p)}")
            p[key] = _convert(key, value, p[key])
        if p.get("seeds", 2) < 2:
            raise ValueError("seeds must be at least 2 (the verdict uses the spread over seeds)")
        return p

    def run(self, params: dict | None = None, progress: Progress | None = None,
            control: bool = False) -> ExperimentResult:
        """Run the body for each seed (control: with the mechanism removed) and judge the claim."""
        p = self.params(params)
        report = progress or (lambda frac, text: None)
        seeds = [p["seed"] + i for i in range(p["seeds"])]
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        start = time.perf_counter()
        per_seed: dict[str, list[float]] = {}
        try:
            for i, seed in enumerate(seeds):
                def sub(frac, text, i=i, seed=seed):
                    report((i + frac) / len(seeds), f"seed {seed} ({i + 1}/{len(seeds)}): {text}")
                sub(0.0, "start")
                figures = self.body(p, seed, control, sub)
                for key, value in figures.items():
                    per_seed.setdefault(key, []).append(float(value))
            stats = Stats(per_seed)
            holds, measured = self.judge(stats, p)
        finally:
            torch.set_num_threads(before)
        report(1.0, "done")
        if control:
            measured = f"CONTROL ({self.control}): {measured}"
        figures = {k: stats.mean(k) for k in per_seed}
        spread = {k: stats.sd(k) for k in per_seed}
        return ExperimentResult(self.name, figures, bool(holds), self.criterion, measured, p,
                                time.perf_counter() - start, spread, per_seed, seeds, control,
                                self.control if control else "", dict(self.labels))


def _convert(key: str, value, default):
    """`value` as the type of `default` (strings from the command line are parsed)."""
    kind = type(default)
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            if kind is bool:
                if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                    raise ValueError
                return text in ("1", "true", "yes", "on")
            return kind(text)
        except ValueError:
            _bad(key, value, default)
    if kind is bool:
        if not isinstance(value, bool):
            _bad(key, value, default)
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _bad(key, value, default)
        if kind is int and not float(value).is_integer():
            _bad(key, value, default)
        return kind(value)
    if not isinstance(value, kind):
        _bad(key, value, default)
    return value


def _bad(key, value, default):
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        type(default), type(default).__name__)
    raise ValueError(f"{key} must be {kind}, got {value!r}")


# ------------------------------------------------------------------ shared helpers
_MODELS: dict = {}


def clear_cache() -> None:
    """Forget trained models (runs train their models once per process and configuration)."""
    _MODELS.clear()


def _train(cfg: ToyConfig, density: GaussianMixture, progress: Progress | None = None, lo=0.0, hi=1.0,
           label: str = "training"):
    """(model, losses, seconds) for cfg on density, trained once per process and configuration."""
    key = (json.dumps(cfg.to_dict(), sort_keys=True), json.dumps(density.to_dict(), sort_keys=True))
    if key not in _MODELS:
        start = time.perf_counter()
        every = max(1, cfg.steps // 20)

        def step(info):
            if progress and info.step % every == 0:
                progress(lo + (hi - lo) * info.step / cfg.steps, f"{label}: step {info.step}/{cfg.steps}")
        model, losses = train(cfg, density, step)
        _MODELS[key] = (model, losses, time.perf_counter() - start)
    return _MODELS[key]


def _net(cfg: ToyConfig, density: GaussianMixture, control: bool, progress: Progress, lo=0.0, hi=1.0,
         label: str = "training"):
    """cfg's trained network, or with control its untrained initial network (same seed, no step taken)."""
    if control:
        model = build_network(cfg)
        return model.eval()
    return _train(cfg, density, progress, lo, hi, label)[0]


def _density(name: str) -> GaussianMixture:
    return preset(name)


def _start(sampler, n: int, seed: int, init: str = "gaussian", bounds=None) -> tuple[torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    return initial_for(sampler, n, init, bounds, g), g


def _sample(sampler, n: int, seed: int, init: str = "gaussian", bounds=None) -> torch.Tensor:
    x0, g = _start(sampler, n, seed, init, bounds)
    return sampler.run(x0, g).x


def _heavy_weight(x: torch.Tensor, density: GaussianMixture) -> float:
    """The sampled weight of the density's heaviest component."""
    return float(mode_weights(x, density)[int(torch.argmax(density.weights))])


class _Reference:
    """A reference sample of the density and the null distribution of the energy distance: `reps`
    independent exact samples of size n against the same reference (median and 95th percentile)."""

    def __init__(self, density: GaussianMixture, n: int, seed: int, reps: int):
        self.ref = density.sample(n, torch.Generator().manual_seed(seed + 2))
        self.ref_self = mean_pairwise_distance(self.ref)
        g = torch.Generator().manual_seed(seed + 7919)
        null = torch.tensor([self.ed(density.sample(n, g)) for _ in range(reps)], dtype=torch.float64)
        self.median, self.q95 = float(null.median()), float(torch.quantile(null, 0.95))
        # the yardstick: a sample of the moment-matched Gaussian N(m, Σ), which knows only two moments
        chol = torch.linalg.cholesky(density.covariance().double())
        gauss = density.mean().double() + torch.randn(n, chol.shape[0], generator=g, dtype=torch.float64) @ chol.T
        self.gaussian_excess = self.ed(gauss.float()) - self.median

    def base(self) -> dict:
        """The seed's yardsticks: the moment-matched Gaussian's excess, exact samples' 95th percentile excess."""
        return {"gaussian_excess": self.gaussian_excess, "exact_excess_q95": self.q95 - self.median}

    def ed(self, x: torch.Tensor) -> float:
        x = x.detach().float()
        if not torch.isfinite(x).all():
            return float("inf")
        return energy_distance(x, self.ref, self.ref_self)

    def figures(self, tag: str, sampler, n: int, seed: int, init="gaussian", bounds=None) -> dict:
        """Run sampler from its start: {tag_excess: ED − exact median, tag_start: the start's ED − median}."""
        x0, g = _start(sampler, n, seed, init, bounds)
        x = sampler.run(x0, g).x
        return {f"{tag}_excess": self.ed(x) - self.median, f"{tag}_start": self.ed(x0) - self.median}


def _reached(S: "Stats", tag: str, share: float) -> bool:
    """mean excess + t·SE < share × the moment-matched Gaussian's mean excess."""
    return S.hi(f"{tag}_excess") < share * S.mean("gaussian_excess")


def _grid(density: GaussianMixture, n: int) -> torch.Tensor:
    xmin, xmax, ymin, ymax = density.plot_bounds()
    xs, ys = torch.linspace(xmin, xmax, n), torch.linspace(ymin, ymax, n)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    return torch.stack([gx.flatten(), gy.flatten()], 1)


def _thin(density: GaussianMixture, std: float) -> GaussianMixture:
    """The density with every component's covariance replaced by std² I (data near a curve)."""
    k = density.n_components
    covs = torch.eye(2, dtype=torch.float64).expand(k, 2, 2) * std**2
    return GaussianMixture(density.weights.numpy(), density.means.numpy(), covs.numpy(),
                           f"{density.name} (std {std:g})", density.bounds)


def _share_in_modes(x: torch.Tensor, density: GaussianMixture, level: float = 0.999) -> float:
    """Share of points inside the `level` ellipse (Mahalanobis² < χ²₂ quantile −2 ln(1−level)) of their most
    responsible component: `level` for exact samples of well-separated modes, small for a sampler that
    has not reached them."""
    x = x.double()
    k = density.responsibilities(x).argmax(1)
    diff = x - density.means[k]
    inv = torch.linalg.inv(density.covs)[k]
    maha = torch.einsum("ni,nij,nj->n", diff, inv, diff)
    return float((maha < -2 * math.log(1 - level)).double().mean())


# ------------------------------------------------------------------ 1. the score is wrong where there is no data
def _score_wrong_without_data(p, seed, control, progress):
    d = _density(p["density"])
    cfg = ToyConfig(density=p["density"], objective="dsm", sigma=p["sigma"], steps=p["steps"], width=p["width"],
                    batch=p["batch"], seed=seed)
    model = _net(cfg, d, control, progress, 0.0, 0.9, "DSM")
    target = d.noised(p["sigma"])
    x = _grid(d, p["grid"])
    with torch.no_grad():
        s = target.score(x).double()
        err = ((model(x).double() - s) ** 2).sum(1)
        norm = (s ** 2).sum(1)
        dens = target.log_prob(x).exp()
    # high density: the grid points holding the top `mass` of the grid's probability; low: p < low_rel · max p
    order = torch.argsort(dens, descending=True)
    cum = torch.cumsum(dens[order], 0) / dens.sum()
    high = torch.zeros_like(dens, dtype=torch.bool)
    high[order[: int((cum < p["mass"]).sum()) + 1]] = True
    low = dens < p["low_rel"] * dens.max()
    rel_high, rel_low = float(err[high].sum() / norm[high].sum()), float(err[low].sum() / norm[low].sum())
    return {"relative_error_high_density": rel_high, "relative_error_low_density": rel_low,
            "ratio_low_to_high": rel_low / rel_high, "log10_ratio_low_to_high": math.log10(rel_low / rel_high),
            "squared_error_high_density": float(err[high].mean()), "squared_error_low_density": float(err[low].mean()),
            "share_of_grid_low": float(low.double().mean()), "share_of_grid_high": float(high.double().mean())}


def _judge_score_wrong(S, p):
    holds = S.lo("log10_ratio_low_to_high") > math.log10(p["min_ratio"])
    measured = (f"DSM at σ = {p['sigma']:g}: relative squared score error ‖s_θ − s‖²/‖s‖² "
                f"{S.pm('relative_error_high_density')} where the data are (top {p['mass']:.0%} of mass) vs "
                f"{S.pm('relative_error_low_density')} where p_σ < {p['low_rel']:g}·max: "
                f"{S.pm('ratio_low_to_high')}× larger (geometric mean {10 ** S.mean('log10_ratio_low_to_high'):.3g}×, "
                f"lower bound {10 ** S.lo('log10_ratio_low_to_high'):.3g}×)")
    return holds, measured


# ------------------------------------------------------------------ 2. sliced score matching needs noise
def _ssm_needs_noise(p, seed, control, progress):
    base = _density(p["density"])
    clean = _thin(base, p["data_std"])
    # the control trains the second arm on the same clean data (its own training seed): no noise added
    second = clean if control else clean.noised(p["sigma"])
    out = {}
    for i, (tag, data, s) in enumerate((("clean", clean, seed), ("noised", second, seed + 1000 * control))):
        cfg = ToyConfig(density=p["density"], objective="ssm", steps=p["steps"], width=p["width"],
                        batch=p["batch"], lr=p["lr"], seed=s)
        model, losses, _ = _train(cfg, data, progress, i * 0.45, (i + 1) * 0.45, f"SSM on {tag} data")
        x = data.sample(p["n_eval"], torch.Generator().manual_seed(seed + 100))
        fisher = fisher_divergence(lambda y: model(y), data, x)
        with torch.no_grad():
            norm = float((data.score(x) ** 2).sum(1).mean())
        tail = torch.tensor(losses[len(losses) // 2:], dtype=torch.float64)
        out[f"relative_fisher_{tag}"] = fisher / norm
        out[f"fisher_{tag}"] = fisher
        out[f"loss_final_{tag}"] = float(tail[-max(1, len(tail) // 5):].mean())
        out[f"loss_optimum_{tag}"] = -0.5 * norm          # SSM loss at the exact score: −½E‖∇log p‖²
    out["ratio_noised_to_clean"] = out["relative_fisher_noised"] / out["relative_fisher_clean"]
    return out


def _judge_ssm(S, p):
    holds = S.hi("ratio_noised_to_clean") < p["factor"]
    measured = (f"SSM on data of std {p['data_std']:g}: Fisher/E‖∇log p‖² = {S.pm('relative_fisher_clean')}; on the "
                f"same data noised by σ = {p['sigma']:g}: {S.pm('relative_fisher_noised')}; ratio "
                f"{S.pm('ratio_noised_to_clean')} (upper bound {S.hi('ratio_noised_to_clean'):.3g})")
    return holds, measured


# ------------------------------------------------------------------ 3. Langevin gets mode weights wrong
def _langevin_mode_weights(p, seed, control, progress):
    d = _density(p["density"])
    exact = ExactScore(d, p["sigma_min"], p["sigma_max"] or None)
    g = torch.Generator().manual_seed(seed)
    x0 = initial_particles(p["n"], "uniform", d.plot_bounds(), g)
    progress(0.05, "plain Langevin")
    plain = build_sampler("langevin", exact, SamplerOptions(eps=p["eps"], steps=p["langevin_steps"]))
    x_plain = plain.run(x0, torch.Generator().manual_seed(seed + 1)).x
    progress(0.5, "annealed Langevin" if not control else "control: Langevin at σ_min only, as many steps")
    if control:     # no annealing: the same number of steps, all at the smallest level
        annealed = build_sampler("langevin", exact, SamplerOptions(eps=p["eps"],
                                                                   steps=p["n_levels"] * p["steps_per_level"]))
    else:
        annealed = build_sampler("annealed", exact, SamplerOptions(n_levels=p["n_levels"], steps=p["steps_per_level"],
                                                                   eps=p["annealed_eps"] or None))
    x_ann = annealed.run(x0, torch.Generator().manual_seed(seed + 2)).x
    ge = torch.Generator().manual_seed(seed + 3)
    exact_tv = torch.tensor([mode_weight_error(d.sample(p["n"], ge), d) for _ in range(p["null_reps"])])
    return {"true_heavy_weight": float(d.weights.max()), "start_heavy_weight": _heavy_weight(x0, d),
            "langevin_heavy_weight": _heavy_weight(x_plain, d), "annealed_heavy_weight": _heavy_weight(x_ann, d),
            "langevin_mode_weight_error": mode_weight_error(x_plain, d),
            "annealed_mode_weight_error": mode_weight_error(x_ann, d),
            "exact_mode_weight_error_q99": float(torch.quantile(exact_tv.double(), 0.99)),
            "start_share_in_modes": _share_in_modes(x0, d), "langevin_share_in_modes": _share_in_modes(x_plain, d)}


def _judge_langevin(S, p):
    # an exact sample puts 99.9 % of its points in the 99.9 % ellipses; its lower 1 % binomial quantile at n:
    in_modes = 0.999 - 2.326 * math.sqrt(0.999 * 0.001 / p["n"])
    reached = S.hi("langevin_share_in_modes") >= in_modes
    wrong = S.lo("langevin_mode_weight_error") > S.mean("exact_mode_weight_error_q99")
    recovered = S.hi("annealed_mode_weight_error") < p["recover_factor"] * S.lo("langevin_mode_weight_error")
    measured = (f"heavy-mode weight {S.mean('true_heavy_weight'):g}: uniform start {S.pm('start_heavy_weight')}, plain "
                f"Langevin {S.pm('langevin_heavy_weight')} with {S.pm('langevin_share_in_modes')} of its "
                f"particles inside the modes' 99.9 % ellipses (an exact sample: ≥ {in_modes:.4f}; the start "
                f"{S.pm('start_share_in_modes')}), annealed Langevin {S.pm('annealed_heavy_weight')}; "
                f"mode-weight error (TV) {S.pm('langevin_mode_weight_error')} vs {S.pm('annealed_mode_weight_error')} "
                f"(an exact sample's 99th percentile {S.mean('exact_mode_weight_error_q99'):.3g})")
    return reached and wrong and recovered, measured


# ------------------------------------------------------------------ 4. noise levels fix both problems
def _noise_levels_fix_both(p, seed, control, progress):
    d = _density(p["density"])
    common = dict(density=p["density"], steps=p["steps"], width=p["width"], batch=p["batch"], seed=seed)
    dsm_cfg = ToyConfig(objective="dsm", sigma=p["sigma"], **common)
    # the control trains "NCSN" at the one level σ and samples it like the DSM arm: no noise levels
    ncsn_cfg = (ToyConfig(objective="ncsn", sigma_min=p["sigma"], sigma_max=p["sigma"], n_levels=1, **common)
                if control else ToyConfig(objective="ncsn", sigma_min=p["sigma"], **common))
    dsm, _, _ = _train(dsm_cfg, d, progress, 0.0, 0.35, "single-σ DSM")
    ncsn, _, _ = _train(ncsn_cfg, d, progress, 0.35, 0.7, "NCSN" if not control else "NCSN at one level")
    bounds = d.plot_bounds()
    progress(0.7, "sampling")
    ref = _Reference(d, p["n"], seed, p["null_reps"])
    x_dsm = _sample(make_sampler("langevin", dsm_cfg, dsm, d, eps=p["eps"], steps=p["langevin_steps"]),
                    p["n"], seed + 1, "uniform", bounds)
    if control:
        ncsn_sampler = make_sampler("langevin", ncsn_cfg, ncsn, d, eps=p["eps"], steps=p["langevin_steps"])
    else:
        ncsn_sampler = make_sampler("annealed", ncsn_cfg, ncsn, d)
    x_ncsn = _sample(ncsn_sampler, p["n"], seed + 1, "uniform", bounds)
    f = {"dsm_langevin_excess": ref.ed(x_dsm) - ref.median, "ncsn_annealed_excess": ref.ed(x_ncsn) - ref.median,
         "dsm_langevin_mode_weight_error": mode_weight_error(x_dsm, d),
         "ncsn_annealed_mode_weight_error": mode_weight_error(x_ncsn, d), **ref.base()}
    f["excess_gain"] = f["dsm_langevin_excess"] - f["ncsn_annealed_excess"]
    f["mode_weight_error_gain"] = f["dsm_langevin_mode_weight_error"] - f["ncsn_annealed_mode_weight_error"]
    return f


def _judge_noise_levels(S, p):
    reached = _reached(S, "ncsn_annealed", p["reach_share"])
    holds = reached and S.lo("excess_gain") > 0 and S.lo("mode_weight_error_gain") > 0
    measured = (f"energy distance above exact samples' {S.pm('dsm_langevin_excess')} (DSM σ = {p['sigma']:g} + "
                f"Langevin) vs {S.pm('ncsn_annealed_excess')} (NCSN + annealed; "
                f"{'reached' if reached else 'not reached'}: bound {p['reach_share'] * S.mean('gaussian_excess'):.3g}"
                f"; exact samples' 95th percentile {S.mean('exact_excess_q95'):.3g}); mode-weight error "
                f"{S.pm('dsm_langevin_mode_weight_error')} vs "
                f"{S.pm('ncsn_annealed_mode_weight_error')}; paired gains {S.pm('excess_gain')} and "
                f"{S.pm('mode_weight_error_gain')} (lower bounds {S.lo('excess_gain'):.3g}, "
                f"{S.lo('mode_weight_error_gain'):.3g})")
    return holds, measured


# ------------------------------------------------------------------ 5. DDPM forward and reverse
def _gaussian_nll(d: GaussianMixture) -> float:
    """E_p[−log N(x; m, Σ)] for the moment-matched Gaussian: its entropy ½ log det(2πeΣ)."""
    cov = d.covariance().double()
    return 0.5 * float(torch.logdet(2 * math.pi * math.e * cov))


def _ddpm_forward_reverse(p, seed, control, progress):
    d = _density(p["density"])
    cfg = ToyConfig(density=p["density"], objective="ddpm", steps=p["steps"], width=p["width"], batch=p["batch"],
                    seed=seed, n_timesteps=p["n_timesteps"])
    sched = method_for(cfg).schedule()
    g = torch.Generator().manual_seed(seed + 3)
    figures = {}
    ts = sorted({min(sched.T - 1, max(0, round(f * sched.T) - 1)) for f in (0.001, 0.1, 0.25, 0.5, 0.75, 1.0)})
    for i, t in enumerate(ts):
        q = d.ddpm_marginal(float(sched.alpha_bars[t]))
        x = q.sample(p["n_kl"], g).double()
        log_n = -0.5 * (x**2).sum(1) - math.log(2 * math.pi)
        figures[f"kl_{i}_t{t + 1}"] = float((q.log_prob(x) - log_n).mean())
    progress(0.05, "training DDPM")
    model = _net(cfg, d, control, progress, 0.05, 0.7, "DDPM")
    progress(0.7, "sampling")
    ref = _Reference(d, p["n"], seed, p["null_reps"])
    figures.update(ref.figures("ddpm", make_sampler("ddpm", cfg, model, d), p["n"], seed + 1))
    figures.update(ref.base())
    progress(0.85, "ELBO")
    x0 = d.sample(p["n_elbo"], torch.Generator().manual_seed(seed + 4))
    with torch.no_grad():
        torch.manual_seed(seed + 5)
        figures["elbo_nats"] = ddpm_elbo_nats(model, sched, x0, cfg.ddpm_variance)["elbo_nats"]
        exact = score_model(None, cfg, d)
        torch.manual_seed(seed + 5)
        figures["elbo_exact_eps_nats"] = ddpm_elbo_nats(lambda xt, t: exact.eps(xt, t, sched), sched, x0,
                                                        cfg.ddpm_variance)["elbo_nats"]
        figures["true_nll_nats"] = float(-d.log_prob(x0.double()).mean())
    figures["gaussian_nll_nats"] = _gaussian_nll(d)
    figures["elbo_minus_nll"] = figures["elbo_nats"] - figures["true_nll_nats"]
    figures["elbo_minus_gaussian_nll"] = figures["elbo_nats"] - figures["gaussian_nll_nats"]
    return figures


def _judge_ddpm(S, p):
    kls = [k for k in S.per_seed if k.startswith("kl_")]
    means = [S.mean(k) for k in kls]
    decreasing = all(b < a for a, b in zip(means, means[1:]))
    noise_reached = S.hi(kls[-1]) < p["kl_end_below"]
    back = _reached(S, "ddpm", p["reach_share"])
    tighter = S.hi("elbo_minus_gaussian_nll") < 0
    bound = S.hi("elbo_minus_nll") >= 0
    measured = (f"KL(q_t ‖ N(0,I)) {means[0]:.2f} → {means[-1]:.1e} nats over t = {kls[0].split('_t')[1]}…"
                f"{kls[-1].split('_t')[1]}; DDPM back: energy distance above exact samples' "
                f"{S.pm('ddpm_excess')} (start {S.pm('ddpm_start')}, exact samples' 95th percentile "
                f"{S.mean('exact_excess_q95'):.3g}); −ELBO {S.pm('elbo_nats', '.3f')} nats (exact ε: "
                f"{S.pm('elbo_exact_eps_nats', '.3f')}) ≥ NLL {S.pm('true_nll_nats', '.3f')} and below the best "
                f"Gaussian's NLL {S.mean('gaussian_nll_nats'):.3f}")
    return decreasing and noise_reached and back and tighter and bound, measured


# ------------------------------------------------------------------ 6. EBM vs score network
def _ebm_vs_score(p, seed, control, progress):
    d = _density(p["density"])
    target = d.noised(p["sigma"])
    x = target.sample(p["n_eval"], torch.Generator().manual_seed(seed + 100))
    figures, cfgs = {}, {}
    for i, kind in enumerate(("mlp", "ebm")):
        cfg = cfgs[kind] = ToyConfig(density=p["density"], model=kind, objective="dsm", sigma=p["sigma"],
                                     steps=p["steps"], width=p["width"], batch=p["batch"], seed=seed)
        untrained = build_network(cfg)
        untrained.eval()
        figures[f"fisher_untrained_{kind}"] = fisher_divergence(_score_fn(untrained), target, x)
        model = _net(cfg, d, control, progress, i * 0.4, (i + 1) * 0.4, f"DSM, {kind}")
        figures[f"fisher_{kind}"] = fisher_divergence(_score_fn(model), target, x)
        figures[f"fisher_ratio_{kind}"] = figures[f"fisher_{kind}"] / figures[f"fisher_untrained_{kind}"]
    progress(0.8, "timing training steps")
    speed = {"mlp": 0.0, "ebm": 0.0}
    for _ in range(p["timing_rounds"]):            # interleaved, best of each: fair on a busy machine
        for kind in speed:
            speed[kind] = max(speed[kind], _steps_per_second(cfgs[kind], d, p["timing_steps"]))
    for kind in speed:
        figures[f"steps_per_second_{kind}"] = speed[kind]
    figures["speed_gain_mlp"] = speed["mlp"] - speed["ebm"]
    return figures


def _judge_ebm(S, p):
    learn = all(S.hi(f"fisher_ratio_{k}") < p["learn_factor"] for k in ("mlp", "ebm"))
    holds = learn and S.lo("speed_gain_mlp") > 0
    measured = (f"Fisher vs p_σ over the untrained network's: score MLP {S.pm('fisher_ratio_mlp')}, EBM "
                f"{S.pm('fisher_ratio_ebm')} (Fisher {S.pm('fisher_mlp')} / {S.pm('fisher_ebm')}, untrained "
                f"{S.pm('fisher_untrained_mlp')} / {S.pm('fisher_untrained_ebm')}); "
                f"{S.pm('steps_per_second_mlp', '.0f')} vs {S.pm('steps_per_second_ebm', '.0f')} steps/s")
    return holds, measured


def _steps_per_second(cfg: ToyConfig, density: GaussianMixture, n: int) -> float:
    """Adam steps per second of cfg's model and objective (after a few warm-up steps)."""
    model, method = build_model_and_method(cfg, density)
    sample_batch, _ = training_data(cfg, density)
    steps = training_steps(model, method, sample_batch, cfg.lr, cfg.batch, cfg.seed)
    for _ in range(5):
        next(steps)
    start = time.perf_counter()
    for _ in range(n):
        next(steps)
    return n / (time.perf_counter() - start)


def _score_fn(model):
    def fn(y):
        with torch.enable_grad():
            return model(y).detach()       # an EBM's score needs autograd
    return fn


# ------------------------------------------------------------------ 7. few steps
FEW_SAMPLERS, FEW_NFES = ("ddpm", "ddim", "pf-ode"), (10, 50)


def _few_steps(p, seed, control, progress):
    d = _density(p["density"])
    cfg = ToyConfig(density=p["density"], objective="ddpm", steps=p["steps"], width=p["width"], batch=p["batch"],
                    seed=seed)
    model = _net(cfg, d, control, progress, 0.0, 0.6, "DDPM")
    ref = _Reference(d, p["n"], seed, p["null_reps"])
    figures = ref.base()
    # the control drives the "exact" rows by the untrained network too: no score to follow
    sources = {"exact": model if control else None, "model": model}
    for src, net in sources.items():
        for s in FEW_SAMPLERS:
            for nfe in FEW_NFES:
                progress(0.6 + 0.4 * len(figures) / 25, f"{src} score, {s} at {nfe} NFE")
                figures.update(ref.figures(f"{s}_{src}_{nfe}", make_sampler(s, cfg, net, d, nfe=nfe), p["n"], seed + 1))
    return figures


def _judge_few_steps(S, p):
    share = p["reach_share"]
    reach = {f"{s}_{src}_{nfe}": _reached(S, f"{s}_{src}_{nfe}", share)
             for s in FEW_SAMPLERS for src in ("exact", "model") for nfe in FEW_NFES}
    far = S.lo("pf-ode_exact_10_excess") > share * S.mean("gaussian_excess")
    holds = (all(reach[f"{s}_{src}_50"] for s in FEW_SAMPLERS for src in ("exact", "model"))
             and reach["ddpm_exact_10"] and reach["ddim_exact_10"] and far)
    words = {src: {nfe: ", ".join(s for s in FEW_SAMPLERS if reach[f"{s}_{src}_{nfe}"]) or "none" for nfe in FEW_NFES}
             for src in ("exact", "model")}
    figs = "; ".join(f"{s} {nfe}: {S.pm(f'{s}_exact_{nfe}_excess')}" for nfe in FEW_NFES for s in FEW_SAMPLERS)
    bound = share * S.mean("gaussian_excess")
    measured = (f"reached (excess energy distance + t·SE < {share:g} × the moment-matched Gaussian's, {bound:.3g}) — "
                f"exact score: 10 NFE "
                f"{words['exact'][10]}; 50 NFE {words['exact'][50]}; DDPM model: 10 NFE {words['model'][10]}; "
                f"50 NFE {words['model'][50]}. Exact-score excess: {figs}")
    return holds, measured


# ------------------------------------------------------------------ 8. one model, every sampler
ONE_MODEL_PLANS = (("ncsn", ("ddpm", "ddim")), ("ddpm", ("annealed",)))


def _one_model(p, seed, control, progress):
    d = _density(p["density"])
    common = dict(density=p["density"], steps=p["steps"], width=p["width"], batch=p["batch"], seed=seed)
    ref = _Reference(d, p["n"], seed, p["null_reps"])
    figures = ref.base()
    for i, (objective, others) in enumerate(ONE_MODEL_PLANS):
        cfg = ToyConfig(objective=objective, **common)
        model = _net(cfg, d, control, progress, i * 0.4, i * 0.4 + 0.25, objective.upper())
        own = method_for(cfg).natural_sampler
        for name in (own, *others):
            progress(i * 0.4 + 0.3, f"{objective.upper()} model, {name} sampler")
            opts = {"nfe": p["nfe"]} if name in ("ddpm", "ddim") and name != own else {}
            figures.update(ref.figures(f"{objective}_{name}", make_sampler(name, cfg, model, d, **opts), p["n"],
                                       seed + 1))
    return figures


def _judge_one_model(S, p):
    parts, holds = [], True
    for objective, others in ONE_MODEL_PLANS:
        own = method_class(objective).natural_sampler
        for name in (own, *others):
            ok = _reached(S, f"{objective}_{name}", p["reach_share"])
            holds = holds and ok
            parts.append(f"{objective.upper()} model by {name}{' (own)' if name == own else ''} "
                         f"{S.pm(f'{objective}_{name}_excess')}{'' if ok else ' (not reached)'}")
    measured = ("energy distance above exact samples': " + "; ".join(parts)
                + f" (exact samples' 95th percentile {S.mean('exact_excess_q95'):.3g})")
    return holds, measured


# ------------------------------------------------------------------ 9. memorisation
def _memorisation(p, seed, control, progress):
    from .memorisation import EmpiricalScore, memorisation_report
    d = _density(p["density"])
    small = ToyConfig(density=p["density"], objective="ncsn", steps=p["steps"], width=p["width"], batch=p["batch"],
                      seed=seed, n_data=p["n_data"])
    fresh_cfg = ToyConfig(density=p["density"], objective="ncsn", steps=p["fresh_steps"], width=p["width"],
                          batch=p["batch"], seed=seed)
    points = training_data(small, d)[1]
    fresh = d.sample(p["n"], torch.Generator().manual_seed(seed + 3))
    figures = {}
    m_fresh, _, _ = _train(fresh_cfg, d, progress, 0.4, 0.8, "NCSN on fresh data")
    if control:     # no finite training set: the exact score, and the network trained on fresh data
        sources = {"empirical_optimum": (ExactScore(d, small.sigma_min), None),
                   "trained_on_points": (None, (fresh_cfg, m_fresh))}
    else:
        m_small, _, _ = _train(small, d, progress, 0.0, 0.4, f"NCSN on {p['n_data']} points")
        sources = {"empirical_optimum": (EmpiricalScore(points, small.sigma_min), None),
                   "trained_on_points": (None, (small, m_small))}
    sources["trained_on_fresh"] = (None, (fresh_cfg, m_fresh))
    progress(0.8, "sampling")
    reports = {}
    for name, (sm, trained) in sources.items():
        if sm is not None:
            sampler = build_sampler("pf-ode", sm, nfe=p["nfe"])
        else:
            sampler = make_sampler("pf-ode", trained[0], trained[1], d, nfe=p["nfe"])
        x = _sample(sampler, p["n"], seed + 1)
        reports[name] = memorisation_report(x, points, fresh, small.sigma_min)
        figures[f"share_near_training_{name}"] = reports[name]["share_near_training"]
        figures[f"nn_ratio_{name}"] = reports[name]["ratio"]
    figures["share_near_training_fresh_data"] = reports["trained_on_fresh"]["share_near_training_fresh"]
    return figures


def _judge_memorisation(S, p):
    from .memorisation import NEAR_FACTOR
    noised_set = 1 - math.exp(-NEAR_FACTOR**2 / 2)     # share of N(x_n, σ_min² I) draws within c·σ_min of x_n (2D)
    holds = (S.lo("share_near_training_empirical_optimum") > noised_set
             and S.lo("share_near_training_trained_on_points") > p["copy_share"]
             and S.hi("share_near_training_trained_on_fresh") < p["copy_share"])
    measured = (f"share of samples within {NEAR_FACTOR:g}σ_min of one of {p['n_data']} training points: empirical "
                f"optimal score {S.pm('share_near_training_empirical_optimum', '.2f')} (the noised training set "
                f"itself: {noised_set:.3f}), network trained on them "
                f"{S.pm('share_near_training_trained_on_points')}, network trained on fresh data "
                f"{S.pm('share_near_training_trained_on_fresh')} (must be above and below {p['copy_share']:g}; "
                f"fresh data samples: {S.pm('share_near_training_fresh_data')})")
    return holds, measured


# ------------------------------------------------------------------ 10. DPM-Solver++ 2M at few steps
def _lower_order_final(p, seed, control, progress):
    """DPM-Solver++ 2M with and without lower_order_final, on the exact score over a DDPM schedule's σ range,
    chains ending at σ_min (diffusers' final_sigmas_type="sigma_min"); the control uses log-SNR-uniform steps."""
    from ..schedules import DDPMSchedule
    d = _density(p["density"])
    sm = ExactScore(d, schedule=DDPMSchedule.linear(p["T"]))
    ref = _Reference(d, p["n"], seed, p["null_reps"])
    figures = ref.base()
    grid = "geometric" if control else p["grid"]
    for tag, lof, final in (("with_lof", True, "sigma_min"), ("without_lof", False, "sigma_min"),
                            ("to_zero", False, "zero")):
        progress(0.3 * len(figures) / 6, f"DPM-Solver++ 2M, {tag}")
        s = build_sampler("dpmpp-2m", sm, nfe=p["nfe"], grid=grid, final=final, lower_order_final=lof)
        figures.update(ref.figures(tag, s, p["n"], seed + 1))
        if final == "sigma_min":
            sig = s.sigmas.tolist()
            figures["last_step_ratio"] = math.log(sig[-2] / sig[-1]) / math.log(sig[-3] / sig[-2])
    figures["difference"] = figures["without_lof_excess"] - figures["with_lof_excess"]
    return figures


def _judge_lower_order_final(S, p):
    holds = S.lo("difference") > S.mean("exact_excess_q95")
    measured = (f"at {p['nfe']} NFE ending at σ_min, excess energy distance with lower_order_final "
                f"{S.pm('with_lof_excess')}, without {S.pm('without_lof_excess')}: difference {S.pm('difference')} "
                f"(mean − t·SE {S.lo('difference'):.3g}; exact samples' 95th percentile excess "
                f"{S.mean('exact_excess_q95'):.3g}); the last step is {S.mean('last_step_ratio'):.2g}× the one before "
                f"in log-SNR; ending at σ = 0 instead (the last step first order either way): "
                f"{S.pm('to_zero_excess')}")
    return holds, measured


# ------------------------------------------------------------------ the registry
_REACH = ("reach_share × the moment-matched Gaussian N(m, Σ)'s excess (excess = energy distance to a reference "
          "sample − the median of exact samples' of the same size)")

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    Experiment(
        "score-wrong-without-data", "The learned score is wrong where there is no data",
        "Score matching only sees the data, so a learned score is accurate where the density is high and "
        "arbitrary in the low-density regions between and around the modes.",
        "The relative score error ‖s_θ − s‖²/‖s‖² at grid points of very low density is far larger than where "
        "the data are.",
        "log₁₀ of (relative error where p_σ < low_rel·max p_σ over relative error in the region holding the top "
        "`mass` of probability), mean − t·SE over the seeds, > log₁₀ min_ratio (a zero or untrained field has "
        "relative error ≈ 1 everywhere: ratio ≈ 1)",
        "an untrained network (its initial weights, no training step)",
        {"density": "two_gaussians", "sigma": 0.1, "steps": 1500, "width": 64, "batch": 256, "seed": 0, "seeds": 3,
         "grid": 80, "mass": 0.9, "low_rel": 1e-4, "min_ratio": 10.0},
        _score_wrong_without_data, _judge_score_wrong,
        {"relative_error_high_density": "rel. error, data region", "relative_error_low_density": "rel. error, no data",
         "ratio_low_to_high": "ratio no-data / data"}),
    Experiment(
        "ssm-needs-noise", "Sliced score matching needs a little noise",
        "Data concentrated near a curve have an enormous, rapidly varying score; sliced score matching on such "
        "clean data fits it poorly, while the same data perturbed by a small Gaussian noise has a smooth score "
        "that SSM learns well.",
        "Relative to the size of its target, the model trained on noised data has a much smaller Fisher "
        "divergence than the one trained on clean data.",
        "Fisher/E‖∇log p‖² with noise over without (each model against the density it was trained on), "
        "mean + t·SE over the seeds, < factor",
        "no noise: the second model is trained on the same clean data (with its own training seed)",
        {"density": "two_moons", "data_std": 0.01, "sigma": 0.1, "steps": 1500, "width": 64, "batch": 256,
         "lr": 2e-3, "seed": 0, "seeds": 3, "n_eval": 2000, "factor": 0.5},
        _ssm_needs_noise, _judge_ssm,
        {"relative_fisher_clean": "rel. Fisher, clean", "relative_fisher_noised": "rel. Fisher, noised",
         "ratio_noised_to_clean": "ratio noised / clean"}),
    Experiment(
        "langevin-mode-weights", "Plain Langevin misses mode weights; annealing recovers them",
        "Langevin dynamics with the exact score reaches the modes quickly but mixes between well-separated modes "
        "only over exponentially long times, so it keeps the proportions of its start; annealed Langevin, "
        "starting at large noise where the modes overlap, recovers them (up to a small bias toward the start's "
        "split that shrinks as the annealing slows: mass on the wrong side when the barrier rises stays there).",
        "From a uniform start (≈ 0.5 / 0.5), plain Langevin's particles sit in the modes but ≈ 0.5 in the 0.8 "
        "mode; annealed Langevin ends near 0.8.",
        "plain Langevin reaches the modes (share of particles inside the modes' 99.9 % ellipses, mean + t·SE, at "
        "least an exact sample's lower 1 % binomial quantile) and keeps a wrong split (mode-weight error − t·SE "
        "above an exact sample's 99th percentile), and annealed Langevin's mode-weight error + t·SE is below "
        "recover_factor × plain's − t·SE",
        "no annealing: the annealed chain's steps all taken at the smallest level (plain Langevin, same step count)",
        {"density": "two_gaussians", "n": 4000, "seed": 0, "seeds": 3, "eps": 0.01, "langevin_steps": 1000,
         "n_levels": 20, "steps_per_level": 100, "annealed_eps": 1e-3, "sigma_min": 0.05, "sigma_max": 0.0,
         "recover_factor": 0.1, "null_reps": 50},
        _langevin_mode_weights, _judge_langevin,
        {"true_heavy_weight": "true heavy weight", "start_heavy_weight": "start heavy weight",
         "langevin_heavy_weight": "plain: heavy weight", "annealed_heavy_weight": "annealed: heavy weight",
         "langevin_mode_weight_error": "plain: weight error", "annealed_mode_weight_error": "annealed: weight error",
         "langevin_share_in_modes": "plain: share in modes", "start_share_in_modes": "start: share in modes",
         "exact_mode_weight_error_q99": "exact: weight error q99"}),
    Experiment(
        "noise-levels-fix-both", "Noise levels fix both problems",
        "Training at many noise levels (NCSN) makes the score accurate everywhere it is needed, and annealed "
        "Langevin uses those levels to get mode weights right: together they beat one small σ with plain Langevin.",
        "NCSN + annealed Langevin has the smaller energy distance and the smaller mode-weight error.",
        "NCSN + annealed reaches the density (excess energy distance + t·SE < " + _REACH + "), and, paired per seed "
        "(same reference, same uniform start), the gains DSM+Langevin − NCSN+annealed in excess energy distance "
        "and in mode-weight error both have mean − t·SE > 0",
        "one noise level: the NCSN model trained at the single level σ and sampled by plain Langevin like the DSM arm",
        {"density": "two_gaussians", "sigma": 0.1, "steps": 2000, "width": 64, "batch": 256, "seed": 0, "seeds": 3,
         "n": 2000, "eps": 0.01, "langevin_steps": 1000, "reach_share": 0.25, "null_reps": 20},
        _noise_levels_fix_both, _judge_noise_levels,
        {"dsm_langevin_excess": "DSM+Langevin: excess ED", "ncsn_annealed_excess": "NCSN+annealed: excess ED",
         "dsm_langevin_mode_weight_error": "DSM+Langevin: weight error",
         "ncsn_annealed_mode_weight_error": "NCSN+annealed: weight error", "excess_gain": "gain in excess ED",
         "mode_weight_error_gain": "gain in weight error"}),
    Experiment(
        "ddpm-forward-reverse", "DDPM: forward to noise, reverse to data",
        "The forward process q(x_t|x_0) carries any density to N(0, I); a network trained to predict the noise "
        "runs the chain back, and its −ELBO bounds the negative log-likelihood from above — tightly enough to "
        "beat the best Gaussian model of the data.",
        "KL(q_t ‖ N(0,I)) falls to ≈ 0 by t = T; DDPM samples reach the density; NLL ≤ −ELBO < the NLL of the "
        "moment-matched Gaussian.",
        "KL decreasing over the listed t and its mean + t·SE < kl_end_below at T; DDPM's excess energy distance + "
        "t·SE < " + _REACH + "; −ELBO − NLL of the best Gaussian, + t·SE, < 0; −ELBO − true NLL, + t·SE, ≥ 0",
        "an untrained noise-prediction network (its initial weights)",
        {"density": "eight_gaussians", "steps": 3000, "width": 128, "batch": 256, "seed": 0, "seeds": 3,
         "n_timesteps": 1000, "n": 1000, "n_kl": 20000, "n_elbo": 1000, "kl_end_below": 0.01, "reach_share": 0.25,
         "null_reps": 40},
        _ddpm_forward_reverse, _judge_ddpm,
        {"ddpm_excess": "DDPM: excess ED", "ddpm_start": "start: excess ED", "elbo_nats": "−ELBO (nats)",
         "elbo_exact_eps_nats": "−ELBO, exact ε", "true_nll_nats": "true NLL", "gaussian_nll_nats": "Gaussian NLL",
         "exact_excess_q95": "exact: excess ED q95"}),
    Experiment(
        "ebm-vs-score", "Energy model or score network",
        "An energy-based model's score −∇f needs no partition function and learns the same field as a network "
        "that outputs the score directly, at the price of a backward pass inside every evaluation.",
        "Both reach a Fisher divergence far below an untrained network's; the EBM takes fewer steps per second.",
        "for both, trained Fisher / untrained Fisher + t·SE < learn_factor; and MLP − EBM steps/s − t·SE > 0 "
        "(a timing: it depends on the machine)",
        "untrained networks (their initial weights)",
        {"density": "two_gaussians", "sigma": 0.2, "steps": 1500, "width": 64, "batch": 256, "seed": 0, "seeds": 3,
         "n_eval": 2000, "learn_factor": 0.1, "timing_steps": 100, "timing_rounds": 2},
        _ebm_vs_score, _judge_ebm,
        {"fisher_ratio_mlp": "MLP: Fisher / untrained", "fisher_ratio_ebm": "EBM: Fisher / untrained",
         "steps_per_second_mlp": "MLP steps/s", "steps_per_second_ebm": "EBM steps/s"}),
    Experiment(
        "few-steps", "Few steps: DDPM, DDIM and the PF-ODE",
        "With the same score, samplers differ in how many network evaluations they need: respaced DDPM and DDIM "
        "get close to the density in ~10 evaluations, the Heun PF-ODE needs more.",
        "At 50 NFE all three reach the density, with the exact score and with a trained DDPM model; at 10 NFE "
        "DDPM and DDIM do with the exact score and the PF-ODE (5 Heun steps) does not.",
        "reached: excess energy distance + t·SE < " + _REACH + "; every sampler reaches at 50 NFE (exact score and "
        "model), DDPM and DDIM at 10 NFE (exact score), and the PF-ODE at 10 NFE does not (excess − t·SE above "
        "the bound). The model's 10-NFE results are reported, not judged",
        "an untrained network drives every row, the exact-score ones included",
        {"density": "eight_gaussians", "steps": 3000, "width": 128, "batch": 256, "seed": 0, "seeds": 3, "n": 1000,
         "reach_share": 0.25, "null_reps": 40},
        _few_steps, _judge_few_steps, {}),
    Experiment(
        "one-model", "One model, every sampler",
        "NCSN and DDPM models estimate the same scores at two parameterisations, so an NCSN model can be sampled "
        "by DDPM or DDIM, and a DDPM model by annealed Langevin.",
        "Each cross-family sampler reaches the density, as the model's own sampler does.",
        "every sampler of each model (own and cross) reaches: excess energy distance + t·SE < " + _REACH,
        "untrained networks (their initial weights) in place of both models",
        {"density": "eight_gaussians", "steps": 3000, "width": 128, "batch": 256, "seed": 0, "seeds": 3, "n": 1000,
         "nfe": 100, "reach_share": 0.33, "null_reps": 40},
        _one_model, _judge_one_model, {}),
    Experiment(
        "memorisation", "A perfect fit of a finite training set memorises",
        "The optimum of denoising score matching on N fixed points is the score of the noised training set; "
        "sampled to small σ it returns the training points. A network trained on few points copies them; one "
        "trained on fresh data does not.",
        "Nearly all samples of the empirical optimal score, and many of a network trained on 20 points, lie "
        "within 2σ_min of a training point; few samples of a network trained on fresh data do.",
        "share within 2σ_min of a training point, mean − t·SE: > 1 − e⁻² (what the noised training set itself "
        "scores) for the empirical optimum and > copy_share for the network trained on the points; mean + t·SE < "
        "copy_share for the network trained on fresh data (fresh data samples score ≈ 0.02)",
        "no finite training set: the exact score of the density instead of the empirical optimum, the network "
        "trained on fresh data instead of the one trained on the points",
        {"density": "eight_gaussians", "n_data": 20, "steps": 6000, "fresh_steps": 3000, "width": 128, "batch": 256,
         "seed": 0, "seeds": 3, "n": 500, "nfe": 99, "copy_share": 0.15},
        _memorisation, _judge_memorisation,
        {"share_near_training_empirical_optimum": "empirical optimum: share near",
         "share_near_training_trained_on_points": "net on points: share near",
         "share_near_training_trained_on_fresh": "net on fresh data: share near",
         "share_near_training_fresh_data": "fresh data: share near"}),
    Experiment(
        "dpmpp-lower-order-final", "DPM-Solver++ 2M needs lower_order_final at few steps",
        "A multistep solver extrapolates from its past data predictions: D̃ = (1 + 1/2r) D − D₋₁/2r, r = h₋₁/h. "
        "When the last step is long in log-SNR (the DDPM time-uniform spacing ending at σ_min), r is small and "
        "the extrapolation overshoots; a first-order last step (diffusers' lower_order_final) avoids it.",
        "With ≤ 10 steps ending at σ_min, 2M without lower_order_final ends measurably farther from the density "
        "than with it. Ending at σ = 0 (the default) the last step is first order anyway, so the option changes "
        "nothing there.",
        "excess energy distance without − with lower_order_final (paired per seed), mean − t·SE, > the exact "
        "samples' 95th-percentile excess (more than sampling noise)",
        "log-SNR-uniform steps (r = 1 on every step: no long last step to extrapolate over)",
        {"density": "two_moons", "T": 1000, "grid": "time", "nfe": 10, "seed": 0, "seeds": 5, "n": 2000,
         "null_reps": 40},
        _lower_order_final, _judge_lower_order_final,
        {"with_lof_excess": "with lower_order_final", "without_lof_excess": "without",
         "to_zero_excess": "ending at σ = 0", "difference": "without − with", "last_step_ratio": "last h / previous h"}),
]}


def _import_experiment_files() -> None:
    """Every `*_experiments.py` module of this folder adds its experiments to EXPERIMENTS when imported
    (flow_experiments, guidance_experiments, …): a new experiment file needs no other edit."""
    import importlib
    import pkgutil
    from pathlib import Path
    for m in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if m.name.endswith("_experiments"):
            importlib.import_module(f"{__package__}.{m.name}")


_import_experiment_files()


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def run(name: str, params: dict | None = None, progress: Progress | None = None,
        control: bool = False) -> ExperimentResult:
    return get(name).run(params, progress, control)


class Cancelled(Exception):
    """Raised from the progress callback to stop an experiment."""


def run_until_cancelled(experiment: Experiment, params: dict, progress: Progress,
                        cancelled: Callable[[], bool], control: bool = False) -> ExperimentResult | None:
    """experiment.run(params, control=control) reporting to `progress`; None once a progress report sees
    cancelled(). The report raises `Cancelled` inside `run`, which unwinds it (its `finally` restores
    torch's thread count); experiments report between their phases (every 5 % of a training run, before
    each sampler), so a cancel takes effect at the end of the phase in flight."""
    def report(frac: float, text: str):
        if cancelled():
            raise Cancelled
        progress(float(frac), str(text))

    try:
        return experiment.run(params, report, control)
    except Cancelled:
        return None


def short_label(result: ExperimentResult, key: str) -> str:
    """A figure's short label: the experiment's own, else its name with spaces."""
    return result.labels.get(key) or key.replace("_", " ")


def format_value(mean: float, sd: float | None = None) -> str:
    """'mean ± sd' rounded to the spread's second significant digit (4 without a spread)."""
    if not math.isfinite(mean):
        return f"{mean}"
    if sd is None or not math.isfinite(sd) or sd <= 1e-12 * max(1.0, abs(mean)):
        return f"{mean:.4g}"
    digits = max(0, min(8, 1 - int(math.floor(math.log10(abs(sd))))))
    if abs(mean) >= 1e5 or (mean != 0 and abs(mean) < 1e-4 and sd < 1e-4):
        return f"{mean:.2e} ± {sd:.1e}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


# ------------------------------------------------------------------ command line
def format_result(result: ExperimentResult) -> str:
    e = EXPERIMENTS[result.name]
    verdict = "holds" if result.holds else "does NOT hold"
    lines = [f"{e.name}: {e.title}" + ("  [NEGATIVE CONTROL]" if result.control else ""),
             f"claim:     {e.claim}", f"expected:  {e.expected}"]
    if result.control:
        lines.append(f"control:   {result.control_what} (must not hold)")
    lines += [f"measured:  {result.measured}", f"criterion: {result.criterion}",
              f"verdict:   {verdict}  (seeds {', '.join(map(str, result.seeds))}; {result.seconds:.1f} s)",
              "figures (mean ± sd over the seeds; per seed):"]
    width = max(len(k) for k in result.figures)
    for k, v in result.figures.items():
        seeds = ", ".join(f"{x:.4g}" for x in result.per_seed.get(k, []))
        lines.append(f"  {k:<{width}}  {format_value(v, result.spread.get(k)):>22}   [{seeds}]")
    return "\n".join(lines)


def _fail(message: str) -> int:
    sys.stderr.write(f"experiments: error: {message}\n")
    return 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one clear line instead of usage + message
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def main(argv=None) -> int:
    parser = _Parser(prog="experiments", description="Guided experiments: each claim reproduced and checked.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="the experiments, their claims and default parameters")
    r = sub.add_parser("run", help="run one experiment headless and print its figures")
    r.add_argument("name")
    r.add_argument("params", nargs="*", help="parameter overrides, key=value")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.add_argument("--control", action="store_true",
                   help="run the negative control (the mechanism removed); it must come out 'does not hold'")
    args, extra = parser.parse_known_args(argv)     # key=value may come before or after --json
    unknown = [a for a in extra if a.startswith("-") or args.command != "run"]
    if unknown:
        return _fail(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "list":
        for e in EXPERIMENTS.values():
            defaults = " ".join(f"{k}={v}" for k, v in e.defaults.items())
            print(f"{e.name}\n  {e.title}\n  claim:    {e.claim}\n  expected: {e.expected}\n"
                  f"  control:  {e.control}\n  defaults: {defaults}\n")
        return 0
    if args.name not in EXPERIMENTS:
        return _fail(f"unknown experiment {args.name!r}; choose one of {', '.join(EXPERIMENTS)}")
    overrides = {}
    for item in [*args.params, *extra]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            return _fail(f"parameters are key=value, got {item!r}")
        overrides[key] = value
    exp = EXPERIMENTS[args.name]
    try:
        exp.params(overrides)
    except ValueError as e:
        return _fail(str(e))
    try:
        result = exp.run(overrides, control=args.control)
    except ValueError as e:          # e.g. an unknown density name
        return _fail(str(e))
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_result(result))
    return 0


if __name__ == "__main__":
    # the imported module's main: experiments registered from other modules (flow_experiments) went into
    # trainers.studies.experiments.EXPERIMENTS, not into this __main__ copy's
    from trainers.studies.experiments import main as _main
    sys.exit(_main())
