"""Experiments on sampling by Langevin dynamics and by noise levels, registered in
trainers.studies.experiments.EXPERIMENTS (the rules: that module's docstring):

- langevin-mode-weights: plain Langevin reaches the modes but keeps its start's mode weights; annealing
  recovers them;
- noise-levels-fix-both: NCSN + annealed Langevin beat one small σ with plain Langevin;
- ddpm-forward-reverse: the forward process reaches N(0, I), DDPM runs it back, and −ELBO bounds the NLL.
"""
from __future__ import annotations

import math

import torch

from ..densities import GaussianMixture
from ..fitting import ToyConfig, make_sampler, method_for, score_model
from ..metrics import ddpm_elbo_nats, mode_weight_error, mode_weights
from ..samplers import SamplerOptions, build_sampler, initial_particles
from ..score_models import ExactScore
from .experiment_kit import _REACH, _density, _net, _reached, _Reference, _sample, _train
from .experiments import Experiment, register


def _heavy_weight(x: torch.Tensor, density: GaussianMixture) -> float:
    """The sampled weight of the density's heaviest component."""
    return float(mode_weights(x, density)[int(torch.argmax(density.weights))])


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


# ------------------------------------------------------------------ Langevin gets mode weights wrong


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


# ------------------------------------------------------------------ noise levels fix both problems


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


# ------------------------------------------------------------------ DDPM forward and reverse


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


# ------------------------------------------------------------------ registered in experiments.EXPERIMENTS
register(
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
)
