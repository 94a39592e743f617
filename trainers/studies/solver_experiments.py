"""Experiments on samplers and solvers at a given score, registered in
trainers.studies.experiments.EXPERIMENTS (the rules: that module's docstring):

- few-steps: DDPM and DDIM reach the density in ~10 evaluations, the Heun PF-ODE does not;
- one-model: NCSN and DDPM models are sampled by each other's samplers;
- dpmpp-lower-order-final: DPM-Solver++ 2M needs a first-order last step when that step is long in log-SNR.
"""
from __future__ import annotations

import math

from ..fitting import ToyConfig, make_sampler, method_for
from ..methods import method_class
from ..samplers import build_sampler
from ..score_models import ExactScore
from .experiment_kit import _REACH, _density, _net, _reached, _Reference
from .experiments import Experiment, register


# ------------------------------------------------------------------ few steps
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


# ------------------------------------------------------------------ one model, every sampler
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


# ------------------------------------------------------------------ DPM-Solver++ 2M at few steps


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


# ------------------------------------------------------------------ registered in experiments.EXPERIMENTS
register(
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
)
