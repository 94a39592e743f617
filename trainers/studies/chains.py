"""The Samplers tab's study: side-by-side chains of registry samplers from one set of initial particles,
and the sample metrics shown under each panel. Plain torch, no Qt; the chain stepper
(explorer.workers.chains) advances what `set_up_chains` returns, frame by frame.

A panel is a dict {"sampler": registry name, "source": "model" | "exact", "options": {...}} (the app
state's sampler settings), optionally with "class" (index or name of a class of the density; absent or
None: unconditional) and "guidance" (the CFG weight w, trainers.guidance; 0: the conditional model), and
"guide": "auto" for autoguidance of the trained model by a weaker one (`bad`, e.g. a History snapshot):
s_good + w (s_good − s_bad), at the panel's class when it has one. Every panel starts from the same z (matched Gaussian or uniform over the view),
mapped to its sampler's start (trainers.samplers.start_from); exact starts share one seed, so panels that
start at the same σ₀ share their particles. Metrics compare a fixed subset of N_METRIC particles with
N_REF true samples (seed 7) of the panel's target (`ChainSpec.target_class`, `ChainSetup.metric_fns`):
p(x) for an unconditional panel; p(x|c) (density.conditional(c): energy distance and its mode weights)
for a panel that samples class c, guided or not; and, for classifier-free guidance with w ≠ 0, also the
energy distance to the tilted target p_w(x|c) ∝ p(x|c)^{1+w} p(x)^{−w} (trainers.guidance.TiltedTarget,
"energy_distance_tilted"), which CFG's samples are *not* draws of.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .. import fitting
from .. import metrics
from .. import samplers

N_METRIC = 500           # particles used for the live metrics (a fixed subset)
N_REF = 1000             # true samples the metrics compare with
REF_SEED = 7
TILTED_GRID = 512        # cells per side the tilted target is normalised and drawn from on


@dataclass
class ChainSpec:
    """One panel's chain: its sampler (driven by a trainers ScoreModel) and what the panel says."""
    sampler: samplers.Sampler
    title: str
    note: str = ""            # why the exact score stands in for the model, if it does
    range_note: str = ""      # the model's words when it is asked outside its trained σ range
    target_class: int | None = None   # the class the chain samples (its metrics compare with p(x|c)); None: p(x)
    tilt_w: float | None = None       # CFG's w ≠ 0: the metrics also compare with the tilted target p_w(x|c)


@dataclass
class ChainSetup:
    """What the chain stepper needs, one entry per panel, and the metric function it calls."""
    specs: list[ChainSpec]
    starts: list[torch.Tensor]                      # each chain's initial particles
    flowing: list[bool]                             # deterministic: flow lines may be drawn
    metric_fn: Callable[[np.ndarray], dict]         # particles (N, 2) -> chain_metrics' dict against p(x)
    metric_fns: list = None                         # per chain: the same against its own target (ChainSpec)
    target_names: list = None                       # per chain: {"energy_distance": "p(x|c=…)", …} (what each is against)


def score_models(model, cfg: fitting.ToyConfig, trained_on, density):
    """(the network `model` trained with cfg on `trained_on` as a ScoreModel, or None without one; the
    exact score of the `density` shown now over the same σ range). The model starts from its training
    data's moments; the exact score runs over the model's σ range (an automatic σ₁ is its training
    density's), so the two differ only in the score."""
    sigmas = fitting.noise_levels(cfg, trained_on)
    trained = fitting.score_model(model, cfg, trained_on, sigmas) if model is not None else None
    return trained, fitting.score_model(None, cfg, density, sigmas)


def snapshot_model(net, cfg: fitting.ToyConfig, trained_on):
    """A History snapshot's network as a ScoreModel over the same range as `score_models`' model (the bad
    model of autoguidance)."""
    return fitting.score_model(net, cfg, trained_on, fitting.noise_levels(cfg, trained_on))


def deterministic(panel: dict) -> bool:
    """Does the panel's sampler follow a deterministic path (flow lines)?"""
    return samplers.SAMPLERS[panel["sampler"]].deterministic(samplers.resolve_options(panel["sampler"], panel["options"]))


