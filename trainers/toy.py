"""The 2D command line: train a score model on a density, sample from it with any sampler, evaluate
it, and run the quality-vs-steps lab.

    python -m trainers.toy train --density eight_gaussians --model mlp --objective ncsn --out run.pt
    python -m trainers.toy sample --ckpt run.pt --sampler ddim --nfe 20 --n 2000 --out samples.npy
    python -m trainers.toy sample --score exact --density two_moons --sampler pf-ode --out s.npy
    python -m trainers.toy evaluate --ckpt run.pt --density eight_gaussians --json
    python -m trainers.toy lab --ckpt run.pt --density eight_gaussians --json
    python -m trainers.toy order --density two_gaussians --sigma-min 0.05 --nfe 10,20,40,80
    python -m trainers.toy reflow --ckpt fm.pt --out fm_reflow.pt --steps 2000 --pairs 10000 --nfe 100
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from . import samplers, schema
from .cli import positive_float, positive_int
from .atomic import atomic_write_bytes, atomic_write_text
from .densities import DensityError, load_density
from .fitting import (CheckpointError, StepInfo, ToyConfig, fisher_per_level, initial_for, load_checkpoint,
                      method_for, noise_levels, save_checkpoint, score_model, sigmas_from_extra,
                      stats_from_extra, train, training_data)
from .studies.convergence import ORDER_NFES, ORDER_SOLVERS, format_order_table, run_order_study
from .studies.lab import NFE_GRID, NULL_DRAWS, format_table, run_lab
from .likelihood import pf_ode_log_density
from .studies.memorisation import memorisation_report
from .studies.reflow import REFLOW_NFE, REFLOW_PAIRS, REFLOW_STEPS, path_straightness, reflow
from .metrics import ddpm_elbo_nats, energy_distance, mode_weight_error
from .methods import METHODS
from .score_models import ExactScore


LAB_SEEDS = 5         # lab repeats per cell: a K-seed mean ± sd instead of one draw
NLL_POINTS = 2000      # points for the PF-ODE likelihood (each costs ~200 forward + backward passes)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line instead of usage + message
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def _sampler_arguments(p, required: bool) -> None:
    """--sampler and every registered sampler's options (trainers.samplers.add_sampler_arguments)."""
    g = p.add_argument_group("sampler options", "each sampler reads its own; from a checkpoint, --variance, "
                             "--n-levels and --n-timesteps default to the checkpoint's")
    g.add_argument("--sampler", choices=list(samplers.SAMPLERS), required=required,
                   help="; ".join(f"{k}: {v.convention}" for k, v in samplers.SAMPLERS.items()))
    samplers.add_sampler_arguments(g)


