"""Classifier-free guidance on the digits: README's "guidance on digits" table and grid (issue #22).

Usage (a class-conditional run first, ~15-40 minutes on a CPU):
    python -m trainers.image train --config ddpm_digits_cond --out runs/digits_cond
    python benchmarks/bench_digits_guidance.py runs/digits_cond [--grid docs/digits_guidance.png]

For each guidance weight w (default 0, 1, 3, 7) and seed (default 1, 2, 3) it draws `--n-per-class`
samples of each class 0-9 with CFG (1 + w) s(x|c) - w s(x) (one network, `--sampler`, default DDIM 50
steps; the same initial noise for every w at a seed) and asks the digit judge (trainers.image.judge,
logistic regression on real digits) per class: the share recognised as the requested class (and above
0.9 confidence), the within-class diversity (mean distance to the nearest other sample in sets as large
as the held-out real class) and the judge's output entropy. It prints mean ± sd over seeds of the
class-averaged figures, the held-out real digits beside them, and two verdicts with a control:

- "the share of the requested class rises from w = 0": paired over seeds, share(w) - share(0) above
  t(0.975, seeds - 1) standard errors (a two-sided 95 % t-test);
- "diversity falls from w = 0": nn_within(w) - nn_within(0) below minus that many standard errors;
- control: w = 0 against w = 0 drawn with other seeds (seed + 100) — must come out "does not hold".
"""
from __future__ import annotations

import argparse
import json
import statistics as st
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.image.imageio import save_grid, to_unit          # noqa: E402
from trainers.image.judge import digits_judge                  # noqa: E402
from trainers.image.methods import generate                    # noqa: E402
from trainers.image.runtime import cpu_threads                 # noqa: E402
from trainers.image.train import load_run                      # noqa: E402

FIGURES = ("share_requested", "share_requested_confident", "nn_within", "output_entropy")


def class_figures(judge, x01: torch.Tensor, n: int) -> dict:
    """Class-averaged judge figures of samples drawn n per class, classes 0-9 in order."""
    per = [judge.class_report(x01[k * n:(k + 1) * n], k) for k in range(10)]
    out = {f: st.mean(r["samples"][f] for r in per) for f in FIGURES}
    out["per_class_share"] = [r["samples"]["share_requested"] for r in per]
    out["real"] = {f: st.mean(r["reference_real_class"][f] for r in per) for f in FIGURES}
    return out


def draw(cfg, model, w: float, seed: int, n: int, sampler: str, nfe: int | None, batch: int) -> torch.Tensor:
    labels = [k for k in range(10) for _ in range(n)]
    gen = generate(cfg, model, 10 * n, "cpu", seed=seed, sampler=sampler, nfe=nfe, batch_size=batch,
                   label=labels, guidance=w)
    return to_unit(gen.x, cfg.data_range).cpu()


def paired(a: list[float], b: list[float]) -> tuple[float, float, int]:
    """(mean, standard error, seeds) of the paired differences a - b over seeds."""
    d = [x - y for x, y in zip(a, b)]
    return st.mean(d), (st.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("inf")), len(d)


def verdict(name: str, diff: tuple[float, float, int], sign: int) -> str:
    """Holds when the mean difference has the sign asked and exceeds t(0.975, seeds − 1) standard errors
    (a two-sided 95 % t-test over the seeds; differences below 1e-6 are float rounding and count as none)."""
    from scipy.stats import t

    m, se, k = diff
    crit = float(t.ppf(0.975, k - 1)) if k > 1 else float("inf")
    holds = sign * m > max(crit * se, 1e-6)
    return f"{name}: {m:+.4f} ± {se:.4f} (SE; t-crit {crit:.2f}) -> {'HOLDS' if holds else 'does not hold'}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a class-conditional image run (--config ddpm_digits_cond)")
    p.add_argument("--weights", default="0,1,3,7", help="guidance weights w, comma-separated (first: the base)")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--n-per-class", type=int, default=100)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--nfe", type=int, default=50, help="sampler steps (CFG costs two network calls each)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--grid", default=None, help="save a grid: a row of classes 0-9 per w (4 samples each)")
    p.add_argument("--json", default=None, help="write every figure to this file")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the run's train.threads)")
    args = p.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg, model, ckpt, _ = load_run(args.run)
    judge = digits_judge()
    n = args.n_per_class
    rows, grid = {}, []
    t0 = time.perf_counter()
    with cpu_threads(args.threads or cfg.train.threads):
        for w in weights:
            rows[w] = []
            for seed in seeds:
                x = draw(cfg, model, w, seed, n, args.sampler, args.nfe, args.batch_size)
                rows[w].append(class_figures(judge, x, n))
                if seed == seeds[0]:
                    grid.append(torch.stack([x[k * n + j] for j in range(min(4, n)) for k in range(10)]))
        control = [class_figures(judge, draw(cfg, model, weights[0], s + 100, n, args.sampler, args.nfe,
                                             args.batch_size), n) for s in seeds]
    print(f"run {args.run} (step {ckpt['step']}), {args.sampler} {args.nfe} steps, {n} samples per class × 10 "
          f"classes, seeds {seeds}; mean ± sd over seeds of the class-averaged figures ({time.perf_counter() - t0:.0f} s)")
    head = f"{'w':>5s} " + " ".join(f"{f:>27s}" for f in FIGURES)
    print(head)
    for w, rs in rows.items():
        print(f"{w:5g} " + " ".join(f"{st.mean(r[f] for r in rs):18.3f} ± {st.stdev(r[f] for r in rs):6.3f}"
                                    for f in FIGURES))
    real = rows[weights[0]][0]["real"]
    print(f"{'real':>5s} " + " ".join(f"{real[f]:18.3f}         " for f in FIGURES) +
          "  (held-out digits of each class)")
    base = rows[weights[0]]
    for w in weights[1:]:
        print(verdict(f"share of the requested class rises, w = {w:g} vs {weights[0]:g}",
                      paired([r["share_requested"] for r in rows[w]], [r["share_requested"] for r in base]), +1))
        print(verdict(f"diversity (nn_within) falls,      w = {w:g} vs {weights[0]:g}",
                      paired([r["nn_within"] for r in rows[w]], [r["nn_within"] for r in base]), -1))
    print(verdict(f"control: share rises, w = {weights[0]:g} (seeds + 100) vs w = {weights[0]:g}",
                  paired([r["share_requested"] for r in control], [r["share_requested"] for r in base]), +1))
    print(verdict(f"control: diversity falls, w = {weights[0]:g} (seeds + 100) vs w = {weights[0]:g}",
                  paired([r["nn_within"] for r in control], [r["nn_within"] for r in base]), -1))
    if args.grid:
        path = save_grid(torch.cat(grid), args.grid, nrow=10)
        print(f"grid: {path} (per w from the top: {', '.join(f'{w:g}' for w in weights)}; 4 rows of classes 0-9 each)")
    if args.json:
        Path(args.json).write_text(json.dumps({"weights": weights, "seeds": seeds, "rows": {str(w): r for w, r in rows.items()},
                                               "control": control}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
