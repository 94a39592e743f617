"""What guidance really samples: per sampler and guidance weight w, the energy distance of guided
samples to the tilted target p_w(x|c) ∝ p(x|c)^{1+w} p(x)^{−w} (trainers.guidance.TiltedTarget, drawn
exactly) and to the conditional p(x|c), mean ± sd over seeds, against the exact-sample threshold.

Per seed (trainers.studies.lab.seed_streams): a reference sample of the tilted target and one of p(x|c),
`null_draws` further exact draws of each target giving the null pool of "an exact sample's energy
distance", one start z (shared by every sampler and w) and one noise stream. The threshold of a target
is lab.quantile_of_means of those pools: a sampler "reaches" a target when its K-seed mean energy
distance is below it (the lab's rule). Beside the distances each row reports the class share (the
fraction of samples whose most probable class under p is c), the spread (mean pairwise distance:
diversity) and the mode-weight TV against p(x|c) (metrics.mode_weight_error).

The score model for w is `guided(w)`: by default exact CFG (trainers.guidance.exact_cfg); or CFG of a
given `model` of the density (trainers.conditional.guide: an ExactScore over its range, or a
class-conditional network's ScoreModel); or any builder passed as `guided`.

    python -m trainers.studies.guidance --density three_classes --class 1 --w 0,1,4 --json
    python -m trainers.studies.guidance --ckpt cond.pt --class 1 --w 0,1,4      # a conditional model's CFG
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from ..densities import GaussianMixture, load_density
from ..guidance import TiltedTarget, exact_cfg
from ..metrics import energy_distance, mean_pairwise_distance, mode_weight_error
from ..samplers import SAMPLERS, build_sampler, initial_particles, prior_sample, sampler_class
from ..score_models import ScoreModel
from .lab import QUANTILE, quantile_of_means, seed_streams

GUIDANCE_SAMPLERS = ("ddpm", "ddim", "pf-ode")
GUIDANCE_WS = (0.0, 1.0, 4.0)


@dataclass
class GuidanceRow:
    sampler: str
    w: float
    nfe: int
    to_tilted: float              # energy distance to the tilted target, mean over seeds
    to_tilted_sd: float
    to_conditional: float         # energy distance to p(x|c)
    to_conditional_sd: float
    class_share: float            # fraction of samples whose most probable class under p is c
    spread: float                 # mean pairwise distance of the samples (diversity)
    mode_tv: float                # mode-weight TV against p(x|c)
    per_seed: dict = field(default_factory=dict)     # {"to_tilted": [...], "to_conditional": [...], ...}


@dataclass
class GuidanceResult:
    density: str
    class_index: int
    class_name: str
    n: int
    seeds: int
    quantile: float
    threshold_tilted: dict          # {w: threshold of the tilted target at w}
    threshold_conditional: float
    exact_spread: dict              # {w: mean pairwise distance of exact tilted draws}, {"conditional": …}
    tilted_to_conditional: dict = field(default_factory=dict)   # {w: mean ED of exact tilted draws to p(x|c)'s}
    rows: list[GuidanceRow] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, sampler: str, w: float) -> GuidanceRow:
        return next(r for r in self.rows if r.sampler == sampler and r.w == w)

    def to_dict(self) -> dict:
        return asdict(self)


def _mean_sd(v: list[float]) -> tuple[float, float]:
    t = torch.tensor(v, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(v) > 1 else math.nan


def _pool(target, ref: torch.Tensor, ref_self: float, n: int, draws: int, gen) -> list[float]:
    return [energy_distance(target.sample(n, gen), ref, ref_self) for _ in range(draws)]


def run_guidance_study(density: GaussianMixture, c, ws=GUIDANCE_WS, samplers=GUIDANCE_SAMPLERS,
                       guided: Callable[[float], ScoreModel] | None = None, options: dict | None = None,
                       n: int = 2000, seeds: int = 3, seed: int = 0, null_draws: int = 10,
                       quantile: float = QUANTILE, grid: int = 512,
                       progress: Callable[[float, str], None] | None = None,
                       cancelled: Callable[[], bool] = lambda: False,
                       model: ScoreModel | None = None) -> GuidanceResult | None:
    """Every (seed, w, sampler) run (module docstring). options: {sampler: dict of its options}.
    Returns None when `cancelled()` says yes (asked before each run)."""
    start = time.perf_counter()
    for s in samplers:
        sampler_class(s)                       # ValueError naming an unknown one and the choices
    if seeds < 2 or n < 2 or null_draws < 1:
        raise ValueError(f"the study needs seeds ≥ 2, n ≥ 2 and null_draws ≥ 1 (got {seeds}, {n}, {null_draws})")
    ci = density.class_index(c)
    cond = density.conditional(ci)
    if guided is None and model is not None:
        from ..conditional import guide
        guided = lambda w: guide(model, density, ci, w)          # noqa: E731
    guided = guided or (lambda w: exact_cfg(density, ci, w))
    options = options or {}
    targets = {w: TiltedTarget(density, ci, w, n=grid) for w in ws}
    streams = seed_streams(seed, seeds)
    per: dict[tuple[str, float], dict[str, list]] = {}
    null_t: dict[float, list[list[float]]] = {w: [] for w in ws}
    null_c: list[list[float]] = []
    exact_spread: dict = {w: [] for w in ws}
    tilt_gap: dict = {w: [] for w in ws}
    total, done = seeds * len(ws) * len(samplers), 0
    for k, s in enumerate(streams):
        gen = torch.Generator().manual_seed(s)
        ref_c = cond.sample(n, gen)
        ref_c_self = mean_pairwise_distance(ref_c)
        null_c.append(_pool(cond, ref_c, ref_c_self, n, null_draws, gen))
        z = torch.randn(n, 2, generator=gen)
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        for w in ws:
            ref_t = targets[w].sample(n, gen)
            ref_t_self = mean_pairwise_distance(ref_t)
            exact_spread[w].append(ref_t_self)
            tilt_gap[w].append(energy_distance(ref_t, ref_c, ref_c_self))
            null_t[w].append(_pool(targets[w], ref_t, ref_t_self, n, null_draws, gen))
            guided_model = guided(w)
            for name in samplers:
                if cancelled():
                    return None
                sampler = build_sampler(name, guided_model, options.get(name))
                x0 = prior_sample(sampler, z.clone()) if sampler.default_init == "gaussian" else \
                    initial_particles(n, "uniform", density.plot_bounds(), torch.Generator().manual_seed(noise_seed))
                x = sampler.run(x0, torch.Generator().manual_seed(noise_seed)).x
                cell = per.setdefault((name, w), {"to_tilted": [], "to_conditional": [], "class_share": [],
                                                  "spread": [], "mode_tv": [], "nfe": sampler.nfe})
                cell["to_tilted"].append(energy_distance(x, ref_t, ref_t_self))
                cell["to_conditional"].append(energy_distance(x, ref_c, ref_c_self))
                cell["class_share"].append(float((density.class_posterior(x.double()).argmax(1) == ci).double().mean()))
                cell["spread"].append(mean_pairwise_distance(x))
                cell["mode_tv"].append(mode_weight_error(x, cond))
                done += 1
                if progress:
                    progress(done / total, f"seed {k + 1}/{seeds}, w = {w:g}, {name}")
    result = GuidanceResult(
        density=density.name, class_index=ci, class_name=density.classes[ci] if density.classes else str(ci),
        n=n, seeds=seeds, quantile=quantile,
        threshold_tilted={w: quantile_of_means(null_t[w], quantile, seed=seed) for w in ws},
        threshold_conditional=quantile_of_means(null_c, quantile, seed=seed),
        exact_spread={**{w: sum(v) / len(v) for w, v in exact_spread.items()},
                      "conditional": mean_pairwise_distance(cond.sample(n, torch.Generator().manual_seed(seed)))},
        tilted_to_conditional={w: sum(v) / len(v) for w, v in tilt_gap.items()})
    for name in samplers:
        for w in ws:
            cell = per[(name, w)]
            tt, tt_sd = _mean_sd(cell["to_tilted"])
            tc, tc_sd = _mean_sd(cell["to_conditional"])
            result.rows.append(GuidanceRow(
                name, w, cell["nfe"], tt, tt_sd, tc, tc_sd, _mean_sd(cell["class_share"])[0],
                _mean_sd(cell["spread"])[0], _mean_sd(cell["mode_tv"])[0],
                {key: cell[key] for key in ("to_tilted", "to_conditional", "class_share", "spread", "mode_tv")}))
    result.seconds = time.perf_counter() - start
    return result


W_SOURCES = {"exact": "exact score", "model": "trained model"}


@dataclass
class WAxis:
    """The lab's w axis: one GuidanceResult per score source — "exact" (CFG of the exact scores over the
    model's range) and "model" (CFG of a class-conditional network) — run on the same seeds, so the two
    differ only in the score; `note` says why a source is missing."""
    results: dict                   # {source: GuidanceResult}, in W_SOURCES order
    note: str = ""

    def curve(self, source: str, sampler: str) -> dict:
        """One sampler's figures against w from one source, as arrays over the result's w values:
        w, to_tilted and to_conditional (mean over seeds) with their sd over seeds (*_sd), and the
        exact-sample thresholds (threshold_tilted per w; threshold_conditional, one number)."""
        r = self.results[source]
        rows = sorted((row for row in r.rows if row.sampler == sampler), key=lambda row: row.w)
        out = {k: np.array([getattr(row, k) for row in rows], dtype=float)
               for k in ("w", "to_tilted", "to_tilted_sd", "to_conditional", "to_conditional_sd")}
        out["threshold_tilted"] = np.array([r.threshold_tilted[row.w] for row in rows], dtype=float)
        out["threshold_conditional"] = float(r.threshold_conditional)
        return out

    def samplers(self) -> list[str]:
        r = next(iter(self.results.values()))
        return list(dict.fromkeys(row.sampler for row in r.rows))

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results.values())


def run_w_axis(density: GaussianMixture, c, ws=GUIDANCE_WS, samplers=GUIDANCE_SAMPLERS, exact: ScoreModel | None = None,
               model: ScoreModel | None = None, n: int = 2000, seeds: int = 3, seed: int = 0,
               progress: Callable[[float, str], None] | None = None,
               cancelled: Callable[[], bool] = lambda: False) -> WAxis | None:
    """run_guidance_study with CFG of `exact` (an ExactScore of the density; None: exact_cfg's own range)
    and, when given and class-conditional, of `model`, on the same seeds. None when cancelled."""
    from ..conditional import for_class
    sources, note = {"exact": exact}, ""
    if model is not None:
        try:
            for_class(model, density, c)
            sources["model"] = model
        except ValueError as e:
            note = f"no model curves: {e}"
    results = {}
    for k, (source, sm) in enumerate(sources.items()):
        def part(frac, what, k=k, source=source):
            if progress:
                progress((k + frac) / len(sources), f"{W_SOURCES[source]}: {what}")
        r = run_guidance_study(density, c, ws, samplers, model=sm, n=n, seeds=seeds, seed=seed, progress=part,
                               cancelled=cancelled)
        if r is None:
            return None
        results[source] = r
    return WAxis(results, note)


def format_w_axis(a: WAxis) -> str:
    """format_table per source, each under a header naming it."""
    parts = [f"== {W_SOURCES[source]} ==\n{format_table(r)}" for source, r in a.results.items()]
    return "\n\n".join(parts + ([a.note] if a.note else []))


def format_table(r: GuidanceResult) -> str:
    """One line per (sampler, w): distances to the tilted target and to p(x|c) (mean ± sd, * = at or
    below the exact-sample threshold), class share, spread, mode TV."""
    lines = [f"{r.density}, class {r.class_index} ({r.class_name}): n = {r.n}, {r.seeds} seeds; "
             f"threshold (the {r.quantile:.0%} quantile of exact samples' K-seed mean): "
             f"p(x|c) {r.threshold_conditional:.4f}, tilted "
             + ", ".join(f"w={w:g}: {t:.4f}" for w, t in r.threshold_tilted.items()),
             "the tilted target's own distance to p(x|c): "
             + ", ".join(f"w={w:g}: {t:.4f}" for w, t in r.tilted_to_conditional.items()),
             f"{'sampler':<8} {'w':>5} {'NFE':>5}  {'ED to tilted':>18}  {'ED to p(x|c)':>18}  "
             f"{'class':>6} {'spread':>7} {'modeTV':>7}"]
    for row in r.rows:
        mark_t = "*" if row.to_tilted <= r.threshold_tilted[row.w] else " "
        mark_c = "*" if row.to_conditional <= r.threshold_conditional else " "
        lines.append(f"{row.sampler:<8} {row.w:>5g} {row.nfe:>5}  {row.to_tilted:>8.4f} ± {row.to_tilted_sd:.4f}{mark_t} "
                     f" {row.to_conditional:>8.4f} ± {row.to_conditional_sd:.4f}{mark_c}  {row.class_share:>6.3f} "
                     f"{row.spread:>7.3f} {row.mode_tv:>7.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainers.studies.guidance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--density", help="a labelled preset or density JSON (default three_classes, or the checkpoint's)")
    p.add_argument("--ckpt", help="a class-conditional checkpoint: its CFG instead of the exact scores' "
                   "(the density defaults to the checkpoint's)")
    p.add_argument("--class", dest="cls", default="0", help="class index or name")
    p.add_argument("--w", default=",".join(f"{w:g}" for w in GUIDANCE_WS), help="comma-separated guidance weights")
    p.add_argument("--samplers", default=",".join(GUIDANCE_SAMPLERS))
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        ws = [float(v) for v in a.w.split(",") if v.strip()]
        density, guided = load_density(a.density) if a.density else None, None
        if a.ckpt:
            from ..conditional import sampling_score
            from ..fitting import load_checkpoint
            density = density or load_checkpoint(a.ckpt)[2]
            guided = lambda w: sampling_score(a.ckpt, density, False, a.cls, w)     # noqa: E731
        r = run_guidance_study(density or load_density("three_classes"), a.cls, ws,
                               [s for s in a.samplers.split(",") if s], guided=guided, n=a.n, seeds=a.seeds, seed=a.seed)
    except ValueError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    print(json.dumps(r.to_dict()) if a.json else format_table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