def _options(a, cfg: ToyConfig | None) -> samplers.SamplerOptions:
    """The checkpoint's method's settings for --sampler (default: its own sampler; its DDPM variance, L and
    T), then the flags the user set."""
    if cfg is None:
        return samplers.SamplerOptions().updated(**samplers.options_from_args(a))
    method = method_for(cfg)
    return method.sampler_defaults(a.sampler or method.natural_sampler).updated(**samplers.options_from_args(a))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m trainers.toy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a score model on a 2D density")
    t.add_argument("--density", required=True, help="preset name or density JSON file")
    t.add_argument("--model", choices=["mlp", "ebm"], default="mlp")
    t.add_argument("--objective", choices=list(METHODS), default=DEFAULT_OBJECTIVE,
                   help=f"training method (default {DEFAULT_OBJECTIVE}: multi-σ denoising score matching, "
                        "whose model every sampler can use); " + "; ".join(f"{k}: {m.title}" for k, m in METHODS.items()))
    schema.add_arguments(t, {k: m.Params for k, m in METHODS.items()})     # each method's parameters
    t.add_argument("--n-data", type=int, default=0,
                   help="train on a fixed set of N points drawn once from the density (0: fresh data every step); "
                        "the points are saved in the checkpoint for `evaluate --train-set`")
    t.add_argument("--width", type=positive_int, default=128)
    t.add_argument("--depth", type=positive_int, default=3)
    t.add_argument("--steps", type=positive_int, default=4000)
    t.add_argument("--batch", type=positive_int, default=512)
    t.add_argument("--lr", type=positive_float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--conditional", action="store_true",
                   help="class-conditional on the density's classes (\"label\"s in its JSON), with label dropout to "
                        "a null class so one network gives s(x|c) and s(x) (methods with noise levels: ncsn, ddpm, …)")
    t.add_argument("--p-uncond", type=float, default=0.1, help="--conditional: probability of dropping a label (default 0.1)")
    t.add_argument("--out", required=True, help="checkpoint path (.pt), written atomically")

    s = sub.add_parser("sample", help="sample with any sampler, from a trained model or the exact score")
    s.add_argument("--ckpt", help="trained checkpoint (not needed with --score exact --density D)")
    s.add_argument("--score", choices=["model", "exact"], default="model",
                   help="drive the sampler with the model or with the exact score of the density")
    s.add_argument("--exact", action="store_true", help="same as --score exact")
    s.add_argument("--density", help="preset or JSON (for --score exact; default: the checkpoint's density)")
    _sampler_arguments(s, required=True)
    s.add_argument("--n", type=positive_int, default=2000)
    s.add_argument("--init", choices=["uniform", "gaussian"], default=None,
                   help="initial particles: the sampler's Gaussian prior (below), or uniform over the density's box "
                        "(default: the sampler's own: " + "".join(f"{v.default_init} for {k}, " for k, v in
                                                                   samplers.SAMPLERS.items() if v.default_init != "gaussian")
                        + "gaussian for the others)")
    g = s.add_argument_group("guidance", "classifier-free guidance (1 + w) s(x|c) − w s(x): w = 0 is the "
                             "conditional model, w = −1 the unconditional one, the 'guidance scale' is 1 + w; "
                             "autoguidance s_good + w (s_good − s_bad) with a weaker checkpoint")
    g.add_argument("--class", dest="cls", help="class index or name (a conditional --ckpt, or --score exact)")
    g.add_argument("--guidance", type=float, default=0.0, help="guidance weight w (default 0)")
    g.add_argument("--guide", choices=["cfg", "auto"], default="cfg", help="cfg (default) or auto (needs --bad-ckpt)")
    g.add_argument("--bad-ckpt", help="the weaker model of autoguidance (a smaller or earlier checkpoint)")
    s.add_argument("--start", choices=["prior", "exact"], default="prior",
                   help="the Gaussian start: prior = N(m, C + σ_max² I), matched to p_σmax in mean and covariance "
                        "(docs/math.md §10.1); exact = exact draws of p_σmax (exact score only: no prior mismatch)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True,
                   help="samples of shape (N, 2): .npy (float32), or .txt / .csv (text, one 'x y' / 'x,y' per line)")

    e = sub.add_parser("evaluate", help="Fisher divergence per noise level and sample metrics")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--density", required=True, help="preset name or density JSON file")
    _sampler_arguments(e, required=False)
    e.add_argument("--n", type=positive_int, default=2000)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--nll", action="store_true",
                   help="also the model's negative log-likelihood of fresh data by the PF-ODE (nats), beside the "
                        "true value of p_σmin (the floor no model can beat)")
    e.add_argument("--train-set", action="store_true",
                   help="memorisation figures against the checkpoint's fixed training set (train --n-data N)")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    lab = sub.add_parser("lab", help="sample quality against NFE for each sampler: discretisation, prior and model "
                                     "error, mean ± sd over seeds")
    lab.add_argument("--ckpt", help="trained checkpoint (without it: the exact score only)")
    lab.add_argument("--density", help="preset or JSON (default: the checkpoint's density)")
    lab.add_argument("--samplers", default=",".join(samplers.SAMPLERS), help="comma-separated registry names")
    samplers.add_sampler_arguments(lab, skip=("steps", "nfe"))      # the lab sets each cell's NFE
    lab.add_argument("--nfe", default=",".join(map(str, NFE_GRID)), help="comma-separated NFE budgets")
    lab.add_argument("--n", type=positive_int, default=2000)
    lab.add_argument("--seed", type=int, default=0, help="base seed (the K seeds derive from it)")
    lab.add_argument("--seeds", type=positive_int, default=LAB_SEEDS,
                     help=f"repeats K of every cell, each with fresh particles, noise and reference (default {LAB_SEEDS})")
    lab.add_argument("--null-draws", type=positive_int, default=NULL_DRAWS,
                     help=f"exact samples per seed behind the 95%% threshold (default {NULL_DRAWS})")
    lab.add_argument("--model-exact-start", action="store_true",
                     help="also run the model from exact draws of p_σmax (source model·exact-start)")
    lab.add_argument("--csv", help="also write the table as CSV (atomically)")
    lab.add_argument("--json", action="store_true", help="print one JSON object")

    o = sub.add_parser("order", help="order of convergence of the deterministic solvers: per-particle distance to a "
                                     "converged solve from the same start against NFE, fitted log-log slope")
    o.add_argument("--ckpt", help="trained checkpoint (without it: the exact score of --density)")
    o.add_argument("--density", help="preset or JSON (default: the checkpoint's density)")
    o.add_argument("--solvers", default=",".join(ORDER_SOLVERS), help="comma-separated, of " + ", ".join(
        f"{k} ({v[0]}{''.join(f' {a}={b}' for a, b in v[1].items())})" for k, v in ORDER_SOLVERS.items()))
    o.add_argument("--nfe", default=",".join(map(str, ORDER_NFES)), help="comma-separated NFE budgets")
    o.add_argument("--sigma-max", type=positive_float, help="largest σ (default: the model's)")
    o.add_argument("--sigma-min", type=positive_float, help="smallest σ before the last step to 0 (default: the model's)")
    o.add_argument("--grid", choices=["karras", "geometric"], default=None, help="σ grid of every solver (default karras)")
    o.add_argument("--n", type=positive_int, default=500)
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--seeds", type=positive_int, default=3)
    o.add_argument("--json", action="store_true", help="print one JSON object")

    r = sub.add_parser("reflow", help="rectified flow: pairs (z, ODE(z)) from a flow-matching model's own flow ODE, "
                                      "then a model trained on them (starting from its weights)")
    r.add_argument("--ckpt", required=True, help="a flow-matching checkpoint (train --objective fm)")
    r.add_argument("--out", required=True, help="the reflowed checkpoint (.pt), written atomically")
    r.add_argument("--steps", type=positive_int, default=REFLOW_STEPS, help=f"training steps (default {REFLOW_STEPS})")
    r.add_argument("--pairs", type=positive_int, default=REFLOW_PAIRS,
                   help=f"coupled pairs drawn with the model's ODE (default {REFLOW_PAIRS})")
    r.add_argument("--nfe", type=positive_int, default=REFLOW_NFE,
                   help=f"network evaluations of each pair's ODE (Heun; default {REFLOW_NFE})")
    r.add_argument("--seed", type=int, default=None, help="default: the checkpoint's seed")
    return p


