"""The guidance experiments of issue #22, in the pattern of trainers.studies.experiments (claim, per-seed
body, judge on means with t·SE margins, a negative control that must come out "does not hold"):

- `guidance-diversity`: CFG trades diversity for class fidelity;
- `cfg-not-tilted`: CFG does not sample the tilted density p(x|c)^{1+w} p(x)^{−w}, and DDPM and DDIM
  disagree under it (at w = 0 both sample p(x|c));
- `autoguidance-modes`: on a tree-shaped two-class mixture (densities.tree_mixture, in the spirit of
  edm2's toy), autoguidance with a weaker network keeps the class's mode weights and its distance to
  p(x|c) closer than CFG at the same w.

Importing this module adds them to experiments.EXPERIMENTS (trainers.studies.experiments imports every
`*_experiments` module of its folder): `python -m trainers.studies.experiments run NAME [--control] [key=value …]`.
"""
from __future__ import annotations

import math

import torch

from ..densities import preset
from ..fitting import ToyConfig, initial_for
from ..guidance import TiltedTarget, autoguidance, exact_cfg
from ..conditional import class_score, guided_score
from ..metrics import mean_pairwise_distance, mode_weight_error, mode_weights
from ..samplers import build_sampler
from .experiment_kit import _Reference, _train
from .experiments import EXPERIMENTS, Experiment


def _run(model, sampler: str, n: int, seed: int, nfe: int | None = None) -> torch.Tensor:
    """`sampler` on `model` from its Gaussian start; start and noise from `seed`."""
    s = build_sampler(sampler, model, nfe=nfe)
    g = torch.Generator().manual_seed(seed)
    return s.run(initial_for(s, n, "gaussian", None, g), g).x


def _class_share(x: torch.Tensor, density, c: int) -> float:
    return float((density.class_posterior(x.double()).argmax(1) == c).double().mean())


# ------------------------------------------------------------------ 1. diversity vs class fidelity
def _diversity(p, seed, control, progress):
    d = preset(p["density"])
    c = d.class_index(p["class_name"])
    cond = d.conditional(c)
    w_hi = 0.0 if control else p["w"]
    out = {}
    for tag, w in (("w0", 0.0), ("hi", w_hi)):
        progress(0.5 if tag == "hi" else 0.0, f"exact CFG at w = {w:g}")
        x = _run(exact_cfg(d, c, w), p["sampler"], p["n"], seed, p["nfe"])
        out[f"spread_{tag}"] = mean_pairwise_distance(x)
        out[f"tv_{tag}"] = mode_weight_error(x, cond)
        out[f"share_{tag}"] = _class_share(x, d, c)
    out["spread_drop"] = out["spread_w0"] - out["spread_hi"]
    out["tv_rise"] = out["tv_hi"] - out["tv_w0"]
    out["share_change"] = out["share_hi"] - out["share_w0"]
    return out


def _judge_diversity(S, p):
    holds = S.lo("spread_drop") > 0 and S.lo("tv_rise") > 0 and S.lo("share_change") > -p["share_tol"]
    measured = (f"w = 0 → {p['w']:g}: diversity (mean pairwise distance) {S.pm('spread_w0')} → {S.pm('spread_hi')}; "
                f"mode-weight TV to p(x|c) {S.pm('tv_w0')} → {S.pm('tv_hi')}; class share {S.pm('share_w0')} → "
                f"{S.pm('share_hi')}")
    return holds, measured


