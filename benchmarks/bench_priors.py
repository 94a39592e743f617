"""Prior mismatch, old against new (issue #19; docs/math.md §10.1), over seeds.

    python benchmarks/bench_priors.py [--seeds 10] [--n 2000] [--nfe 50] [--json]

On three anisotropic modes weighted 0.6 / 0.3 / 0.1 near the origin, the same moved by (8, −6), and
the two_gaussians preset (the one where the rule asks for a larger σ_max than the old one):

1. σ_max by the old rule (largest pairwise distance of 2000 samples) and by the new one
   (priors.sigma_max_for), with KL(p_σmax ‖ N(m, C + σ_max²I)) and its Pinsker bound on TV.
2. The exact-score DDIM (η = 0), PF-ODE (Heun) and DDPM samplers with the CLI defaults at `--nfe`:
   mode weights (mean ± sd over seeds) and mode-weight TV, from three starts — "old" (old σ_max,
   N(0, σ_max²I)), "matched" (the rule's σ_max, N(m, C + σ_max²I)) and "exact" (the rule's σ_max,
   exact draws of p_σmax: no prior mismatch at all) — beside exact samples of the same size and the
   95 % / 99 % quantiles of the mean TV of `--seeds` exact samples (the "within sampling noise" line).
3. The exact-score PF-ODE log-density at its defaults (100 Heun steps, σ from 0.01 to the rule's σ_max)
   against the closed form on 200 fresh points of p_σmin per seed: mean error and worst point,
   closed with the exact p_σmax (the exact score's default), the matched Gaussian, and the legacy
   N(0, σ_max²I).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import describe  # noqa: E402
from trainers import priors, samplers  # noqa: E402
from trainers.densities import GaussianMixture, preset  # noqa: E402
from trainers.likelihood import pf_ode_log_density  # noqa: E402
from trainers.metrics import mode_weight_error, mode_weights  # noqa: E402
from trainers.score_models import ExactScore, ScoreFunction  # noqa: E402

SAMPLERS = ("ddim", "pf-ode", "ddpm")
STARTS = ("old", "matched", "exact")


def three_modes(shift=(0.0, 0.0)) -> GaussianMixture:
    means = np.array([[-2.0, 0.5], [1.5, 1.5], [0.5, -2.0]]) + np.asarray(shift)
    covs = np.array([[[0.5, 0.3], [0.3, 0.3]], [[0.2, -0.1], [-0.1, 0.6]], [[0.4, 0.0], [0.0, 0.1]]])
    return GaussianMixture([0.6, 0.3, 0.1], means, covs, "three_modes")


def densities() -> dict[str, GaussianMixture]:
    return {"three modes, centred": three_modes(), "three modes + (8, -6)": three_modes((8.0, -6.0)),
            "two_gaussians": preset("two_gaussians")}


def old_sigma_max(d: GaussianMixture) -> float:
    x = d.sample(2000, torch.Generator().manual_seed(0))
    return float(torch.cdist(x, x).max())


def ms(values) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.4f}"


def run_samplers(d, seeds: int, n: int, nfe: int) -> dict:
    new = ExactScore(d)
    old = ExactScore(d, sigma_max=old_sigma_max(d))
    old.data_mean = old.data_cov = None
    out = {}
    for name in SAMPLERS:
        for start in STARTS:
            tv, w = [], []
            for seed in range(seeds):
                sampler = samplers.build_sampler(name, old if start == "old" else new, samplers.SamplerOptions(nfe=nfe))
                g = torch.Generator().manual_seed(seed)
                z = torch.randn(n, 2, generator=g)
                x0 = samplers.exact_prior_sample(sampler, n, g) if start == "exact" else samplers.prior_sample(sampler, z)
                x = sampler.run(x0, g).x
                tv.append(mode_weight_error(x, d))
                w.append(mode_weights(x, d).tolist())
            out[f"{name}/{start}"] = {"tv": tv, "weights": w}
    gen = torch.Generator().manual_seed(10_000)
    null = [mode_weight_error(d.sample(n, gen), d) for _ in range(200 * seeds)]
    means = np.asarray(null).reshape(200, seeds).mean(1)
    out["exact samples"] = {"tv": null[:seeds], "weights": None,
                            "q95_mean_of_seeds": float(np.quantile(means, 0.95)),
                            "q99_mean_of_seeds": float(np.quantile(means, 0.99)),
                            "tv_mean_all": float(np.mean(null)), "tv_sd_all": float(np.std(null, ddof=1))}
    return out


def run_likelihood(d, seeds: int, points: int = 200) -> dict:
    exact = ExactScore(d)
    fn = ScoreFunction(lambda y, s: exact.score_with_grad(y, s), exact.sigma_min, exact.sigma_max)
    noised = d.noised(exact.sigma_min)
    out = {k: {"mean": [], "worst": []} for k in ("exact p_σmax", "matched Gaussian", "legacy N(0, σ²I)")}
    for seed in range(seeds):
        y = noised.sample(points, torch.Generator().manual_seed(100 + seed))
        true = noised.log_prob(y.double(), exact=True)
        for key in out:
            if key == "exact p_σmax":
                model = exact
            elif key == "matched Gaussian":
                model = fn.with_data_stats(d.mean(), cov=d.covariance())
            else:
                fn.data_mean = fn.data_cov = None
                model = fn
            err = pf_ode_log_density(model, y) - true
            out[key]["mean"].append(float(err.mean()))
            out[key]["worst"].append(float(err.abs().max()))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--nfe", type=int, default=50)
    p.add_argument("--likelihood-seeds", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    report = {}
    if not a.json:
        print(describe("bench_priors"))
        print(f"# seeds 0..{a.seeds - 1}, n = {a.n}, NFE = {a.nfe}; figures are mean ± sd over seeds")
    for label, d in densities().items():
        t0 = time.perf_counter()
        rule = priors.sigma_max_for(d)
        t_rule = time.perf_counter() - t0
        old = old_sigma_max(d)
        r = {"sigma_max_old": old, "sigma_max_rule": rule, "rule_ms": 1e3 * t_rule,
             "kl_old_sigma_matched": priors.prior_kl(d, old), "kl_rule": priors.prior_kl(d, rule),
             "mean": d.mean().tolist()}
        r["samplers"] = run_samplers(d, a.seeds, a.n, a.nfe)
        r["likelihood"] = run_likelihood(d, a.likelihood_seeds)
        report[label] = r
        if a.json:
            continue
        print(f"\n## {label}: weights {np.round(d.weights.numpy(), 3).tolist()}, mean {np.round(r['mean'], 2).tolist()}")
        print(f"σ_max: old rule {old:.2f}, new rule {rule:.2f} ({r['rule_ms']:.1f} ms); KL(p_σmax ‖ matched) at the "
              f"rule {r['kl_rule']:.2e} (TV ≤ {priors.kl_bound_tv(r['kl_rule']):.4f})")
        s = r["samplers"]
        null = s["exact samples"]
        print(f"exact samples of {a.n}: TV {null['tv_mean_all']:.4f} ± {null['tv_sd_all']:.4f}; mean of {a.seeds} "
              f"exact TVs: 95 % quantile {null['q95_mean_of_seeds']:.4f}, 99 % {null['q99_mean_of_seeds']:.4f}")
        print(f"{'sampler/start':18s} {'mode-weight TV':>18s}   mode weights (mean ± sd)")
        for key, v in s.items():
            if key == "exact samples":
                continue
            w = np.asarray(v["weights"])
            ws = "  ".join(f"{m:.3f}±{sd:.3f}" for m, sd in zip(w.mean(0), w.std(0, ddof=1)))
            flag = "within" if np.mean(v["tv"]) < null["q99_mean_of_seeds"] else "OUTSIDE"
            print(f"{key:18s} {ms(v['tv']):>18s}   {ws}   ({flag} sampling noise)")
        print(f"PF-ODE log-density − closed form ({a.likelihood_seeds} seeds × 200 points of p_σmin):")
        for key, v in r["likelihood"].items():
            print(f"  closed with {key:18s} mean {ms(v['mean'])}, worst point {ms(v['worst'])} "
                  f"(max {max(v['worst']):.4f})")
    if a.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
