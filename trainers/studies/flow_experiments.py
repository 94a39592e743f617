"""The flow-matching experiments (issue #21), registered in trainers.studies.experiments.EXPERIMENTS with
the same rules as the others there: seeds, per-seed figures, claims judged on means with a t·SE margin,
and a negative control that removes the mechanism and must come out "does not hold".

- fm-same-map: the exact velocity's flow ODE and the exact score's VE PF-ODE are one map (within the
  solvers' step-halving error); a model trained with independent coupling follows the exact flow's paths
  more closely than one trained with minibatch OT (judged at t = 0.5, where the two flows differ most;
  the endpoints are reported).
- reflow-straightens: one reflow round lowers the straightness of the model's own paths and at least
  halves the 1-step excess energy distance; a second round does not undo it.
- ot-straightens: minibatch OT coupling gives straight paths from the first training, and a good
  1-step sample.
"""
from __future__ import annotations

import torch

from ..fitting import ToyConfig, score_model
from ..samplers import build_sampler
from ..score_models import ExactScore
from .experiment_kit import _density, _Reference, _train
from .experiments import Experiment, register
from .reflow import flow_paths, reflow

FM_DEFAULTS = {"density": "two_moons", "steps": 2000, "width": 128, "batch": 256, "seed": 0, "seeds": 3, "n": 1000,
               "nfe": 100, "null_reps": 20}


def _fm(p, seed, coupling, progress, lo, hi, label):
    """A flow-matching model with `coupling`, trained once per process and configuration."""
    cfg = ToyConfig(density=p["density"], objective="fm", steps=p["steps"], width=p["width"], batch=p["batch"],
                    seed=seed, extra={"coupling": coupling})
    return _train(cfg, _density(p["density"]), progress, lo, hi, label)[0], cfg


def _z(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed + 31))


def _one_step_excess(ref: _Reference, sm, z) -> float:
    """Excess energy distance of one Euler step of the flow ODE from z (straight paths: exact)."""
    states, _, _ = flow_paths(sm, z, 1)
    return ref.ed(states[-1]) - ref.median


def _straightness(sm, z, nfe) -> float:
    from ..flows import straightness
    return float(straightness(*flow_paths(sm, z, nfe)).mean())


# ------------------------------------------------------------------ fm-same-map
def _same_map(p, seed, control, progress):
    d = _density(p["density"])
    exact = ExactScore(d, sigma_max=p["sigma_max"])
    y0 = d.noised(p["sigma_max"]).sample(p["n"], torch.Generator().manual_seed(seed + 41))
    ends = {}
    for name, extra in (("flow", {}), ("pf-ode", {"sigma_min": 2e-3})):
        for steps in (p["ode_steps"], 2 * p["ode_steps"]):
            s = build_sampler(name, exact, solver="heun", steps=steps, sigma_max=p["sigma_max"], **extra)
            start = y0 / (1 + p["sigma_max"]) if name == "flow" else y0
            ends[name, steps] = s.run(start.clone()).x.double()
    n2 = 2 * p["ode_steps"]
    tol = ((ends["flow", p["ode_steps"]] - ends["flow", n2]).norm(dim=1).max()
           + (ends["pf-ode", p["ode_steps"]] - ends["pf-ode", n2]).norm(dim=1).max())
    gap = (ends["flow", n2] - ends["pf-ode", n2]).norm(dim=1).max()
    figures = {"exact_gap": float(gap), "solver_tolerance": float(3 * tol + 1e-4)}
    figures["exact_gap_over_tolerance"] = figures["exact_gap"] / figures["solver_tolerance"]
    # learned flows against the exact one, from the same z, on the same grid (T = 0.999, nfe Euler steps)
    indep, cfg = _fm(p, seed, "independent", progress, 0.0, 0.45, "FM, independent coupling")
    other, cfg_o = _fm(p, seed + 100 if control else seed, "independent" if control else "ot", progress, 0.45, 0.9,
                       "FM, independent coupling (control)" if control else "FM, minibatch OT")
    progress(0.92, "flows from the same z")
    z = _z(p["n"], seed)
    ex_path, ts, _ = flow_paths(score_model(None, cfg, d), z, p["nfe"])
    mid = min(range(len(ts)), key=lambda k: abs(ts[k] - 0.5))
    for tag, model, c in (("independent", indep, cfg), ("ot", other, cfg_o)):
        path, _, _ = flow_paths(score_model(model, c, d), z, p["nfe"])
        figures[f"{tag}_mid_gap"] = float((path[mid] - ex_path[mid]).norm(dim=1).mean())
        figures[f"{tag}_end_gap"] = float((path[-1] - ex_path[-1]).norm(dim=1).mean())
    # the yardstick: how far apart unrelated points of p_t are at t = 0.5 (the exact states, shuffled)
    figures["mid_spread"] = float((ex_path[mid] - ex_path[mid].roll(1, 0)).norm(dim=1).mean())
    figures["mid_gap_difference"] = figures["ot_mid_gap"] - figures["independent_mid_gap"]
    return figures


