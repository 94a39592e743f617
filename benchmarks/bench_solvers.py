"""The README's fast-solver figures (issue #23), on two densities the tests never use (four anisotropic
modes, weights 0.45 / 0.3 / 0.15 / 0.1; centred, and the same moved ≈ 10 units from the origin):

1. the NFE table: energy distance (mean ± sd over K seeds) of ddim, pf-ode, dpmpp-2m, dpmpp-3m, unipc
   and edm with the exact score, against the exact-sample threshold, as the lab computes it
   (trainers.studies.lab.run_lab: the exact·exact-start and exact sources, and as its "model" rows the
   exact score from the old origin-centred start N(0, σ_max² I) at σ_max = 80), and whether DPM-Solver++ 2M and UniPC
   reach the threshold at 10 NFE. From the matched start every sampler here is translation-equivariant,
   so the off-centre density's rows equal the centred one's; from the origin start they do not;
2. the order of convergence (trainers.studies.convergence) on the exact score of the centred density
   (σ_min 0.05, where it is smooth) and, with --ckpt, on a trained model of it (its own σ range);
3. --png: the log–log plot of both (docs/solver_order.png), drawn with Pillow (no matplotlib here).

    python benchmarks/bench_solvers.py --out /tmp/solvers                          # K = 5, n = 2000
    python -m trainers.toy train --density /tmp/solvers/centred.json --steps 4000 --out /tmp/solvers/ncsn.pt
    python benchmarks/bench_solvers.py --out /tmp/solvers --ckpt /tmp/solvers/ncsn.pt --png docs/solver_order.png
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch                                          # noqa: E402

from trainers.densities import GaussianMixture       # noqa: E402
from trainers.score_models import ExactScore         # noqa: E402
from trainers.studies.convergence import (OrderResult, format_order_table, run_order_study)   # noqa: E402
from trainers.studies.lab import EXACT, EXACT_START, MODEL, format_table, run_lab   # noqa: E402

WEIGHTS = [0.45, 0.3, 0.15, 0.1]
MEANS = [[-1.5, -0.6], [1.4, 0.9], [0.3, -2.0], [-0.4, 2.1]]
COVS = [[[0.35, 0.12], [0.12, 0.15]], [[0.12, -0.05], [-0.05, 0.45]], [[0.5, 0.0], [0.0, 0.08]],
        [[0.1, 0.03], [0.03, 0.2]]]
SHIFT = (-6.5, 7.5)          # |shift| ≈ 9.9
SAMPLERS = ("ddim", "pf-ode", "dpmpp-2m", "dpmpp-3m", "unipc", "edm")
NFES = (5, 10, 20, 50)
ORIGIN_SIGMA_MAX = 80.0
ORDER_PLOTTED = ("euler", "heun", "dpmpp-2m", "dpmpp-3m", "unipc")     # edm at S_churn = 0 is heun


def densities() -> dict[str, GaussianMixture]:
    centred = GaussianMixture(WEIGHTS, MEANS, COVS, name="four modes, centred")
    far = GaussianMixture(WEIGHTS, [[x + SHIFT[0], y + SHIFT[1]] for x, y in MEANS], COVS,
                          name="four modes, 10 units off-centre")
    return {"centred": centred, "off-centre": far}


def nfe_tables(args, out: Path) -> dict:
    summary = {}
    for tag, density in densities().items():
        density.save(out / f"{tag}.json")
        start = time.perf_counter()
        exact = ExactScore(density)
        result = run_lab(density, None, exact, SAMPLERS, NFES, n=args.n, seed=args.seed, seeds=args.seeds)
        # a second lab whose "model" rows are the exact score from the old start N(0, σ_max² I) at EDM's
        # σ_max = 80 (diffusers' setting: an origin-centred start, a large σ_max); its "exact" rows share that start
        wide = ExactScore(density, sigma_max=ORIGIN_SIGMA_MAX)
        origin = copy.copy(wide)
        origin.data_mean = origin.data_var = origin.data_cov = None
        legacy = run_lab(density, origin, wide, SAMPLERS, NFES, n=args.n, seed=args.seed, seeds=args.seeds)
        result.rows += [r for r in legacy.rows if r.source == MODEL]
        (out / f"nfe_{tag}.json").write_text(json.dumps(result.to_dict()))
        table = format_table(result)
        print(f"== {density.name}: exact score, K = {args.seeds}, n = {args.n} ({time.perf_counter() - start:.0f} s)\n"
              f"{table}\n", flush=True)
        reach = {}
        for name in SAMPLERS:
            for src in (EXACT_START, EXACT, MODEL):
                row = next(r for r in result.cells(name, src) if r.nfe_target == 10)
                reach[f"{name}/{src}"] = {"ed": row.energy_distance, "sd": row.energy_distance_sd,
                                          "reached": bool(row.energy_distance <= result.threshold),
                                          "nfe_to_reach": result.nfe_to_reach(name, src)}
        summary[tag] = {"threshold": result.threshold, "at_10": reach}
        for name in ("dpmpp-2m", "unipc"):
            for src, words in ((EXACT, "matched start"), (MODEL, "origin start, σ_max 80")):
                r = reach[f"{name}/{src}"]
                print(f"   {name} at 10 NFE, {words}: {r['ed']:.4f} ± {r['sd']:.4f} vs threshold "
                      f"{result.threshold:.4f}: {'reached' if r['reached'] else 'NOT reached'}", flush=True)
    return summary


def order_studies(args, out: Path) -> list[tuple[str, OrderResult]]:
    centred = densities()["centred"]
    runs = [("exact score, sigma_min 0.05", ExactScore(centred, sigma_min=0.05)),
            ("exact score, sigma_min 0.002", ExactScore(centred, sigma_min=0.002))]
    if args.ckpt:
        from trainers.fitting import load_checkpoint, noise_levels, score_model, sigmas_from_extra, stats_from_extra
        model, cfg, _, extra = load_checkpoint(args.ckpt)
        sigmas = sigmas_from_extra(extra)
        if sigmas is None:
            sigmas = noise_levels(cfg, centred)
        sm = score_model(model, cfg, centred, sigmas, stats_from_extra(extra))
        runs.append((f"trained {cfg.objective} model, sigma_min {sm.sigma_min:.2g}", sm))
    results = []
    for title, sm in runs:
        start = time.perf_counter()
        r = run_order_study(sm, ORDER_PLOTTED, nfes=args.order_nfe, n=args.order_n, seeds=args.seeds, seed=args.seed)
        print(f"== order: {title} ({time.perf_counter() - start:.0f} s)\n{format_order_table(r)}\n", flush=True)
        results.append((title, r))
    (out / "order.json").write_text(json.dumps([{"title": t, **r.to_dict()} for t, r in results]))
    return results


COLOURS = {"euler": (120, 120, 120), "heun": (31, 119, 180), "edm": (148, 103, 189), "dpmpp-2m": (255, 127, 14),
           "dpmpp-3m": (214, 39, 40), "unipc": (44, 160, 44)}


def plot(results: list[tuple[str, OrderResult]], path: Path) -> None:
    """One log–log panel per study: mean per-particle error against NFE, a line per solver, its slope in the legend."""
    from PIL import Image, ImageDraw

    W, H, pad_l, pad_r, pad_t, pad_b = 420, 360, 62, 12, 34, 46
    img = Image.new("RGB", (W * len(results), H), "white")
    draw = ImageDraw.Draw(img)
    errors = [e for _, r in results for c in r.curves for e in c.error if e > 0 and math.isfinite(e)]
    nfes = [n for _, r in results for c in r.curves for n in c.nfe]
    lo_e, hi_e = math.floor(math.log10(min(errors))), math.ceil(math.log10(max(errors)))
    lo_n, hi_n = math.log10(min(nfes) * 0.8), math.log10(max(nfes) * 1.25)
    for p, (title, r) in enumerate(results):
        x0 = p * W

        def px(nfe, err):
            u = (math.log10(nfe) - lo_n) / (hi_n - lo_n)
            v = (math.log10(err) - lo_e) / (hi_e - lo_e)
            return x0 + pad_l + u * (W - pad_l - pad_r), pad_t + (1 - v) * (H - pad_t - pad_b)

        draw.rectangle([x0 + pad_l, pad_t, x0 + W - pad_r, H - pad_b], outline="black")
        for k in range(lo_e, hi_e + 1):
            _, y = px(10 ** lo_n, 10 ** k)
            draw.line([x0 + pad_l, y, x0 + W - pad_r, y], fill=(225, 225, 225))
            draw.text((x0 + 8, y - 6), f"1e{k}", fill="black")
        for n in (5, 10, 20, 50, 100, 200):
            if lo_n <= math.log10(n) <= hi_n:
                x, _ = px(n, 10 ** lo_e)
                draw.line([x, pad_t, x, H - pad_b], fill=(225, 225, 225))
                draw.text((x - 6, H - pad_b + 4), str(n), fill="black")
        draw.text((x0 + pad_l, 8), title, fill="black")
        draw.text((x0 + W // 2 - 20, H - 18), "NFE", fill="black")
        draw.text((x0 + 4, pad_t - 16), "error", fill="black")
        for i, c in enumerate(r.curves):
            colour = COLOURS.get(c.label, (0, 0, 0))
            pts = [px(n, e) for n, e in zip(c.nfe, c.error) if e > 0 and math.isfinite(e)]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            for x, y in pts:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
            slope = f"{c.slope:+.2f}" if math.isfinite(c.slope) else "—"
            ly = H - pad_b - 14 * (len(r.curves) - i) - 4
            draw.line([x0 + pad_l + 8, ly + 6, x0 + pad_l + 24, ly + 6], fill=colour, width=2)
            draw.text((x0 + pad_l + 28, ly), f"{c.label} (order {c.nominal}): slope {slope}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    print(f"wrote {path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/solvers", help="folder for the JSON results and densities")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=2000, help="particles per lab cell")
    p.add_argument("--order-n", type=int, default=500, help="particles per order-study seed")
    p.add_argument("--order-nfe", type=lambda s: [int(v) for v in s.split(",")], default=[10, 20, 40, 80, 160])
    p.add_argument("--ckpt", help="a trained toy checkpoint of the centred density for the order study")
    p.add_argument("--png", help="write the order plot here (docs/solver_order.png)")
    p.add_argument("--skip-nfe", action="store_true", help="only the order studies")
    args = p.parse_args(argv)
    torch.set_num_threads(1)          # as the CLI does: small 2D batches gain nothing from threads
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {} if args.skip_nfe else nfe_tables(args, out)
    results = order_studies(args, out)
    summary["order"] = {t: {c.label: {"slope": c.slope, "slope_sd": c.slope_sd, "nominal": c.nominal}
                            for c in r.curves} for t, r in results}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.png:
        plot(results, Path(args.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