# ------------------------------------------------------------------ 2. CFG is not the tilted density
def _not_tilted(p, seed, control, progress):
    d = preset(p["density"])
    c = d.class_index(p["class_name"])
    w_hi = 0.0 if control else p["w"]
    ref0 = _Reference(d.conditional(c), p["n"], seed, p["null_reps"])
    refw = _Reference(TiltedTarget(d, c, w_hi, n=p["grid"]), p["n"], seed, p["null_reps"])
    out = {"gaussian_excess": ref0.gaussian_excess, "exact_excess_q95_w": refw.q95 - refw.median}
    for i, name in enumerate(("ddpm", "ddim")):
        progress(i / 2, f"{name}: exact CFG at w = 0 and {w_hi:g}")
        nfe = None if name == "ddpm" else p["ddim_nfe"]
        out[f"{name}_w0_excess"] = ref0.ed(_run(exact_cfg(d, c, 0.0), name, p["n"], seed, nfe)) - ref0.median
        out[f"{name}_w_excess"] = refw.ed(_run(exact_cfg(d, c, w_hi), name, p["n"], seed, nfe)) - refw.median
    out["ddim_minus_ddpm_w"] = out["ddim_w_excess"] - out["ddpm_w_excess"]
    return out


def _judge_not_tilted(S, p):
    bound = p["reach_share"] * S.mean("gaussian_excess")
    match0 = all(S.hi(f"{s}_w0_excess") < bound for s in ("ddpm", "ddim"))
    q95 = S.mean("exact_excess_q95_w")
    miss = all(S.lo(f"{s}_w_excess") > q95 for s in ("ddpm", "ddim"))
    differ = S.lo("ddim_minus_ddpm_w") > 0 or S.hi("ddim_minus_ddpm_w") < 0
    measured = (f"excess energy distance (over exact samples' median) to p(x|c) at w = 0: DDPM "
                f"{S.pm('ddpm_w0_excess')}, DDIM {S.pm('ddim_w0_excess')} (reached below {bound:.3g}: "
                f"{'both' if match0 else 'not both'}); to the tilted target at w = {p['w']:g}: DDPM "
                f"{S.pm('ddpm_w_excess')}, DDIM {S.pm('ddim_w_excess')} against exact samples' 95th percentile "
                f"{q95:.2g}; DDIM − DDPM {S.pm('ddim_minus_ddpm_w')}")
    return match0 and miss and differ, measured


# ------------------------------------------------------------------ 3. autoguidance keeps the modes
def _tips(density) -> torch.Tensor:
    """The tree's outermost branches: components of the thinnest width (tree_mixture: 0.08·0.8^level)."""
    width = torch.linalg.eigvalsh(density.covs)[:, 0].sqrt()
    level = torch.round(torch.log(width / 0.08) / math.log(0.8)).long()
    return level == level.max()


def _autoguidance(p, seed, control, progress):
    d = preset("tree")
    c = d.class_index(p["class_name"])
    cond = d.conditional(c)
    w = 0.0 if control else p["w"]
    common = dict(density="tree", objective="ncsn", n_classes=d.n_classes, batch=p["batch"], seed=seed,
                  sigma_min=p["sigma_min"])
    good_cfg = ToyConfig(width=p["width"], depth=3, steps=p["steps"], **common)
    bad_cfg = ToyConfig(width=p["bad_width"], depth=3, steps=p["bad_steps"], **common)
    good = _train(good_cfg, d, progress, 0.0, 0.6, "good model")[0]
    bad = _train(bad_cfg, d, progress, 0.6, 0.8, "bad model")[0]
    ref = _Reference(cond, p["n"], seed, p["null_reps"])
    tips = _tips(cond)
    out = {}
    progress(0.85, f"CFG and autoguidance at w = {w:g}")
    for tag, model in (("cfg", guided_score(good, good_cfg, d, c, w)),
                       ("auto", autoguidance(class_score(good, good_cfg, d, c), class_score(bad, bad_cfg, d, c), w))):
        x = _run(model, p["sampler"], p["n"], seed, p["nfe"])
        mw = mode_weights(x, cond)
        out[f"tv_{tag}"] = float(0.5 * (mw - cond.weights).abs().sum())
        out[f"excess_{tag}"] = ref.ed(x) - ref.median
        out[f"tips_{tag}"] = float((mw[tips] >= 0.25 * cond.weights[tips]).double().mean())
    out["tv_gain"] = out["tv_cfg"] - out["tv_auto"]
    out["excess_gain"] = out["excess_cfg"] - out["excess_auto"]
    return out