def cmd_train(a) -> None:
    from tqdm import tqdm

    density = load_density(a.density)
    if a.conditional and not density.labelled:
        raise DensityError(f"{a.density} has no classes: give its components \"label\"s (or a preset with classes)")
    cfg = ToyConfig(density=a.density, model=a.model, objective=a.objective, width=a.width, depth=a.depth,
                    n_classes=density.n_classes if a.conditional else 0, p_uncond=a.p_uncond,
                    lr=a.lr, batch=a.batch, steps=a.steps, seed=a.seed, n_data=a.n_data, **_method_settings(a))
    sigmas = noise_levels(cfg, density)
    cfg.sigma_max = float(sigmas[0])     # store the resolved σ₁ so sampling uses the same levels
    bar = tqdm(total=cfg.steps, desc=f"{cfg.objective} on {density.name or a.density}", unit="step", mininterval=0.5)

    def progress(info: StepInfo):
        bar.update(1)
        if info.step % 50 == 0:
            bar.set_postfix(loss=f"{info.loss:.4f}")

    start = time.perf_counter()
    model, losses = train(cfg, density, progress)
    bar.close()
    extra = {"sigmas": sigmas.tolist(), "final_loss": float(np.mean(losses[-50:])),
             "train_seconds": time.perf_counter() - start}
    train_points = training_data(cfg, density)[1]
    if train_points is not None:
        extra["train_points"] = train_points.tolist()
    save_checkpoint(a.out, model, cfg, density, extra)
    print(f"saved {a.out} (final loss {np.mean(losses[-50:]):.4f})")


def _method_settings(a) -> dict:
    """The methods' parameters set on the command line, as ToyConfig keywords: a ToyConfig field by its
    name, any other (a method's own, new parameter) in `extra`; unset ones keep ToyConfig's defaults."""
    names = [s.name for m in METHODS.values() for s in schema.specs(m.Params) if s.cli]
    values = schema.values_from_args(a, dict.fromkeys(names))
    own = {f.name for f in fields(ToyConfig)}
    return {**{k: v for k, v in values.items() if k in own},
            "extra": {k: v for k, v in values.items() if k not in own}}


