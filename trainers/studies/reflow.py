"""Rectified flow (Liu et al. 2023): the straightness of a model's own flow-ODE paths, and reflow —
pairs (z, ODE_A(z)) drawn with model A's flow ODE, then model B trained on that fixed coupling
(docs/math.md, "Flow matching and rectified flow"). Used by `python -m trainers.toy reflow` and
`evaluate` (straightness), the experiments and the explorer's Reflow button."""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Callable

import torch

from .. import fitting
from ..densities import GaussianMixture
from ..flows import straightness
from ..samplers import Cancelled, build_sampler, prior_sample
from ..score_models import ScoreModel

REFLOW_STEPS, REFLOW_PAIRS, REFLOW_NFE = 2000, 10000, 100
STRAIGHTNESS_NFE = 100


def flow_paths(sm: ScoreModel, z: torch.Tensor, nfe: int = STRAIGHTNESS_NFE, solver: str = "euler",
               cancelled: Callable[[], bool] | None = None):
    """The flow ODE of `sm` from standard draws z (mapped to the sampler's matched start): (states
    (K+1, N, d), grid t₀ > … > t_K = 0, the velocity at each step's start (K, N, d))."""
    sampler = build_sampler("flow", sm, solver=solver, nfe=nfe)
    x = prior_sample(sampler, z)
    velocities = []
    ts = sampler.ts.tolist()

    def keep(info):           # the step's denoised estimate is x − t v(x, t): v = (x − D)/t
        k = info["k"] - 1
        velocities.append((states_before[k] - info["denoised"]) / ts[k])
        states_before.append(info["x"])

    states_before = [x]
    sampler.run(x, progress=keep, cancelled=cancelled)
    return torch.stack(states_before), ts, torch.stack(velocities)


def path_straightness(sm: ScoreModel, n: int = 1000, nfe: int = STRAIGHTNESS_NFE, seed: int = 0) -> dict:
    """Liu et al.'s straightness of `sm`'s flow ODE (Euler, `nfe` steps) over n paths from fresh z:
    {"straightness": mean, "straightness_se": its standard error, "straightness_n", "straightness_nfe"}."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    s = straightness(*flow_paths(sm, z, nfe))
    return {"straightness": float(s.mean()), "straightness_se": float(s.std() / len(s) ** 0.5),
            "straightness_n": n, "straightness_nfe": nfe}


def reflow_pairs(sm: ScoreModel, n: int, nfe: int = REFLOW_NFE, seed: int = 0,
                 cancelled: Callable[[], bool] | None = None) -> torch.Tensor:
    """n coupled pairs (n, 2, d) = [x̂₀, z]: z ~ N(0, I) and x̂₀ the end of `sm`'s own flow ODE (Heun,
    about `nfe` evaluations) started from z."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    sampler = build_sampler("flow", sm, solver="heun", nfe=nfe)
    x0 = sampler.run(prior_sample(sampler, z), cancelled=cancelled).x
    return torch.stack([x0, z], dim=1)


