"""Guided experiments: each claim of the lecture reproduced in one call, measured, and checked headless.

An experiment has a name, a title, the claim, the expected outcome in words, default parameters (a dict
the user may override, values of the defaults' types) and `run(params, progress) -> ExperimentResult`:
the measured figures (named numbers), whether the claim holds by a stated criterion on those figures,
and one sentence of what was measured. Every run uses fixed seeds and one torch thread, and is sized
to finish in well under a minute on a 2-core CPU.

    python -m trainers.experiments list
    python -m trainers.experiments run langevin-mode-weights [--json] [n=4000 seed=1]
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

from .densities import GaussianMixture, preset
from .fitting import (ToyConfig, build_model_and_objective, ddpm_schedule, initial_for, make_sampler,
                      natural_sampler, score_model, train, training_data, training_steps)
from .metrics import (ddpm_elbo_nats, energy_distance, fisher_divergence, mean_pairwise_distance,
                      mode_weight_error, mode_weights)
from .samplers import SamplerOptions, build_sampler, initial_particles
from .score_models import ExactScore

Progress = Callable[[float, str], None]


@dataclass
class ExperimentResult:
    name: str
    figures: dict[str, float]      # named measured numbers
    holds: bool                    # the criterion, evaluated on the figures
    criterion: str                 # the criterion in words
    measured: str                  # one sentence: what was measured
    params: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "holds": self.holds, "criterion": self.criterion, "measured": self.measured,
                "figures": self.figures, "params": self.params, "seconds": self.seconds}


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    claim: str
    expected: str
    criterion: str
    defaults: dict
    body: Callable = field(repr=False, compare=False)   # body(params, progress) -> (figures, holds, measured)

    def params(self, overrides: dict | None = None) -> dict:
        """The defaults with `overrides` applied; strings are converted to the default's type.
        An unknown key or a value that does not convert raises ValueError naming it."""
        p = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in p:
                raise ValueError(f"{self.name} has no parameter {key!r}; it takes {', '.join(p)}")
            p[key] = _convert(key, value, p[key])
        return p

    def run(self, params: dict | None = None, progress: Progress | None = None) -> ExperimentResult:
        p = self.params(params)
        report = progress or (lambda frac, text: None)
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        start = time.perf_counter()
        try:
            figures, holds, measured = self.body(p, report)
        finally:
            torch.set_num_threads(before)
        report(1.0, "done")
        figures = {k: (float(v) if not isinstance(v, bool) else v) for k, v in figures.items()}
        return ExperimentResult(self.name, figures, bool(holds), self.criterion, measured, p,
                                time.perf_counter() - start)


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


def _density(name: str) -> GaussianMixture:
    return preset(name)


def _sample(sampler, n: int, seed: int, init: str = "gaussian", bounds=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x0 = initial_for(sampler, n, init, bounds, g)
    return sampler.run(x0, g).x


def _heavy_weight(x: torch.Tensor, density: GaussianMixture) -> float:
    """The sampled weight of the density's heaviest component."""
    return float(mode_weights(x, density)[int(torch.argmax(density.weights))])


def _floor(density: GaussianMixture, ref: torch.Tensor, n: int, seed: int, reps: int = 3) -> float:
    """Mean energy distance of independent exact samples of size n to `ref`."""
    g = torch.Generator().manual_seed(seed + 7919)
    ref_self = mean_pairwise_distance(ref)
    return sum(energy_distance(density.sample(n, g), ref, ref_self) for _ in range(reps)) / reps


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


