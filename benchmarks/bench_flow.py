"""README's flow-matching figures (issue #21), over training seeds: how straight each flow is and how good
one Euler step of it samples, on an off-centre anisotropic mixture of unequal weights (bench_guidance's
0.6 / 0.3 / 0.1 mixture around (3, −2)) and on two_moons.

Per density and seed k (K seeds; the models' training seed is seed + k), these flows from the same z:
- the exact velocity (trainers.flows through the exact score; no training),
- FM: flow matching with independent coupling (trainers.methods.flow_matching),
- reflow 1, reflow 2: one and two reflow rounds on FM (trainers.studies.reflow.reflow, pairs from the
  previous model's own ODE),
- FM, minibatch OT coupling,
and two negative controls: reflow with the pairs' z shuffled (the same endpoints, an independent coupling:
reflow's own control) and FM retrained with another seed (independent in both arms: OT's control).
Figures per flow: the energy distance (U-statistic) of 1-, 2-, 4-, 8- and `nfe`-step Euler samples (from
t = 0.999) to an exact reference sample, and Liu et al.'s straightness along `nfe`-step Euler paths (flows.straightness,
via reflow.flow_paths, from t = 0.999), each mean ± sd (standard error) over seeds. The exact-sample threshold
is the 95 % quantile of the K-seed mean energy distance between two exact draws of size n
(lab.quantile_of_means); * marks a mean at or below it. Verdicts, each with a control that must fail:

1. reflow straightens: straightness and 1-step ED both fall from FM by more than se_FM + se_reflow;
   control: the shuffled-pairs reflow;
2. minibatch OT straightens from the start: the same two drops from FM to FM-OT; control: FM of another seed;
3. one Euler step after one reflow reaches the exact-sample threshold; control: one Euler step of FM.

    python benchmarks/bench_flow.py              # K = 3, n = 2000, width 128, 2000 steps (≈ 5–7 min of CPU)
    python benchmarks/bench_flow.py --quick      # width 64, 500 steps, n = 500
    python benchmarks/bench_flow.py --densities eight_gaussians,spiral      # any presets
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_guidance import Verdict, entry, finish, off_centre_mixture  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from trainers.densities import DensityError, GaussianMixture, preset  # noqa: E402
from trainers.fitting import ToyConfig, score_model, train  # noqa: E402
from trainers.flows import straightness  # noqa: E402
from trainers.metrics import energy_distance, mean_pairwise_distance  # noqa: E402
from trainers.studies.lab import QUANTILE, quantile_of_means, seed_streams  # noqa: E402
from trainers.studies.reflow import flow_paths, reflow  # noqa: E402

EXACT, FM, REFLOW, REFLOW2, OT = "exact velocity", "FM (independent)", "reflow 1", "reflow 2", "FM (minibatch OT)"
SHUFFLED, OTHER_SEED = "control: reflow, shuffled pairs", "control: FM, another seed"
FLOWS = (EXACT, FM, REFLOW, REFLOW2, OT, SHUFFLED, OTHER_SEED)
EULER_NFES = (1, 2, 4, 8)          # and the run's `nfe`: the energy distance after that many Euler steps
FULL = dict(n=2000, seeds=3, steps=2000, width=128, batch=256, reflow_steps=2000, pairs=10000, pair_nfe=100, nfe=100,
            null_draws=20)
QUICK = dict(n=500, seeds=3, steps=500, width=64, batch=128, reflow_steps=500, pairs=2000, pair_nfe=50, nfe=50,
             null_draws=10)


def densities() -> dict[str, GaussianMixture]:
    d = off_centre_mixture()
    return {"off-centre": GaussianMixture(d.weights, d.means, d.covs, "off-centre 0.6/0.3/0.1 mixture"),
            "two_moons": preset("two_moons")}


@dataclass
class FlowBench:
    density: str
    n: int
    seeds: int
    settings: dict
    threshold: float
    per_seed: dict = field(default_factory=dict)     # {flow: {figure: [one value per seed]}}
    seconds: float = 0.0

    def stat(self, flow: str, figure: str) -> tuple[float, float, float]:
        """(mean, sd, standard error) over seeds."""
        v = np.asarray(self.per_seed[flow][figure], dtype=float)
        sd = float(v.std(ddof=1)) if len(v) > 1 else math.nan
        return float(v.mean()), sd, sd / math.sqrt(len(v))

    def to_dict(self) -> dict:
        return asdict(self)


def figure_names(nfe: int) -> tuple[str, ...]:
    """"ed_K" (the energy distance after K Euler steps) for K in EULER_NFES and nfe, then "straightness"."""
    return tuple(f"ed_{k}" for k in sorted(set(EULER_NFES) | {nfe})) + ("straightness",)


def _figures(sm, z, ref, ref_self, nfe) -> dict:
    out = {}
    for k in sorted(set(EULER_NFES) | {nfe}):
        path = flow_paths(sm, z, k)
        out[f"ed_{k}"] = energy_distance(path[0][-1], ref, ref_self)
        if k == nfe:
            out["straightness"] = float(straightness(*path).mean())
    return out


def bench(density: GaussianMixture, n: int = 2000, seeds: int = 3, seed: int = 0, steps: int = 2000,
          width: int = 128, batch: int = 256, reflow_steps: int = 2000, pairs: int = 10000, pair_nfe: int = 100,
          nfe: int = 100, null_draws: int = 20, quantile: float = QUANTILE, progress=print) -> FlowBench:
    """Every flow of the module docstring on `density`, K = `seeds` seeds."""
    if seeds < 2 or n < 2 or null_draws < 1:
        raise ValueError(f"the benchmark needs seeds ≥ 2, n ≥ 2 and null_draws ≥ 1 "
                         f"(got {seeds}, {n}, {null_draws})")
    start = time.perf_counter()
    settings = dict(steps=steps, width=width, batch=batch, reflow_steps=reflow_steps, pairs=pairs, pair_nfe=pair_nfe,
                    nfe=nfe, null_draws=null_draws)
    out = FlowBench(density.name, n, seeds, settings, math.nan, {f: {k: [] for k in figure_names(nfe)} for f in FLOWS})
    pools = []
    for k, s in enumerate(seed_streams(seed, seeds)):
        gen = torch.Generator().manual_seed(s)
        ref = density.sample(n, gen)
        ref_self = mean_pairwise_distance(ref)
        pools.append([energy_distance(density.sample(n, gen), ref, ref_self) for _ in range(null_draws)])
        z = torch.randn(n, 2, generator=gen)

        def cfg(train_seed, coupling="independent"):
            return ToyConfig(density=density.name or "drawn", objective="fm", steps=steps, width=width, batch=batch,
                             seed=train_seed, extra={"coupling": coupling})
        c_fm = cfg(seed + k)
        fm = train(c_fm, density)[0]
        flows = {EXACT: score_model(None, c_fm, density), FM: score_model(fm, c_fm, density)}
        rounds = {}
        for tag, base, shuffle in ((REFLOW, FM, False), (REFLOW2, REFLOW, False), (SHUFFLED, FM, True)):
            net, c = rounds.get(base, (fm, c_fm))
            rounds[tag] = reflow(net, c, density, reflow_steps, pairs, pair_nfe, shuffle=shuffle)[:2]
            flows[tag] = score_model(*rounds[tag], density)
        for tag, c in ((OT, cfg(seed + k, "ot")), (OTHER_SEED, cfg(seed + k + 100))):
            flows[tag] = score_model(train(c, density)[0], c, density)
        for tag in FLOWS:
            for key, v in _figures(flows[tag], z, ref, ref_self, nfe).items():
                out.per_seed[tag][key].append(v)
        if progress:
            progress(f"#   {density.name}: seed {k + 1}/{seeds} done ({time.perf_counter() - start:.0f} s)")
    out.threshold = quantile_of_means(pools, quantile, seed=seed)
    out.seconds = time.perf_counter() - start
    return out


def verdicts(b: FlowBench) -> list[Verdict]:
    """The three claims of the module docstring with their controls."""
    def drops(arm):
        ok, parts = True, []
        for fig in ("straightness", "ed_1"):
            (m0, _, s0), (m1, _, s1) = b.stat(FM, fig), b.stat(arm, fig)
            ok &= m0 - m1 > s0 + s1
            parts.append(f"{fig} {m0:.4g} → {m1:.4g} (drop {m0 - m1:.4g} vs se sum {s0 + s1:.2g})")
        return ok, "; ".join(parts)

    def reaches(arm):
        m = b.stat(arm, "ed_1")[0]
        return m <= b.threshold, f"1-step ED {m:.4f} vs threshold {b.threshold:.4f}"
    out = []
    claims = (("reflow straightens (straightness and 1-step ED fall from FM by > se sum)", REFLOW, SHUFFLED),
              ("minibatch OT straightens (straightness and 1-step ED below FM's by > se sum)", OT, OTHER_SEED))
    for claim, arm, control in claims:
        (h, m), (ch, cm) = drops(arm), drops(control)
        out.append(Verdict(claim, h, m, f"{control}: {cm}", ch))
    (h, m), (ch, cm) = reaches(REFLOW), reaches(FM)
    out.append(Verdict("one Euler step after one reflow reaches the exact-sample threshold", h, m, f"FM: {cm}", ch))
    return out


def _ratio(b: FlowBench, num: str, den: str, fig: str) -> str:
    r = np.asarray(b.per_seed[num][fig]) / np.asarray(b.per_seed[den][fig])
    return f"{r.mean():.3g} ± {r.std(ddof=1):.2g}"


def _pm(m: float, sd: float, se: float) -> str:
    """mean ± sd (se), to two significant digits of the sd."""
    d = min(8, max(1, 1 - math.floor(math.log10(sd)))) if sd > 0 and math.isfinite(sd) else 4
    return f"{m:.{d}f} ± {sd:.{d}f} ({se:.{d}f})"


def format_bench(b: FlowBench, vs: list[Verdict]) -> str:
    st = b.settings
    names = figure_names(st["nfe"])
    lines = [f"## {b.density}: n = {b.n}, K = {b.seeds} training seeds; FM width {st['width']}, depth 3, "
             f"{st['steps']} steps, batch {st['batch']}; reflow {st['pairs']} pairs at {st['pair_nfe']} NFE (Heun), "
             f"{st['reflow_steps']} steps ({b.seconds:.0f} s)",
             f"exact-sample threshold ({QUANTILE:.0%} quantile of the K-seed mean ED between exact draws): "
             f"{b.threshold:.4f}",
             "energy distance after K Euler steps and straightness (along the "
             f"{st['nfe']}-step paths), each mean ± sd (se) over seeds; * = at or below the threshold",
             "| flow | " + " | ".join(f"ED, {f[3:]} step{'s' * (f != 'ed_1')}" if f != "straightness" else f
                                      for f in names) + " |",
             "|---|" + "---|" * len(names)]
    for flow in FLOWS:
        cells = []
        for fig in names:
            m, sd, se = b.stat(flow, fig)
            star = " *" if fig != "straightness" and m <= b.threshold else ""
            cells.append(f"{_pm(m, sd, se)}{star}")
        lines.append(f"| {flow} | " + " | ".join(cells) + " |")
    lines += ["", f"ratios (per seed, mean ± sd): 1-step ED FM / reflow 1 {_ratio(b, FM, REFLOW, 'ed_1')}, "
              f"straightness FM / reflow 1 {_ratio(b, FM, REFLOW, 'straightness')}, straightness OT / FM "
              f"{_ratio(b, OT, FM, 'straightness')}, straightness exact / FM {_ratio(b, EXACT, FM, 'straightness')}"]
    for v in vs:
        control = "holds — claim NOT supported" if v.control_holds else "does not hold, as it must"
        lines.append(f"- {v.claim}: {'HOLDS' if v.holds else 'does NOT hold'} ({v.measured}); "
                     f"control {control} ({v.control})")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"smaller: {QUICK}")
    p.add_argument("--seeds", type=int, help="training seeds K (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--densities", default=",".join(densities()),
                   help="comma-separated: " + ", ".join(densities()) + ", or any preset name")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--json-out", help="also write the JSON object to this file")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    size = dict(QUICK if a.quick else FULL)
    if a.seeds is not None:
        size["seeds"] = a.seeds
    try:
        chosen = {t: densities()[t] if t in densities() else preset(t) for t in a.densities.split(",") if t}
    except DensityError as e:
        sys.stderr.write(f"error: {e} (or {', '.join(densities())})\n")
        return 2
    report, start = {}, time.perf_counter()
    if not a.json:
        print(describe("bench_flow"))
        print(f"# figures mean ± sd (standard error) over K = {size['seeds']} seeds from base seed {a.seed}")
    for tag, d in chosen.items():
        b = bench(d, seed=a.seed, progress=None if a.json else print, **size)
        vs = verdicts(b)
        report[tag] = entry(b, vs)
        if not a.json:
            print("\n" + format_bench(b, vs), flush=True)
    return finish(report, a, start)


if __name__ == "__main__":
    sys.exit(main())