def reflow(model: torch.nn.Module, cfg: fitting.ToyConfig, density: GaussianMixture | None,
           steps: int = REFLOW_STEPS, pairs: int = REFLOW_PAIRS, nfe: int = REFLOW_NFE, seed: int | None = None,
           progress: Callable[[float, str], None] | None = None, cancelled: Callable[[], bool] | None = None,
           stats: dict | None = None, shuffle: bool = False):
    """One reflow round: pairs from flow-matching `model`'s ODE, then B (A's weights to start, cfg's
    learning rate, batch and cosine decay over `steps`) trained on them. Returns (B, its config,
    {"pairs", "nfe", "steps", "final_loss"}). Raises samplers.Cancelled when `cancelled()` says so.
    shuffle: the negative control — the z of the pairs reordered at random, so B sees the same endpoints
    and noise but an independent coupling (plain flow matching on A's samples)."""
    if cfg.objective != "fm":
        raise ValueError(f"reflow needs a flow-matching model (objective fm), not {cfg.objective}")
    progress = progress or (lambda f, what: None)
    seed = cfg.seed if seed is None else seed
    sm = fitting.score_model(model, cfg, density, stats=stats)
    progress(0.0, "pairs")
    data = reflow_pairs(sm, pairs, nfe, seed + 1000, cancelled)
    if shuffle:
        perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 3000))
        data = torch.stack([data[:, 0], data[perm, 1]], dim=1)
    new_cfg = replace(cfg, steps=steps, extra=dict(cfg.extra))
    net = copy.deepcopy(model)
    method = fitting.method_for(new_cfg, density)
    gen = torch.Generator().manual_seed(seed + 2000)

    def batch(n):
        return data[torch.randint(len(data), (n,), generator=gen)]

    losses = []
    for info in fitting.training_steps(net, method, batch, new_cfg.lr, new_cfg.batch, seed,
                                       decay_steps=steps if new_cfg.lr_decay else None):
        losses.append(info.loss)
        if info.step % 50 == 0:
            progress(info.step / steps, "training")
            if cancelled is not None and cancelled():
                raise Cancelled(info.step, steps, "reflow")
        if info.step >= steps:
            break
    net.eval()
    tail = losses[-50:]
    return net, new_cfg, {"pairs": pairs, "nfe": nfe, "steps": steps, "final_loss": sum(tail) / len(tail)}


@dataclass
class ReflowRound:
    """One reflow round as the explorer's Reflow button reports it: the new network and config, and the
    straightness (mean ± SE over the same paths) and 1-step Euler energy distance before and after."""
    model: torch.nn.Module
    cfg: fitting.ToyConfig
    info: dict
    straightness_before: dict
    straightness_after: dict
    one_step_before: float
    one_step_after: float


def reflow_round(model, cfg: fitting.ToyConfig, density: GaussianMixture, steps: int = REFLOW_STEPS,
                 pairs: int = REFLOW_PAIRS, nfe: int = REFLOW_NFE, n_eval: int = 1000,
                 progress: Callable[[float, str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> ReflowRound | None:
    """`reflow` with the figures before and after (the same z, seed 0): the job of the explorer's Reflow
    button (trainers.studies' JobWorker convention: None when cancelled)."""
    from ..metrics import energy_distance
    progress = progress or (lambda f, what: None)
    z = torch.randn(n_eval, 2, generator=torch.Generator().manual_seed(0))
    ref = density.sample(n_eval, torch.Generator().manual_seed(1))

    def figures(net, c):
        sm = fitting.score_model(net, c, density)
        s = straightness(*flow_paths(sm, z, STRAIGHTNESS_NFE))
        one = energy_distance(flow_paths(sm, z, 1)[0][-1], ref)
        return {"straightness": float(s.mean()), "straightness_se": float(s.std() / len(s) ** 0.5)}, one

    try:
        before, one_before = figures(model, cfg)
        net, new_cfg, info = reflow(model, cfg, density, steps, pairs, nfe,
                                    progress=lambda f, what: progress(0.05 + 0.9 * f, what), cancelled=cancelled)
        after, one_after = figures(net, new_cfg)
    except Cancelled:
        return None
    progress(1.0, "done")
    return ReflowRound(net, new_cfg, info, before, after, one_before, one_after)


LIVE_PATHS, LIVE_NFE = 300, 20


def live_straightness(model, cfg: fitting.ToyConfig, density: GaussianMixture) -> dict:
    """{"straightness": …} of a flow model's own paths (LIVE_PATHS fixed z, LIVE_NFE Euler steps: cheap
    enough for the Training tab's curve while it trains); {} for a method the flow ODE is not native to."""
    if fitting.method_for(cfg).natural_sampler != "flow":
        return {}
    was_training = model.training
    model.eval()
    try:
        sm = fitting.score_model(model, cfg, density)
        return {"straightness": path_straightness(sm, LIVE_PATHS, LIVE_NFE)["straightness"]}
    finally:
        model.train(was_training)