def _judge_same_map(S, p):
    exact_ok = S.hi("exact_gap_over_tolerance") < 1
    learned_ok = S.lo("mid_gap_difference") > 0 and S.hi("independent_mid_gap") < p["gap_share"] * S.mean("mid_spread")
    measured = (f"exact velocity ODE vs exact-score PF-ODE: largest endpoint gap {S.pm('exact_gap')} against a solver "
                f"tolerance of {S.pm('solver_tolerance')} (3 × step-halving error + 1e-4); at t = 0.5 the "
                f"independent-coupling model is {S.pm('independent_mid_gap')} from the exact flow and the OT model "
                f"{S.pm('ot_mid_gap')} (difference {S.pm('mid_gap_difference')}; unrelated points of p_0.5 lie "
                f"{S.pm('mid_spread')} apart); at t = 0: {S.pm('independent_end_gap')} and {S.pm('ot_end_gap')}")
    return exact_ok and learned_ok, measured


# ------------------------------------------------------------------ reflow-straightens
def _reflow_straightens(p, seed, control, progress):
    d = _density(p["density"])
    ref = _Reference(d, p["n"], seed, p["null_reps"])
    figures = ref.base()
    model, cfg = _fm(p, seed, "independent", progress, 0.0, 0.4, "FM, independent coupling")
    z = _z(p["n"], seed)
    for r in range(p["rounds"] + 1):
        if r:
            progress(0.4 + 0.5 * (r - 1) / p["rounds"], f"reflow round {r}")
            model, cfg, _ = reflow(model, cfg, d, p["reflow_steps"], p["pairs"], p["pair_nfe"], seed + 10 * r,
                                   shuffle=control)
        sm = score_model(model, cfg, d)
        figures[f"straightness_{r}"] = _straightness(sm, z, p["nfe"])
        figures[f"one_step_excess_{r}"] = _one_step_excess(ref, sm, z)
    figures["straightness_drop"] = figures["straightness_0"] - figures["straightness_1"]
    figures["one_step_ratio"] = figures["one_step_excess_1"] / figures["one_step_excess_0"]
    if p["rounds"] >= 2:
        figures["second_round_change"] = figures["straightness_2"] - figures["straightness_1"]
    return figures


def _judge_reflow(S, p):
    holds = S.lo("straightness_drop") > 0 and S.hi("one_step_ratio") < 0.5
    rounds = " → ".join(S.pm(f"straightness_{r}") for r in range(p["rounds"] + 1))
    one = " → ".join(S.pm(f"one_step_excess_{r}") for r in range(p["rounds"] + 1))
    if p["rounds"] >= 2:
        holds = holds and S.lo("second_round_change") <= S.margin("straightness_1")
    measured = (f"straightness {rounds} (round by round); 1-step Euler excess energy distance {one}, round 1 "
                f"over round 0 {S.pm('one_step_ratio')} (exact samples' 95th percentile excess "
                f"{S.mean('exact_excess_q95'):.3g})")
    return holds, measured


# ------------------------------------------------------------------ ot-straightens
def _ot_straightens(p, seed, control, progress):
    d = _density(p["density"])
    ref = _Reference(d, p["n"], seed, p["null_reps"])
    figures = ref.base()
    indep, cfg = _fm(p, seed, "independent", progress, 0.0, 0.45, "FM, independent coupling")
    other, cfg_o = _fm(p, seed + 100 if control else seed, "independent" if control else "ot", progress, 0.45, 0.9,
                       "FM, independent coupling (control)" if control else "FM, minibatch OT")
    z = _z(p["n"], seed)
    for tag, model, c in (("independent", indep, cfg), ("ot", other, cfg_o)):
        sm = score_model(model, c, d)
        figures[f"{tag}_straightness"] = _straightness(sm, z, p["nfe"])
        figures[f"{tag}_one_step_excess"] = _one_step_excess(ref, sm, z)
        s = build_sampler("flow", sm, solver="heun", nfe=p["nfe"])
        figures.update(ref.figures(f"{tag}_flow", s, p["n"], seed + 1))
    figures["straightness_ratio"] = figures["ot_straightness"] / figures["independent_straightness"]
    figures["one_step_gain"] = figures["independent_one_step_excess"] - figures["ot_one_step_excess"]
    return figures