def chain_spec(panel: dict, trained, exact, bad=None) -> ChainSpec:
    """The panel's chain: with the model where it can serve, else the exact score and a note saying why.
    `bad`: the weaker model of autoguidance (a ScoreModel), for a panel with "guide": "auto".
    A bad option raises ValueError."""
    info = samplers.SAMPLERS[panel["sampler"]]
    opts = samplers.SamplerOptions.from_dict(panel["options"])
    title = info.title_for(samplers.resolve_options(info.name, opts))
    note, target, tilt = "", None, None
    density, c = getattr(exact, "density", None), panel.get("class")
    if c is not None and not (density is not None and density.labelled and _has_class(density, c)):
        note, c = f"the density has no class {c}: unguided", None
    if panel.get("guide") == "auto":             # autoguidance: the model guided by a weaker one
        from ..conditional import for_class
        from ..guidance import autoguidance
        w = float(panel.get("guidance") or 0.0)
        if panel["source"] != "model" or trained is None or bad is None:
            note = "autoguidance needs the trained model and a weaker one (a History snapshot): unguided"
        else:
            try:
                good, weak = (trained, bad) if c is None else (for_class(trained, density, c), for_class(bad, density, c))
                trained = autoguidance(good, weak, w)
                target = None if c is None else density.class_index(c)
                title += f" · autoguidance{'' if c is None else f' class {density.classes[density.class_index(c)]}'}, w = {w:g}"
            except ValueError as e:
                note = f"{e}: unguided"
        c = None
    if c is not None:                            # classifier-free guidance on the panel's class
        from ..conditional import guide
        w = float(panel.get("guidance") or 0.0)
        title += f" · class {density.classes[density.class_index(c)]}, w = {w:g}"
        target, tilt = density.class_index(c), (w if w != 0 else None)
        exact = guide(exact, density, c, w)
        if trained is not None and panel["source"] == "model":
            try:
                trained = guide(trained, density, c, w)
            except ValueError as e:
                trained, note = None, f"{e}: the exact score is used"
    if panel["source"] == "model":
        if trained is None:
            note = note or "no trained model yet: the exact score is used"
        else:
            try:
                sampler = samplers.build_sampler(info.name, trained, opts)
                return ChainSpec(sampler, f"{title} — {trained.kind} model", note,
                                 trained.range_note(sampler.sigmas_used()), target, tilt)
            except ValueError as e:
                note = f"the model cannot drive it ({e}): the exact score is used"
    if panel.get("guide") == "auto":
        target = None        # the exact score stands in for autoguidance unguided: it samples p(x)
    return ChainSpec(samplers.build_sampler(info.name, exact, opts), f"{title} — exact score", note, "", target, tilt)


def _has_class(density, c) -> bool:
    try:
        density.conditional(c)
        return True
    except ValueError:
        return False


def reference_samples(density, n: int = N_REF) -> torch.Tensor:
    """The true samples the metrics compare with (a fixed seed: the same for every set of chains)."""
    return density.sample(n, generator=torch.Generator().manual_seed(REF_SEED))


def chain_metrics(xy: np.ndarray, idx: torch.Tensor, ref: torch.Tensor, ref_self: float, density) -> dict:
    """The panel's sample metrics on the particles `idx` of xy (the finite ones), as numbers:
    {"energy_distance", "mode_weight_tv", "mode_weights"}; {} with no finite particle."""
    x = _subset(xy, idx)
    if len(x) == 0:
        return {}
    return {"energy_distance": float(metrics.energy_distance(x, ref, ref_self)),
            "mode_weight_tv": float(metrics.mode_weight_error(x, density)),
            "mode_weights": [float(v) for v in metrics.mode_weights(x, density)]}


