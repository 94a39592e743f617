"""Experiments on what training a score learns (the objective, the model, the data), registered in
trainers.studies.experiments.EXPERIMENTS (the rules: that module's docstring):

- score-wrong-without-data: a learned score is accurate where the data are, wrong where there are none;
- ssm-needs-noise: sliced score matching fits data near a curve only once a little noise is added;
- ebm-vs-score: an energy model's −∇f learns the same field as a score network, at a backward pass each;
- memorisation: the optimum of DSM on a finite training set, and a network fitted to it, return the points.
"""
from __future__ import annotations

import math
import time

import torch

from ..densities import GaussianMixture
from ..fitting import ToyConfig, build_model_and_method, build_network, make_sampler, training_data, training_steps
from ..metrics import fisher_divergence
from ..samplers import build_sampler
from ..score_models import ExactScore
from .experiment_kit import _density, _net, _sample, _train
from .experiments import Experiment, register


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


# ------------------------------------------------------------------ the score is wrong where there is no data


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


# ------------------------------------------------------------------ sliced score matching needs noise


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


# ------------------------------------------------------------------ EBM vs score network


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


# ------------------------------------------------------------------ memorisation


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


# ------------------------------------------------------------------ registered in experiments.EXPERIMENTS
register(
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
)