def _score_source(a, exact: bool):
    """(score model, density, cfg or None) for --ckpt / --score exact / --density."""
    density = load_density(a.density) if a.density else None
    if not a.ckpt:
        if not (exact and density is not None):
            raise ValueError("give --ckpt, or --score exact with --density D")
        return ExactScore(density), density, None
    model, cfg, ckpt_density, extra = load_checkpoint(a.ckpt)
    density = density or ckpt_density
    if exact and density is None:
        raise DensityError("this checkpoint holds no density, so the exact score needs --density")
    sigmas = sigmas_from_extra(extra)
    if sigmas is None:
        sigmas = noise_levels(cfg, density)
    return score_model(None if exact else model, cfg, density, sigmas, stats_from_extra(extra)), density, cfg


def _note(sm, sampler) -> str:
    note = sm.range_note(sampler.sigmas_used())
    if note:
        sys.stderr.write(f"note: {note}\n")
    return note


SAMPLE_SUFFIXES = {".npy": "binary float32", ".txt": "text, space-separated", ".csv": "text, comma-separated"}
DEFAULT_OBJECTIVE = "ncsn"


def out_problem(path: str) -> str:
    """'' when `path`'s suffix names a samples format (SAMPLE_SUFFIXES), else the one-line reason."""
    suffix = Path(path).suffix.lower()
    if suffix in SAMPLE_SUFFIXES:
        return ""
    return (f"--out {path}: unknown file type {suffix or '(none)'!r}; use .npy (float32 (N, 2)), "
            ".txt or .csv (text, one sample per line)")