# ------------------------------------------------------------------ 1. the score is wrong where there is no data
def _score_wrong_without_data(p, progress):
    d = _density(p["density"])
    cfg = ToyConfig(density=p["density"], objective="dsm", sigma=p["sigma"], steps=p["steps"], width=p["width"],
                    batch=p["batch"], seed=p["seed"])
    model, _, _ = _train(cfg, d, progress, 0.0, 0.9)
    target = d.noised(p["sigma"])
    x = _grid(d, p["grid"])
    with torch.no_grad():
        err = ((model(x) - target.score(x).float()) ** 2).sum(1).double()
        dens = target.log_prob(x).exp()
    # high density: the grid points holding the top `mass` of the grid's probability; low: p < low_rel · max p
    order = torch.argsort(dens, descending=True)
    cum = torch.cumsum(dens[order], 0) / dens.sum()
    high = torch.zeros_like(dens, dtype=torch.bool)
    high[order[: int((cum < p["mass"]).sum()) + 1]] = True
    low = dens < p["low_rel"] * dens.max()
    f_high, f_low = float(err[high].mean()), float(err[low].mean())
    f_weighted = float((err * dens).sum() / dens.sum())
    ratio = f_low / f_high
    figures = {"fisher_high_density": f_high, "fisher_low_density": f_low, "fisher_density_weighted": f_weighted,
               "ratio_low_to_high": ratio, "share_of_grid_low": float(low.double().mean()),
               "share_of_grid_high": float(high.double().mean())}
    measured = (f"DSM at σ = {p['sigma']:g}: squared score error {f_high:.3g} where the data are "
                f"(top {p['mass']:.0%} of mass) vs {f_low:.3g} where p_σ < {p['low_rel']:g}·max: {ratio:.0f}× larger")
    return figures, ratio > p["min_ratio"], measured