def _judge_autoguidance(S, p):
    holds = S.lo("tv_gain") > 0 and S.lo("excess_gain") > 0
    measured = (f"at w = {p['w']:g} (scale {1 + p['w']:g}): mode-weight TV to p(x|c) over the class's components "
                f"CFG {S.pm('tv_cfg')}, autoguidance {S.pm('tv_auto')}; excess energy distance CFG "
                f"{S.pm('excess_cfg')}, autoguidance {S.pm('excess_auto')}; outermost branches holding ≥ ¼ of "
                f"their weight: CFG {S.pm('tips_cfg')}, autoguidance {S.pm('tips_auto')}")
    return holds, measured


GUIDANCE_EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    Experiment(
        "guidance-diversity", "Guidance trades diversity for class fidelity",
        "Classifier-free guidance (1 + w) s(x|c) − w s(x) pushes samples away from where other classes are likely: "
        "the samples of class c become less diverse and its modes' weights drift from p(x|c), while the share "
        "recognised as class c does not fall.",
        "With the exact scores on three_classes, class 'left', from w = 0 to w = 3: the mean pairwise distance "
        "falls, the mode-weight TV to p(x|c) grows, the class share stays (≈ 0.99 → 1).",
        "diversity drop − t·SE > 0, TV rise − t·SE > 0 and class-share change − t·SE > −share_tol (paired per seed)",
        "no guidance: the second arm at w = 0 too",
        dict(density="three_classes", class_name="left", w=3.0, sampler="ddim", nfe=50, n=2000, seed=0, seeds=3,
             share_tol=0.005),
        _diversity, _judge_diversity),
    Experiment(
        "cfg-not-tilted", "CFG does not sample the tilted density",
        "CFG's guided score at each noise level is the score of p_σ(x|c)^{1+w} p_σ(x)^{−w}, not of the tilted "
        "density p(x|c)^{1+w} p(x)^{−w} noised, so no sampler driven by it samples the tilted density, and "
        "samplers that are exact for a true score (DDPM, DDIM) land in different places.",
        "At w = 0 DDPM and DDIM reach p(x|c); at w = 4 both lie beyond exact samples' 95th percentile from "
        "the tilted target (drawn exactly on a grid), and their distances differ.",
        "w = 0: excess + t·SE < reach_share × the moment-matched Gaussian's excess for both; w: excess − t·SE "
        "> exact samples' 95th percentile excess for both, and DDIM − DDPM differs from 0 by t·SE",
        "no guidance: w = 0 in the second arm (the tilted target is then p(x|c))",
        dict(density="three_classes", class_name="left", w=4.0, ddim_nfe=50, n=2000, seed=0, seeds=3, null_reps=20,
             reach_share=0.25, grid=512),
        _not_tilted, _judge_not_tilted),
    Experiment(
        "autoguidance-modes", "Autoguidance keeps the modes CFG drops",
        "Guiding a model with a weaker version of itself (Karras et al. 2024) sharpens what the good model blurs "
        "without pushing away from the other classes, so at the same w it keeps the class's mode weights and "
        "stays closer to p(x|c) than classifier-free guidance.",
        "On the two-class tree (class A), a conditional NCSN (128 wide, 3000 steps) guided at w = 1 by a weaker "
        "one (64 wide, 600 steps) has a smaller mode-weight TV and a smaller excess energy distance to p(x|A) "
        "than CFG with the good model's own null class.",
        "TV(CFG) − TV(auto) − t·SE > 0 and excess(CFG) − excess(auto) − t·SE > 0 (paired per seed)",
        "no guidance: w = 0 (both arms are the good conditional model)",
        dict(class_name="A", w=1.0, width=128, steps=3000, bad_width=64, bad_steps=600, batch=512, sigma_min=0.02,
             sampler="ddim", nfe=50, n=2000, seed=0, seeds=3, null_reps=20),
        _autoguidance, _judge_autoguidance),
]}


for _e in GUIDANCE_EXPERIMENTS.values():      # in the one registry: the CLI, the Experiments tab
    EXPERIMENTS.setdefault(_e.name, _e)