def save_samples(x: np.ndarray, path: str) -> None:
    """(N, 2) samples to `path`, atomically, in the format its suffix names (SAMPLE_SUFFIXES)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, np.asarray(x, dtype=np.float32))
        atomic_write_bytes(path, buf.getvalue())
        return
    if suffix not in SAMPLE_SUFFIXES:
        raise ValueError(out_problem(path))
    text = io.StringIO()
    np.savetxt(text, np.asarray(x, dtype=np.float64), fmt="%.7g", delimiter="," if suffix == ".csv" else " ")
    atomic_write_text(path, text.getvalue())


def cmd_sample(a) -> None:
    sm, density, cfg = _score_source(a, a.exact or a.score == "exact")
    if a.cls is not None or a.guide == "auto" or a.bad_ckpt:
        from .conditional import sampling_score
        sm = sampling_score(a.ckpt, load_density(a.density) if a.density else None, a.exact or a.score == "exact",
                            a.cls, a.guidance, a.guide, a.bad_ckpt)
    elif a.guidance:
        raise ValueError("--guidance needs --class K (classifier-free guidance) or --guide auto --bad-ckpt B.pt")
    sampler = samplers.build_sampler(a.sampler, sm, _options(a, cfg))
    _note(sm, sampler)
    gen = torch.Generator().manual_seed(a.seed)
    if a.start == "exact" and not isinstance(sm, ExactScore):
        raise ValueError("--start exact draws p_σmax exactly, which needs the exact score (--score exact)")
    if a.start == "exact" and a.init == "uniform":
        raise ValueError("--start exact draws p_σmax itself: it cannot start from --init uniform")
    init = a.init or (sampler.default_init if a.start != "exact" else "gaussian")
    bounds = density.plot_bounds() if density is not None else (-4, 4, -4, 4)
    x = sampler.run(initial_for(sampler, a.n, init, bounds, gen, a.start), gen).x
    save_samples(x.numpy(), a.out)
    print(f"saved {a.n} samples to {a.out} ({sampler.title}, {sampler.nfe} network evaluations)")


def evaluate(ckpt: str, density_spec: str, n: int = 2000, seed: int = 0, sampler: str | None = None,
             options: samplers.SamplerOptions | None = None, nll: bool = False, train_set: bool = False) -> dict:
    """Fisher divergence per level and the sample quality of `sampler` (default: the model's own)."""
    model, cfg, _, ckpt_extra = load_checkpoint(ckpt)
    density = load_density(density_spec)
    sigmas = sigmas_from_extra(ckpt_extra)
    if sigmas is None:
        sigmas = noise_levels(cfg, density)
    gen = torch.Generator().manual_seed(seed)
    method = method_for(cfg, density, sigmas)
    name = sampler or method.natural_sampler
    sm = score_model(model, cfg, density, sigmas, stats_from_extra(ckpt_extra))
    options = options or method.sampler_defaults(name)
    smp = samplers.build_sampler(name, sm, options)
    x = smp.run(initial_for(smp, n, smp.default_init, density.plot_bounds(), gen), gen).x
    ref, ref2 = density.sample(n, gen), density.sample(n, gen)
    extra = {}
    if train_set:
        if not ckpt_extra.get("train_points"):
            raise ValueError(f"{ckpt} was trained on fresh data every step (no fixed training set): "
                             "train with --n-data N to measure memorisation")
        points = torch.tensor(ckpt_extra["train_points"], dtype=torch.float32)
        extra["memorisation"] = memorisation_report(x, points, ref, sm.sigma_min)
    if nll:
        # fresh points of p_σmin, σ_min the model's smallest level (its density is only defined there)
        noised = density.noised(sm.sigma_min)
        y = noised.sample(min(n, NLL_POINTS), gen)
        extra.update(nll_sigma=sm.sigma_min, nll_model=float(-pf_ode_log_density(sm, y).mean()),
                     nll_true=float(-noised.log_prob(y.double()).mean()))
        if method.schedule() is not None:
            # the DDPM bound, on clean data: −ELBO ≥ NLL of p_data (the model's, so ≥ the true one too)
            x0 = density.sample(min(n, NLL_POINTS), gen)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                elbo = ddpm_elbo_nats(lambda x, t: model(x, t), method.schedule(), x0, cfg.ddpm_variance)
            extra.update(neg_elbo_nats=elbo["elbo_nats"], neg_elbo_decoder_variance=elbo["decoder_variance"],
                         nll_true_data=float(-density.log_prob(x0.double()).mean()))
    if method.natural_sampler == "flow":       # a flow model: how straight its own ODE paths are (Liu et al.)
        extra.update(path_straightness(sm, min(n, 1000), seed=seed))
    return {**extra,
        "objective": cfg.objective, "model": cfg.model, "sampler": name, "n": n, "nfe": smp.nfe,
        "note": sm.range_note(smp.sigmas_used()),
        "fisher": fisher_per_level(model, cfg, density, sigmas, n, seed),
        "energy_distance": energy_distance(x, ref),
        "energy_distance_reference": energy_distance(ref2, ref),
        "mode_weight_error": mode_weight_error(x, density),
        "mode_weight_error_reference": mode_weight_error(ref2, density),
    }


def cmd_evaluate(a) -> None:
    cfg = load_checkpoint(a.ckpt)[1]
    result = evaluate(a.ckpt, a.density, a.n, a.seed, a.sampler, _options(a, cfg), a.nll, a.train_set)
    if result["note"]:
        sys.stderr.write(f"note: {result['note']}\n")
    if a.json:
        print(json.dumps(result))
        return
    print(f"{result['objective']} ({result['model']}), sampled with {result['sampler']} "
          f"({result['nfe']} evaluations), n = {result['n']}")
    for row in result["fisher"]:
        level = f"σ = {row['sigma']:.4g}" if "sigma" in row else f"t = {row['t'] + 1}"
        print(f"  Fisher divergence at {level:>14}: {row['fisher']:.4g}")
    print(f"  energy distance  {result['energy_distance']:.4g}  (a fresh exact sample: {result['energy_distance_reference']:.4g})")
    print(f"  mode-weight TV   {result['mode_weight_error']:.4g}  (a fresh exact sample: {result['mode_weight_error_reference']:.4g})")
    if "memorisation" in result:
        m = result["memorisation"]
        print(f"  memorisation: {m['share_near_training']:.1%} of samples within {m['threshold']:.3g} of a training "
              f"point (fresh data: {m['share_near_training_fresh']:.1%}); median distance to the nearest "
              f"training point {m['median_nn_distance']:.3g} (fresh data: {m['median_nn_distance_fresh']:.3g})")
    if "nll_model" in result:
        print(f"  NLL at σ = {result['nll_sigma']:.3g} by the PF-ODE  {result['nll_model']:.4f} nats  "
              f"(true: {result['nll_true']:.4f})")
    if "neg_elbo_nats" in result:
        dec = {"beta1": "β₁", "reference": "β̃₂"}.get(result.get("neg_elbo_decoder_variance"), "custom")
        print(f"  −ELBO of clean data  {result['neg_elbo_nats']:.4f} nats  (decoder variance {dec}; an upper bound "
              f"on the NLL; the true NLL of p: {result['nll_true_data']:.4f})")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"expected comma-separated positive integers, got {text!r}")
    return values