def _subset(xy: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
    """The finite ones of the particles `idx` of xy."""
    x = torch.from_numpy(xy)
    x = x[idx[idx < len(x)]]
    return x[torch.isfinite(x).all(1)]


def set_up_chains(panels: list[dict], trained, exact, n_particles: int, init: str, bounds, seed: int,
                  density, reference: torch.Tensor | None = None, bad=None, targets: dict | None = None) -> ChainSetup:
    """The chains of `panels` from one z: init "gaussian" (matched Gaussian), "exact" (exact draws of
    p_σmax where a panel uses the exact score) or "uniform" (over bounds). `reference`: reference_samples
    of `density`, when the caller keeps them; `targets`: a dict the caller keeps per density, where the
    class and tilted references are kept between calls (the tilted grid costs ~1 s on a 372-component
    mixture). Raises ValueError for a panel that cannot run."""
    specs = [chain_spec(p, trained, exact, bad) for p in panels]
    gen = torch.Generator().manual_seed(seed)
    z = samplers.initial_particles(n_particles, "uniform" if init == "uniform" else "gaussian", bounds, gen)
    starts = [samplers.start_from(sp.sampler, z, init, torch.Generator().manual_seed(seed + 1)) for sp in specs]
    ref = reference_samples(density) if reference is None else reference
    idx = torch.randperm(n_particles, generator=gen)[:N_METRIC]
    ref_self = metrics.mean_pairwise_distance(ref)

    def metric_fn(xy: np.ndarray) -> dict:
        return chain_metrics(xy, idx, ref, ref_self, density)

    fns, names, cache = [], [], {} if targets is None else targets
    for sp in specs:
        fn, name = target_metrics(sp, density, idx, metric_fn, cache)
        fns.append(fn)
        names.append(name)
    return ChainSetup(specs, starts, [deterministic(p) for p in panels], metric_fn, fns, names)


def target_name(density, c: int | None, w: float | None = None) -> str:
    """How a panel names its target: "p(x)", "p(x|c=<name>)" or "tilted p_w(x|c=<name>), w = W" (p_w ∝
    p(x|c)^{1+w} p(x)^{−w})."""
    if c is None:
        return "p(x)"
    cls = density.classes[c] if density.classes else str(c)
    return f"p(x|c={cls})" if w is None else f"tilted p_w(x|c={cls}), w = {w:g}"


def target_metrics(spec: ChainSpec, density, idx: torch.Tensor, plain: Callable, cache: dict | None = None):
    """(the metric function of `spec`'s chain, {metric key: the target it is against}). An unconditional
    chain: `plain` (against p(x)). A class-c chain: energy distance and mode weights against p(x|c) (N_REF
    draws, seed REF_SEED); CFG with w ≠ 0 adds "energy_distance_tilted" against N_REF exact draws of the
    tilted target (TiltedTarget on a TILTED_GRID² grid, seed REF_SEED). `cache` shares references between chains."""
    c, w = spec.target_class, spec.tilt_w
    if c is None:
        return plain, {"energy_distance": "p(x)", "mode_weight_tv": "p(x)"}
    cache = {} if cache is None else cache
    if ("class", c) not in cache:
        cond = density.conditional(c)
        ref = reference_samples(cond)
        cache[("class", c)] = (cond, ref, metrics.mean_pairwise_distance(ref))
    cond, ref, ref_self = cache[("class", c)]
    names = {"energy_distance": target_name(density, c), "mode_weight_tv": target_name(density, c)}
    tilted = None
    if w is not None:
        if ("tilted", c, w) not in cache:
            from ..guidance import TiltedTarget
            t_ref = TiltedTarget(density, c, w, n=TILTED_GRID).sample(N_REF, torch.Generator().manual_seed(REF_SEED))
            cache[("tilted", c, w)] = (t_ref, metrics.mean_pairwise_distance(t_ref))
        tilted = cache[("tilted", c, w)]
        names["energy_distance_tilted"] = target_name(density, c, w)

    def fn(xy: np.ndarray) -> dict:
        out = chain_metrics(xy, idx, ref, ref_self, cond)
        if out and tilted is not None:
            out["energy_distance_tilted"] = float(metrics.energy_distance(_subset(xy, idx), *tilted))
        return out

    return fn, names