# ------------------------------------------------------------------ 2. sliced score matching needs noise
def _ssm_needs_noise(p, progress):
    base = _density(p["density"])
    clean = _thin(base, p["data_std"])
    noisy = clean.noised(p["sigma"])
    out, curves = {}, {}
    for i, (tag, data) in enumerate((("clean", clean), ("noised", noisy))):
        cfg = ToyConfig(density=p["density"], objective="ssm", steps=p["steps"], width=p["width"],
                        batch=p["batch"], lr=p["lr"], seed=p["seed"])
        model, losses, _ = _train(cfg, data, progress, i * 0.45, (i + 1) * 0.45, f"SSM on {tag} data")
        x = data.sample(p["n_eval"], torch.Generator().manual_seed(p["seed"] + 100))
        fisher = fisher_divergence(lambda y: model(y), data, x)
        with torch.no_grad():
            norm = float((data.score(x) ** 2).sum(1).mean())
        tail = torch.tensor(losses[len(losses) // 2:], dtype=torch.float64)
        out[f"fisher_{tag}"] = fisher
        out[f"relative_fisher_{tag}"] = fisher / norm
        out[f"score_norm2_{tag}"] = norm
        out[f"loss_final_{tag}"] = float(tail[-len(tail) // 5:].mean())
        out[f"loss_optimum_{tag}"] = -0.5 * norm          # SSM loss at the exact score: −½E‖∇log p‖²
        out[f"loss_tail_cv_{tag}"] = float(tail.std() / tail.mean().abs())
        curves[tag] = losses
    holds = out["relative_fisher_noised"] < p["factor"] * out["relative_fisher_clean"]
    measured = (f"SSM on data of std {p['data_std']:g}: Fisher/E‖∇log p‖² = {out['relative_fisher_clean']:.3g} "
                f"(final loss {out['loss_final_clean']:.4g}, optimum {out['loss_optimum_clean']:.4g}); on the same "
                f"data noised by σ = {p['sigma']:g}: {out['relative_fisher_noised']:.3g} (loss "
                f"{out['loss_final_noised']:.4g}, optimum {out['loss_optimum_noised']:.4g})")
    return out, holds, measured


# ------------------------------------------------------------------ 3. Langevin gets mode weights wrong
def _langevin_mode_weights(p, progress):
    d = _density(p["density"])
    exact = ExactScore(d, p["sigma_min"], p["sigma_max"] or None)
    g = torch.Generator().manual_seed(p["seed"])
    x0 = initial_particles(p["n"], "uniform", d.plot_bounds(), g)
    heavy = int(torch.argmax(d.weights))
    start = _heavy_weight(x0, d)
    progress(0.05, "plain Langevin")
    plain = build_sampler("langevin", exact, SamplerOptions(eps=p["eps"], steps=p["langevin_steps"]))
    x_plain = plain.run(x0, torch.Generator().manual_seed(p["seed"] + 1)).x
    progress(0.5, "annealed Langevin")
    annealed = build_sampler("annealed", exact, SamplerOptions(n_levels=p["n_levels"], steps=p["steps_per_level"]))
    x_ann = annealed.run(x0, torch.Generator().manual_seed(p["seed"] + 1)).x
    w_true = float(d.weights[heavy])
    figures = {"true_heavy_weight": w_true, "start_heavy_weight": start,
               "langevin_heavy_weight": _heavy_weight(x_plain, d), "annealed_heavy_weight": _heavy_weight(x_ann, d),
               "langevin_mode_weight_error": mode_weight_error(x_plain, d),
               "annealed_mode_weight_error": mode_weight_error(x_ann, d)}
    holds = (figures["langevin_heavy_weight"] < p["plain_below"]
             and abs(figures["annealed_heavy_weight"] - w_true) < p["tolerance"])
    measured = (f"heavy-mode weight {w_true:g}: uniform start {start:.3f}, plain Langevin "
                f"{figures['langevin_heavy_weight']:.3f}, annealed Langevin {figures['annealed_heavy_weight']:.3f}")
    return figures, holds, measured


# ------------------------------------------------------------------ 4. noise levels fix both problems
def _noise_levels_fix_both(p, progress):
    d = _density(p["density"])
    common = dict(density=p["density"], steps=p["steps"], width=p["width"], batch=p["batch"], seed=p["seed"])
    dsm_cfg = ToyConfig(objective="dsm", sigma=p["sigma"], **common)
    ncsn_cfg = ToyConfig(objective="ncsn", sigma_min=p["sigma"], **common)
    dsm, _, _ = _train(dsm_cfg, d, progress, 0.0, 0.35, "single-σ DSM")
    ncsn, _, _ = _train(ncsn_cfg, d, progress, 0.35, 0.7, "NCSN")
    bounds = d.plot_bounds()
    progress(0.7, "sampling")
    x_dsm = _sample(make_sampler("langevin", dsm_cfg, dsm, d, eps=p["eps"], steps=p["langevin_steps"]),
                    p["n"], p["seed"] + 1, "uniform", bounds)
    x_ncsn = _sample(make_sampler("annealed", ncsn_cfg, ncsn, d), p["n"], p["seed"] + 1, "uniform", bounds)
    ref = d.sample(p["n"], torch.Generator().manual_seed(p["seed"] + 2))
    ref_self = mean_pairwise_distance(ref)
    figures = {"dsm_langevin_energy_distance": energy_distance(x_dsm, ref, ref_self),
               "ncsn_annealed_energy_distance": energy_distance(x_ncsn, ref, ref_self),
               "dsm_langevin_mode_weight_error": mode_weight_error(x_dsm, d),
               "ncsn_annealed_mode_weight_error": mode_weight_error(x_ncsn, d),
               "floor_energy_distance": _floor(d, ref, p["n"], p["seed"])}
    holds = (figures["ncsn_annealed_energy_distance"] < figures["dsm_langevin_energy_distance"]
             and figures["ncsn_annealed_mode_weight_error"] < figures["dsm_langevin_mode_weight_error"])
    measured = (f"energy distance {figures['dsm_langevin_energy_distance']:.4f} (DSM σ = {p['sigma']:g} + Langevin) vs "
                f"{figures['ncsn_annealed_energy_distance']:.4f} (NCSN + annealed; floor "
                f"{figures['floor_energy_distance']:.4f}); mode-weight error "
                f"{figures['dsm_langevin_mode_weight_error']:.3f} vs {figures['ncsn_annealed_mode_weight_error']:.3f}")
    return figures, holds, measured


# ------------------------------------------------------------------ 5. DDPM forward and reverse
def _ddpm_forward_reverse(p, progress):
    d = _density(p["density"])
    cfg = ToyConfig(density=p["density"], objective="ddpm", steps=p["steps"], width=p["width"], batch=p["batch"],
                    seed=p["seed"], n_timesteps=p["n_timesteps"])
    sched = ddpm_schedule(cfg)
    g = torch.Generator().manual_seed(p["seed"] + 3)
    figures, kls = {}, []
    ts = sorted({min(sched.T - 1, max(0, round(f * sched.T) - 1)) for f in (0.001, 0.1, 0.25, 0.5, 0.75, 1.0)})
    for t in ts:
        q = d.ddpm_marginal(float(sched.alpha_bars[t]))
        x = q.sample(p["n_kl"], g).double()
        log_n = -0.5 * (x**2).sum(1) - math.log(2 * math.pi)
        kl = float((q.log_prob(x) - log_n).mean())
        figures[f"kl_t{t + 1}"] = kl
        kls.append(kl)
    progress(0.05, "training DDPM")
    model, _, _ = _train(cfg, d, progress, 0.05, 0.7, "DDPM")
    progress(0.7, "sampling")
    x = _sample(make_sampler("ddpm", cfg, model, d), p["n"], p["seed"] + 1)
    ref = d.sample(p["n"], torch.Generator().manual_seed(p["seed"] + 2))
    figures["energy_distance"] = energy_distance(x, ref)
    figures["floor_energy_distance"] = _floor(d, ref, p["n"], p["seed"])
    figures["mode_weight_error"] = mode_weight_error(x, d)
    progress(0.85, "ELBO")
    x0 = d.sample(p["n_elbo"], torch.Generator().manual_seed(p["seed"] + 4))
    torch.manual_seed(p["seed"] + 5)
    with torch.no_grad():
        figures["elbo_nats"] = ddpm_elbo_nats(model, sched, x0, cfg.ddpm_variance)["elbo_nats"]
        exact = score_model(None, cfg, d)
        torch.manual_seed(p["seed"] + 5)
        figures["elbo_exact_eps_nats"] = ddpm_elbo_nats(lambda xt, t: exact.eps(xt, t, sched), sched, x0,
                                                        cfg.ddpm_variance)["elbo_nats"]
        figures["true_nll_nats"] = float(-d.log_prob(x0.double()).mean())
    decreasing = all(b < a for a, b in zip(kls, kls[1:]))
    reached = figures["energy_distance"] <= p["ed_factor"] * figures["floor_energy_distance"] + p["ed_slack"]
    holds = decreasing and kls[-1] < p["kl_end_below"] and reached and figures["elbo_nats"] >= figures["true_nll_nats"]
    measured = (f"KL(q_t ‖ N(0,I)) {kls[0]:.2f} → {kls[-1]:.1e} nats from t = {ts[0] + 1} to {ts[-1] + 1}; DDPM back: "
                f"energy distance {figures['energy_distance']:.4f} (floor {figures['floor_energy_distance']:.4f}); "
                f"ELBO {figures['elbo_nats']:.3f} ≥ NLL {figures['true_nll_nats']:.3f} nats")
    return figures, holds, measured


# ------------------------------------------------------------------ 6. EBM vs score network
def _ebm_vs_score(p, progress):
    d = _density(p["density"])
    target = d.noised(p["sigma"])
    x = target.sample(p["n_eval"], torch.Generator().manual_seed(p["seed"] + 100))
    figures, cfgs = {}, {}
    for i, kind in enumerate(("mlp", "ebm")):
        cfg = cfgs[kind] = ToyConfig(density=p["density"], model=kind, objective="dsm", sigma=p["sigma"],
                                     steps=p["steps"], width=p["width"], batch=p["batch"], seed=p["seed"])
        untrained, _ = build_model_and_objective(cfg, d)
        untrained.eval()
        figures[f"fisher_untrained_{kind}"] = fisher_divergence(_score_fn(untrained), target, x)
        model, _, _ = _train(cfg, d, progress, i * 0.4, (i + 1) * 0.4, f"DSM, {kind}")
        figures[f"fisher_{kind}"] = fisher_divergence(_score_fn(model), target, x)
    progress(0.8, "timing training steps")
    speed = {"mlp": 0.0, "ebm": 0.0}
    for _ in range(p["timing_rounds"]):            # interleaved, best of each: fair on a busy machine
        for kind in speed:
            speed[kind] = max(speed[kind], _steps_per_second(cfgs[kind], d, p["timing_steps"]))
    for kind in speed:
        figures[f"steps_per_second_{kind}"] = speed[kind]
    learn = all(figures[f"fisher_{k}"] < p["learn_factor"] * figures[f"fisher_untrained_{k}"] for k in ("mlp", "ebm"))
    holds = learn and figures["steps_per_second_ebm"] < figures["steps_per_second_mlp"]
    measured = (f"Fisher vs p_σ: score MLP {figures['fisher_mlp']:.3g}, EBM {figures['fisher_ebm']:.3g} "
                f"(untrained {figures['fisher_untrained_mlp']:.3g} / {figures['fisher_untrained_ebm']:.3g}); "
                f"{figures['steps_per_second_mlp']:.0f} vs {figures['steps_per_second_ebm']:.0f} steps/s")
    return figures, holds, measured


def _steps_per_second(cfg: ToyConfig, density: GaussianMixture, n: int) -> float:
    """Adam steps per second of cfg's model and objective (after a few warm-up steps)."""
    model, objective = build_model_and_objective(cfg, density)
    sample_batch, _ = training_data(cfg, density)
    steps = training_steps(model, objective, sample_batch, cfg.lr, cfg.batch, cfg.seed)
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
def _few_steps(p, progress):
    from .lab import run_lab
    d = _density(p["density"])
    cfg = ToyConfig(density=p["density"], objective="ddpm", steps=p["steps"], width=p["width"], batch=p["batch"],
                    seed=p["seed"])
    model, _, _ = _train(cfg, d, progress, 0.0, 0.6, "DDPM")
    samplers, nfes = ("ddpm", "ddim", "pf-ode"), (10, 50)
    lab = run_lab(d, score_model(model, cfg, d), score_model(None, cfg, d), samplers, nfes, n=p["n"], seed=p["seed"],
                  progress=lambda f, text: progress(0.6 + 0.4 * f, text))
    threshold = 2 * lab.floor + p["slack"]
    figures = {"floor": lab.floor, "threshold": threshold}
    reach = {}
    for r in lab.rows:
        key = f"{r.sampler}_{r.source}_{r.nfe_target}"
        figures[f"ed_{key}"] = r.energy_distance
        reach[key] = r.energy_distance <= threshold
    for src in ("exact", "model"):
        for nfe in nfes:
            figures[f"reached_{src}_{nfe}"] = sum(reach[f"{s}_{src}_{nfe}"] for s in samplers)
    holds = (all(reach[f"{s}_{src}_50"] for s in samplers for src in ("exact", "model"))
             and reach["ddpm_exact_10"] and reach["ddim_exact_10"] and not reach["pf-ode_exact_10"])
    words = {src: {nfe: ", ".join(s for s in samplers if reach[f"{s}_{src}_{nfe}"]) or "none" for nfe in nfes}
             for src in ("exact", "model")}
    measured = (f"within 2× floor (+{p['slack']:g}) — exact score: 10 NFE {words['exact'][10]}; "
                f"50 NFE {words['exact'][50]}; DDPM model: 10 NFE {words['model'][10]}; 50 NFE {words['model'][50]}")
    return figures, holds, measured


# ------------------------------------------------------------------ 8. one model, every sampler
def _one_model(p, progress):
    d = _density(p["density"])
    common = dict(density=p["density"], steps=p["steps"], width=p["width"], batch=p["batch"], seed=p["seed"])
    ref = d.sample(p["n"], torch.Generator().manual_seed(p["seed"] + 2))
    ref_self = mean_pairwise_distance(ref)
    figures = {"floor_energy_distance": _floor(d, ref, p["n"], p["seed"])}
    holds = True
    parts = []
    plans = (("ncsn", ("ddpm", "ddim")), ("ddpm", ("annealed",)))
    for i, (objective, others) in enumerate(plans):
        cfg = ToyConfig(objective=objective, **common)
        model, _, _ = _train(cfg, d, progress, i * 0.4, i * 0.4 + 0.25, objective.upper())
        own = natural_sampler(cfg)
        eds = {}
        for name in (own, *others):
            progress(i * 0.4 + 0.3, f"{objective.upper()} model, {name} sampler")
            opts = {"nfe": p["nfe"]} if name in ("ddpm", "ddim") and name != own else {}
            x = _sample(make_sampler(name, cfg, model, d, **opts), p["n"], p["seed"] + 1)
            eds[name] = energy_distance(x, ref, ref_self)
            figures[f"{objective}_model_{name}_energy_distance"] = eds[name]
        for name in others:
            ok = eds[name] <= 2 * eds[own] + p["slack"]
            holds = holds and ok
            parts.append(f"{objective.upper()} model by {name} {eds[name]:.4f} vs {own} {eds[own]:.4f}")
    measured = "energy distance: " + "; ".join(parts) + f" (floor {figures['floor_energy_distance']:.4f})"
    return figures, holds, measured


# ------------------------------------------------------------------ 9. memorisation
def _memorisation(p, progress):
    from .memorisation import EmpiricalScore, memorisation_report
    d = _density(p["density"])
    small = ToyConfig(density=p["density"], objective="ncsn", steps=p["steps"], width=p["width"], batch=p["batch"],
                      seed=p["seed"], n_data=p["n_data"])
    fresh_cfg = ToyConfig(density=p["density"], objective="ncsn", steps=p["fresh_steps"], width=p["width"],
                          batch=p["batch"], seed=p["seed"])
    points = training_data(small, d)[1]
    fresh = d.sample(p["n"], torch.Generator().manual_seed(p["seed"] + 3))
    figures, reports = {}, {}
    m_small, _, _ = _train(small, d, progress, 0.0, 0.4, f"NCSN on {p['n_data']} points")
    m_fresh, _, _ = _train(fresh_cfg, d, progress, 0.4, 0.8, "NCSN on fresh data")
    progress(0.8, "sampling")
    sources = {"empirical_optimum": (EmpiricalScore(points, small.sigma_min), None),
               "trained_on_points": (None, (small, m_small)), "trained_on_fresh": (None, (fresh_cfg, m_fresh))}
    for name, (sm, trained) in sources.items():
        if sm is not None:
            sampler = build_sampler("pf-ode", sm, nfe=p["nfe"])
        else:
            sampler = make_sampler("pf-ode", trained[0], trained[1], d, nfe=p["nfe"])
        x = _sample(sampler, p["n"], p["seed"] + 1)
        reports[name] = memorisation_report(x, points, fresh, small.sigma_min)
        figures[f"share_near_training_{name}"] = reports[name]["share_near_training"]
        figures[f"nn_ratio_{name}"] = reports[name]["ratio"]
    figures["share_near_training_fresh_data"] = reports["trained_on_fresh"]["share_near_training_fresh"]
    holds = (figures["share_near_training_empirical_optimum"] > 0.9
             and figures["share_near_training_trained_on_points"] > 0.5
             and figures["share_near_training_trained_on_fresh"] < 0.15)
    measured = (f"share of samples within {2 * small.sigma_min:g} of one of {p['n_data']} training points: "
                f"empirical optimal score {figures['share_near_training_empirical_optimum']:.2f}, network trained on "
                f"them {figures['share_near_training_trained_on_points']:.2f}, network trained on fresh data "
                f"{figures['share_near_training_trained_on_fresh']:.2f} (fresh data {figures['share_near_training_fresh_data']:.2f})")
    return figures, holds, measured


# ------------------------------------------------------------------ the registry
EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    Experiment(
        "score-wrong-without-data", "The learned score is wrong where there is no data",
        "Score matching only sees the data, so a learned score is accurate where the density is high and "
        "arbitrary in the low-density regions between and around the modes.",
        "The squared score error at grid points of very low density is far larger than where the data are.",
        "mean squared score error where p_σ < low_rel·max p_σ is more than min_ratio × that in the region "
        "holding the top `mass` of probability",
        {"density": "two_gaussians", "sigma": 0.1, "steps": 1500, "width": 64, "batch": 256, "seed": 0,
         "grid": 80, "mass": 0.9, "low_rel": 1e-4, "min_ratio": 10.0},
        _score_wrong_without_data),
    Experiment(
        "ssm-needs-noise", "Sliced score matching needs a little noise",
        "Data concentrated near a curve have an enormous, rapidly varying score; sliced score matching on such "
        "clean data fits it poorly and noisily, while the same data perturbed by a small Gaussian noise has a "
        "smooth score that SSM learns well.",
        "Relative to the size of its target, the model trained on noised data has a much smaller Fisher "
        "divergence, and its loss gets close to its optimum −½E‖∇log p‖²; on clean data it stays far above it.",
        "Fisher/E‖∇log p‖² with noise < factor × without (each model measured against the density it was "
        "trained on); the loss curves' second-half spread (loss_tail_cv) is reported, not judged: on these "
        "smooth 2D densities neither curve blows up",
        {"density": "two_moons", "data_std": 0.01, "sigma": 0.1, "steps": 1500, "width": 64, "batch": 256,
         "lr": 2e-3, "seed": 0, "n_eval": 2000, "factor": 0.5},
        _ssm_needs_noise),
    Experiment(
        "langevin-mode-weights", "Plain Langevin misses mode weights; annealing recovers them",
        "Langevin dynamics with the exact score mixes between well-separated modes only over exponentially long "
        "times, so it keeps the proportions of its start; annealed Langevin, starting at large noise where the "
        "modes overlap, gets them right.",
        "From a uniform start (≈ 0.5 / 0.5), plain Langevin ends near 0.5 in the 0.8 mode; annealed Langevin "
        "ends near 0.8.",
        "plain Langevin's heavy-mode weight < plain_below and annealed's within tolerance of the true weight",
        {"density": "two_gaussians", "n": 4000, "seed": 0, "eps": 0.01, "langevin_steps": 1000,
         "n_levels": 10, "steps_per_level": 100, "sigma_min": 0.05, "sigma_max": 0.0,
         "plain_below": 0.65, "tolerance": 0.05},
        _langevin_mode_weights),
    Experiment(
        "noise-levels-fix-both", "Noise levels fix both problems",
        "Training at many noise levels (NCSN) makes the score accurate everywhere it is needed, and annealed "
        "Langevin uses those levels to get mode weights right: together they beat one small σ with plain Langevin.",
        "NCSN + annealed Langevin has the smaller energy distance and the smaller mode-weight error.",
        "NCSN+annealed energy distance and mode-weight error both below single-σ DSM + Langevin's "
        "(both from the same uniform start)",
        {"density": "two_gaussians", "sigma": 0.1, "steps": 2000, "width": 64, "batch": 256, "seed": 0,
         "n": 2000, "eps": 0.01, "langevin_steps": 1000},
        _noise_levels_fix_both),
    Experiment(
        "ddpm-forward-reverse", "DDPM: forward to noise, reverse to data",
        "The forward process q(x_t|x_0) carries any density to N(0, I); a network trained to predict the noise "
        "runs the chain back, and its ELBO bounds the negative log-likelihood from above.",
        "KL(q_t ‖ N(0,I)) falls to ≈ 0 by t = T; DDPM samples are close to the density; ELBO ≥ true NLL.",
        "KL decreasing over the listed t and < kl_end_below at T; energy distance ≤ ed_factor × floor + ed_slack; "
        "ELBO (model ε) ≥ exact NLL",
        {"density": "eight_gaussians", "steps": 3000, "width": 128, "batch": 256, "seed": 0, "n_timesteps": 1000,
         "n": 1000, "n_kl": 20000, "n_elbo": 1000, "kl_end_below": 0.01, "ed_factor": 2.0, "ed_slack": 0.003},
        _ddpm_forward_reverse),
    Experiment(
        "ebm-vs-score", "Energy model or score network",
        "An energy-based model's score −∇f needs no partition function and learns the same field as a network "
        "that outputs the score directly, at the price of a backward pass inside every evaluation.",
        "Both reach a Fisher divergence far below an untrained network's; the EBM takes fewer steps per second.",
        "both trained Fisher divergences < learn_factor × their untrained value, and EBM steps/s < MLP steps/s "
        "(a timing: it depends on the machine)",
        {"density": "two_gaussians", "sigma": 0.2, "steps": 1500, "width": 64, "batch": 256, "seed": 0,
         "n_eval": 2000, "learn_factor": 0.1, "timing_steps": 100, "timing_rounds": 3},
        _ebm_vs_score),
    Experiment(
        "few-steps", "Few steps: DDPM, DDIM and the PF-ODE",
        "With the same score, samplers differ in how many network evaluations they need: respaced DDPM and DDIM "
        "reach the density in ~10 evaluations, the Heun PF-ODE needs more.",
        "At 50 NFE all three reach the density, with the exact score and with a trained DDPM model; at 10 NFE "
        "DDPM and DDIM do with the exact score and the PF-ODE (5 Heun steps) does not.",
        "energy distance ≤ 2× floor + slack for every sampler at 50 NFE (exact score and model) and for DDPM and "
        "DDIM at 10 NFE (exact score); above it for the PF-ODE at 10 NFE (exact score). The model's 10-NFE "
        "results are reported, not judged",
        {"density": "eight_gaussians", "steps": 3000, "width": 128, "batch": 256, "seed": 0, "n": 1000,
         "slack": 0.003},
        _few_steps),
    Experiment(
        "one-model", "One model, every sampler",
        "NCSN and DDPM models estimate the same scores at two parameterisations, so an NCSN model can be sampled "
        "by DDPM or DDIM, and a DDPM model by annealed Langevin.",
        "Each cross-family sampler does about as well as the model's own sampler.",
        "each cross sampler's energy distance ≤ 2 × the own sampler's + slack",
        {"density": "eight_gaussians", "steps": 3000, "width": 128, "batch": 256, "seed": 0, "n": 1000,
         "nfe": 100, "slack": 0.003},
        _one_model),
    Experiment(
        "memorisation", "A perfect fit of a finite training set memorises",
        "The optimum of denoising score matching on N fixed points is the score of the noised training set; "
        "sampled to small σ it returns the training points. A network trained on few points copies them; one "
        "trained on fresh data does not.",
        "Nearly all samples of the empirical optimal score, and most of a network trained on 20 points, lie "
        "within 2σ_min of a training point; few samples of a network trained on fresh data do.",
        "share within 2σ_min of a training point > 0.9 (empirical optimum), > 0.5 (trained on the points), "
        "< 0.15 (trained on fresh data)",
        {"density": "eight_gaussians", "n_data": 20, "steps": 6000, "fresh_steps": 3000, "width": 128, "batch": 256,
         "seed": 0,
         "n": 500, "nfe": 99},
        _memorisation),
]}


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def run(name: str, params: dict | None = None, progress: Progress | None = None) -> ExperimentResult:
    return get(name).run(params, progress)


# ------------------------------------------------------------------ command line
def format_result(result: ExperimentResult) -> str:
    e = EXPERIMENTS[result.name]
    lines = [f"{e.name}: {e.title}", f"claim:     {e.claim}", f"expected:  {e.expected}",
             f"measured:  {result.measured}", f"criterion: {result.criterion}",
             f"verdict:   {'holds' if result.holds else 'does NOT hold'}  ({result.seconds:.1f} s)", "figures:"]
    width = max(len(k) for k in result.figures)
    lines += [f"  {k:<{width}}  {v:.6g}" for k, v in result.figures.items()]
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
    args, extra = parser.parse_known_args(argv)     # key=value may come before or after --json
    unknown = [a for a in extra if a.startswith("-") or args.command != "run"]
    if unknown:
        return _fail(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "list":
        for e in EXPERIMENTS.values():
            defaults = " ".join(f"{k}={v}" for k, v in e.defaults.items())
            print(f"{e.name}\n  {e.title}\n  claim:    {e.claim}\n  expected: {e.expected}\n  defaults: {defaults}\n")
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
        result = exp.run(overrides)
    except ValueError as e:          # e.g. an unknown density name
        return _fail(str(e))
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