def cmd_lab(a) -> None:
    if a.ckpt:
        model, cfg, ckpt_density, extra = load_checkpoint(a.ckpt)
        density = load_density(a.density) if a.density else ckpt_density
        if density is None:
            raise DensityError("this checkpoint holds no density: pass --density")
        sigmas = sigmas_from_extra(extra)
        if sigmas is None:
            sigmas = noise_levels(cfg, density)
        model_sm = score_model(model, cfg, density, sigmas, stats_from_extra(extra))     # its data's moments: its start
        exact_sm = score_model(None, cfg, density, sigmas)
        defaults = method_for(cfg, density, sigmas).sampler_defaults        # the method's L, T and variance
    else:
        if not a.density:
            raise ValueError("give --ckpt, or --density for an exact-score-only lab")
        density = load_density(a.density)
        model_sm, exact_sm = None, ExactScore(density)
        defaults = lambda name: samplers.SamplerOptions()          # noqa: E731
    flags = samplers.options_from_args(a, skip=("steps", "nfe"))
    names = [s.strip() for s in a.samplers.split(",") if s.strip()]
    options = {s: defaults(s).updated(**flags) for s in names}
    result = run_lab(density, model_sm, exact_sm, names, _int_list(a.nfe), options,
                     n=a.n, seed=a.seed, seeds=a.seeds, null_draws=a.null_draws,
                     model_exact_start=a.model_exact_start)
    if a.csv:
        atomic_write_text(a.csv, result.to_csv())
    if a.json:
        print(json.dumps(result.to_dict()))
    else:
        print(format_table(result))
        print(f"({result.seconds:.1f} s)")


def cmd_order(a) -> None:
    if a.ckpt:
        model, cfg, ckpt_density, extra = load_checkpoint(a.ckpt)
        density = load_density(a.density) if a.density else ckpt_density
        sigmas = sigmas_from_extra(extra)
        if sigmas is None:
            if density is None:
                raise DensityError("this checkpoint holds no density: pass --density")
            sigmas = noise_levels(cfg, density)
        sm = score_model(model, cfg, density, sigmas, stats_from_extra(extra))
    elif a.density:
        sm = ExactScore(load_density(a.density))
    else:
        raise ValueError("give --ckpt, or --density for the exact score")
    options = {"sigma_max": a.sigma_max, "sigma_min": a.sigma_min, "grid": a.grid}
    names = [s.strip() for s in a.solvers.split(",") if s.strip()]
    result = run_order_study(sm, names, _int_list(a.nfe), n=a.n, seeds=a.seeds, seed=a.seed, options=options)
    print(json.dumps(result.to_dict()) if a.json else format_order_table(result))


def cmd_reflow(a) -> None:
    model, cfg, density, extra = load_checkpoint(a.ckpt)
    start = time.perf_counter()
    net, new_cfg, info = reflow(model, cfg, density, a.steps, a.pairs, a.nfe, a.seed, stats=stats_from_extra(extra))
    rounds = int(extra.get("reflow", {}).get("rounds", 0)) + 1
    keep = {k: extra[k] for k in ("sigmas", "data_stats", "train_points") if k in extra}
    save_checkpoint(a.out, net, new_cfg, density, {**keep, "final_loss": info["final_loss"],
                                                     "train_seconds": time.perf_counter() - start,
                                                     "reflow": {**info, "rounds": rounds, "from": str(a.ckpt)}})
    print(f"saved {a.out} (reflow round {rounds}: {a.pairs} pairs at {a.nfe} NFE, {a.steps} steps, "
          f"final loss {info['final_loss']:.4f})")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sample" and out_problem(args.out):       # before any work, as the image CLI does
        sys.stderr.write(f"error: {out_problem(args.out)}\n")
        return 2
    # Small 2D nets gain nothing from intra-op threads and lose a lot when cores are shared.
    torch.set_num_threads(1)
    try:
        {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "lab": cmd_lab,
         "order": cmd_order, "reflow": cmd_reflow}[args.command](args)
    except (DensityError, CheckpointError, samplers.DivergenceError, FloatingPointError, ValueError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
