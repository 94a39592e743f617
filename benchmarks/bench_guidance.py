"""README's guidance figures (issue #22): what exact-score classifier-free guidance samples, per sampler,
against p(x|c) and against the tilted target p_w(x|c) ∝ p(x|c)^{1+w} p(x)^{−w}, over seeds.

On (a) the three_classes preset (class "left"; and class "bottom", whose lighter mode sits beside "left")
and (b) a labelled mixture the tests never use: off-centre (mean ≈ (2.8, −1.8)), anisotropic, classes of
weight 0.6 / 0.3 / 0.1 with components of unequal covariance (class "middle": two components, the lighter
one beside class "heavy"), for w ∈ {0, 1, 4} and DDPM (ancestral, 1000 steps), DDIM (50) and the
PF-ODE (Heun, 99 NFE), each at its defaults: trainers.studies.guidance.run_guidance_study does the runs
(exact_cfg; TiltedTarget's exact sampler).

Per (sampler, w): the energy distance (U-statistic: 0 in expectation for exact samples) to p_w and to
p(x|c), mean ± sd over K seeds and the standard error sd/√K, beside the exact-sample threshold — the 95 %
quantile of the K-seed mean energy distance between two exact draws of the same size (lab.quantile_of_means
of `null_draws` exact draws per seed); * marks a mean at or below it. Then the verdicts of issue #22's
claims, each with a negative control that must come out "does not hold":

1. at w = 0 DDPM, DDIM and the PF-ODE all match p(x|c) (every mean ≤ the threshold of p(x|c));
   control: the same rule at the largest w (guided samples are not p(x|c));
2. at every w ≥ 1 each sampler's distance to the tilted target is above that target's threshold;
   control: the same rule at w = 0 (where the tilted target is p(x|c));
3. at every w ≥ 1 DDPM and DDIM differ (to the tilted target) by more than their combined standard
   errors se_DDPM + se_DDIM; control: the same rule at w = 0.

    python benchmarks/bench_guidance.py                   # K = 5 seeds, n = 2000 (≈ 2 min of CPU on one core)
    python benchmarks/bench_guidance.py --quick           # K = 3, n = 500
    python benchmarks/bench_guidance.py --json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import describe  # noqa: E402
from trainers.densities import GaussianMixture, preset  # noqa: E402
from trainers.studies.guidance import (GUIDANCE_SAMPLERS, GUIDANCE_WS, GuidanceResult,  # noqa: E402
                                       run_guidance_study)

CENTRE = np.array([3.0, -2.0])
FULL = dict(n=2000, seeds=5, null_draws=10, grid=512)
QUICK = dict(n=500, seeds=3, null_draws=5, grid=256)


def off_centre_mixture() -> GaussianMixture:
    """Three classes of weight 0.6 / 0.3 / 0.1 around (3, −2), anisotropic components of unequal covariance;
    "middle" (0.2 + 0.1) has its lighter component next to "heavy"'s big one (guidance pushes it away)."""
    means = CENTRE + np.array([[-1.5, 0.5], [0.5, 1.8],        # heavy
                               [1.6, -0.2], [-0.4, -0.9],      # middle
                               [0.2, -2.2]])                   # light
    covs = np.array([[[0.5, 0.25], [0.25, 0.2]], [[0.15, -0.05], [-0.05, 0.4]],
                     [[0.3, 0.0], [0.0, 0.08]], [[0.12, 0.05], [0.05, 0.3]],
                     [[0.6, -0.2], [-0.2, 0.15]]])
    return GaussianMixture([0.4, 0.2, 0.2, 0.1, 0.1], means, covs, "off-centre three classes",
                           labels=[0, 0, 1, 1, 2], classes=["heavy", "middle", "light"])


def densities() -> dict[str, tuple[GaussianMixture, str]]:
    """{tag: (density, the class guided)}."""
    three = preset("three_classes")
    return {"three_classes": (three, "left"), "three_classes/bottom": (three, "bottom"),
            "off-centre": (off_centre_mixture(), "middle")}