def _judge_ot(S, p):
    holds = S.hi("straightness_ratio") < p["straight_ratio"] and S.lo("one_step_gain") > 0
    measured = (f"straightness: independent {S.pm('independent_straightness')}, minibatch OT {S.pm('ot_straightness')} "
                f"(ratio {S.pm('straightness_ratio')}); 1-step Euler excess energy distance: independent "
                f"{S.pm('independent_one_step_excess')}, OT {S.pm('ot_one_step_excess')}; at {p['nfe']} NFE (Heun, "
                f"reported) independent {S.pm('independent_flow_excess')}, OT {S.pm('ot_flow_excess')} (the "
                f"moment-matched Gaussian {S.pm('gaussian_excess')})")
    return holds, measured


FLOW_EXPERIMENTS = [
    Experiment(
        "fm-same-map", "Flow matching learns the PF-ODE's map",
        "On the linear path x_t = (1−t)x₀ + t z, x/(1−t) is the VE process at σ = t/(1−t): the flow ODE of the "
        "exact velocity is the probability-flow ODE of the exact score in another clock. Flow matching with "
        "independent coupling regresses onto that velocity, so it learns that flow; minibatch OT changes the "
        "coupling, hence the marginals p_t and the paths.",
        "The exact flow ODE and the exact-score PF-ODE land on the same points within solver tolerance; the "
        "independent-coupling model's paths stay near the exact flow's at t = 0.5, the OT model's do not.",
        "largest exact endpoint gap / (3 × step-halving error + 1e-4), mean + t·SE, < 1; OT − independent "
        "distance to the exact flow at t = 0.5 (paired per seed), mean − t·SE, > 0; and the independent model's "
        "distance + t·SE < gap_share × the distance between unrelated points of p_0.5",
        "independent coupling in both arms (the second model trained with another seed)",
        {**FM_DEFAULTS, "sigma_max": 20.0, "ode_steps": 200, "gap_share": 0.25},
        _same_map, _judge_same_map,
        {"exact_gap": "exact: endpoint gap", "solver_tolerance": "solver tolerance",
         "exact_gap_over_tolerance": "exact gap / tolerance", "independent_mid_gap": "independent: gap at t=0.5",
         "ot_mid_gap": "OT: gap at t=0.5", "independent_end_gap": "independent: gap at t=0",
         "ot_end_gap": "OT: gap at t=0", "mid_spread": "unrelated points at t=0.5",
         "mid_gap_difference": "OT − independent at t=0.5"}),
    Experiment(
        "reflow-straightens", "Reflow straightens paths",
        "Rectified flow (Liu et al. 2023): draw pairs (z, ODE(z)) with the model's own flow ODE and train on that "
        "deterministic coupling; the new flow's paths cross less, so they are straighter and few Euler steps "
        "suffice.",
        "Straightness falls after one round and stays low after the second; one Euler step lands much closer "
        "to the density.",
        "straightness before − after round 1 (paired per seed), mean − t·SE, > 0; 1-step excess energy distance "
        "after / before, mean + t·SE, < 0.5; round 2's straightness − round 1's, mean − t·SE, ≤ round 1's t·SE",
        "shuffled pairs: the reflow data's z reordered at random (the same endpoints and noise, an independent "
        "coupling)",
        {**FM_DEFAULTS, "rounds": 2, "reflow_steps": 2000, "pairs": 10000, "pair_nfe": 100},
        _reflow_straightens, _judge_reflow,
        {"straightness_0": "straightness, FM", "straightness_1": "straightness, reflow 1",
         "straightness_2": "straightness, reflow 2", "one_step_excess_0": "1-step excess ED, FM",
         "one_step_excess_1": "1-step excess ED, reflow 1", "one_step_excess_2": "1-step excess ED, reflow 2",
         "one_step_ratio": "1-step: reflow 1 / FM", "straightness_drop": "straightness drop, round 1"}),
    Experiment(
        "ot-straightens", "Minibatch OT straightens from the start",
        "Pairing each minibatch's data and noise by the exact optimal-transport plan (Tong et al.; Pooladian et "
        "al.) gives nearly non-crossing conditional paths, so the learned flow is nearly straight without "
        "reflow, and one Euler step already samples well.",
        "The OT model's straightness is a small fraction of the independent model's and its 1-step sample is "
        "better; with many steps both come close to the density (reported).",
        "straightness OT / independent (per seed), mean + t·SE, < straight_ratio; independent − OT 1-step "
        "excess energy distance (paired per seed), mean − t·SE, > 0",
        "independent coupling in both arms (the second model trained with another seed)",
        {**FM_DEFAULTS, "straight_ratio": 0.2},
        _ot_straightens, _judge_ot,
        {"independent_straightness": "straightness, independent", "ot_straightness": "straightness, OT",
         "straightness_ratio": "straightness OT / independent", "independent_one_step_excess": "1-step, independent",
         "ot_one_step_excess": "1-step, OT", "independent_flow_excess": "independent, many steps",
         "ot_flow_excess": "OT, many steps"}),
]

register(*FLOW_EXPERIMENTS)