@dataclass
class Verdict:
    claim: str
    holds: bool
    measured: str
    control: str
    control_holds: bool

    @property
    def supported(self) -> bool:
        """The claim holds and its negative control does not."""
        return self.holds and not self.control_holds


def entry(result, vs: list[Verdict]) -> dict:
    """A density's part of the JSON report: its result and verdicts (bench_guidance, bench_flow)."""
    return {"result": result.to_dict(), "verdicts": [{**asdict(v), "supported": v.supported} for v in vs]}


def finish(report: dict, a, start: float) -> int:
    """Write the JSON report (--json-out), print it (--json) or the total time; exit status 0."""
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(report))
    if a.json:
        print(json.dumps(report))
    else:
        print(f"\n# total {time.perf_counter() - start:.0f} s")
    return 0


def _se(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan


def _cell(r: GuidanceResult, sampler: str, w: float, key: str) -> tuple[float, float]:
    """(mean, standard error) over seeds of `key` ("to_tilted" or "to_conditional") for (sampler, w)."""
    v = r.row(sampler, w).per_seed[key]
    return float(np.mean(v)), _se(v)


def verdicts(r: GuidanceResult, samplers, ws) -> list[Verdict]:
    """The three claims of the module docstring, each with its control (needs w = 0 and a w ≥ 1)."""
    high = [w for w in ws if w >= 1]
    if 0.0 not in ws or not high:
        raise ValueError(f"the verdicts need w = 0 and at least one w ≥ 1, got {list(ws)}")
    w_max, out = max(high), []

    def match(w):
        vals = {s: _cell(r, s, w, "to_conditional")[0] for s in samplers}
        return all(v <= r.threshold_conditional for v in vals.values()), \
            ", ".join(f"{s} {v:.4f}" for s, v in vals.items()) + f" vs threshold {r.threshold_conditional:.4f}"
    holds, m = match(0.0)
    c_holds, cm = match(w_max)
    out.append(Verdict("w = 0: every sampler matches p(x|c) (mean ED ≤ threshold)", holds, m,
                       f"w = {w_max:g} against p(x|c): {cm}", c_holds))

    def miss(wlist):
        parts, ok = [], True
        for w in wlist:
            for s in samplers:
                v = _cell(r, s, w, "to_tilted")[0]
                ok &= v > r.threshold_tilted[w]
                parts.append(f"{s}@{w:g} {v:.4f}")
        thresholds = ", ".join(f"w={w:g}: {r.threshold_tilted[w]:.4f}" for w in wlist)
        return ok, ", ".join(parts) + " vs thresholds " + thresholds
    holds, m = miss(high)
    c_holds, cm = miss([0.0])
    out.append(Verdict("w ≥ 1: every sampler's ED to the tilted target is above its threshold", holds, m,
                       f"w = 0: {cm}", c_holds))
    if "ddpm" in samplers and "ddim" in samplers:
        def differ(wlist):
            parts, ok = [], True
            for w in wlist:
                (a, sa), (b, sb) = _cell(r, "ddpm", w, "to_tilted"), _cell(r, "ddim", w, "to_tilted")
                ok &= abs(b - a) > sa + sb
                parts.append(f"w={w:g}: DDIM − DDPM {b - a:+.4f} vs se sum {sa + sb:.4f}")
            return ok, "; ".join(parts)
        holds, m = differ(high)
        c_holds, cm = differ([0.0])
        out.append(Verdict("w ≥ 1: DDPM and DDIM differ (ED to tilted) by more than se_DDPM + se_DDIM", holds, m,
                           cm, c_holds))
    return out


def bench(density: GaussianMixture, c, ws=GUIDANCE_WS, samplers=GUIDANCE_SAMPLERS, n: int = 2000, seeds: int = 5,
          seed: int = 0, null_draws: int = 10, grid: int = 512,
          options: dict | None = None) -> tuple[GuidanceResult, list[Verdict]]:
    """The guidance study on `density`, class c, and its verdicts; options: {sampler: its options} (default:
    each sampler's defaults)."""
    r = run_guidance_study(density, c, ws, samplers, options=options, n=n, seeds=seeds, seed=seed,
                           null_draws=null_draws, grid=grid)
    return r, verdicts(r, samplers, ws)


def format_bench(r: GuidanceResult, vs: list[Verdict]) -> str:
    """The table (mean ± sd (se) over seeds, the threshold beside it, * = at or below) and the verdicts."""
    lines = [f"## {r.density}, class {r.class_index} ({r.class_name}): n = {r.n}, K = {r.seeds} seeds, exact-sample "
             f"threshold = {r.quantile:.0%} quantile of K-seed mean ED between exact draws ({r.seconds:.0f} s)",
             "tilted target's own ED to p(x|c): "
             + ", ".join(f"w={w:g}: {t:.4f}" for w, t in r.tilted_to_conditional.items()),
             f"| sampler | NFE | w | ED to tilted p_w: mean ± sd (se) | threshold | ED to p(x|c): mean ± sd (se) | "
             f"threshold | class share | spread | mode TV |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in r.rows:
        tt, tc = row.per_seed["to_tilted"], row.per_seed["to_conditional"]
        thr_t, thr_c = r.threshold_tilted[row.w], r.threshold_conditional
        lines.append(f"| {row.sampler} | {row.nfe} | {row.w:g} | {row.to_tilted:.4f} ± {row.to_tilted_sd:.4f} "
                     f"({_se(tt):.4f}){' *' if row.to_tilted <= thr_t else ''} | {thr_t:.4f} | "
                     f"{row.to_conditional:.4f} ± {row.to_conditional_sd:.4f} ({_se(tc):.4f})"
                     f"{' *' if row.to_conditional <= thr_c else ''} | {thr_c:.4f} | {row.class_share:.3f} | "
                     f"{row.spread:.3f} | {row.mode_tv:.3f} |")
    lines.append("")
    for v in vs:
        control = "holds — claim NOT supported" if v.control_holds else "does not hold, as it must"
        lines.append(f"- {v.claim}: {'HOLDS' if v.holds else 'does NOT hold'} ({v.measured}); "
                     f"control {control} ({v.control})")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"smaller: {QUICK}")
    p.add_argument("--n", type=int, help=f"samples per run (default {FULL['n']})")
    p.add_argument("--seeds", type=int, help=f"seeds K (default {FULL['seeds']})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--w", default=",".join(f"{w:g}" for w in GUIDANCE_WS), help="comma-separated guidance weights")
    p.add_argument("--densities", default=",".join(densities()), help="comma-separated: " + ", ".join(densities()))
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--json-out", help="also write the JSON object to this file")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    size = dict(QUICK if a.quick else FULL)
    size.update({k: v for k, v in (("n", a.n), ("seeds", a.seeds)) if v is not None})
    try:
        ws = [float(v) for v in a.w.split(",") if v.strip()]
        chosen = {t: densities()[t] for t in a.densities.split(",") if t}
    except (ValueError, KeyError) as e:
        sys.stderr.write(f"error: bad --w or --densities ({e}); densities: {', '.join(densities())}\n")
        return 2
    report = {}
    if not a.json:
        print(describe("bench_guidance"))
        print(f"# exact-score CFG; n = {size['n']}, K = {size['seeds']} seeds from base seed {a.seed}; "
              f"figures mean ± sd (standard error) over seeds")
    start = time.perf_counter()
    for tag, (density, c) in chosen.items():
        r, vs = bench(density, c, ws, n=size["n"], seeds=size["seeds"], seed=a.seed, null_draws=size["null_draws"],
                      grid=size["grid"])
        report[tag] = entry(r, vs)
        if not a.json:
            print("\n" + format_bench(r, vs), flush=True)
    return finish(report, a, start)


if __name__ == "__main__":
    sys.exit(main())
