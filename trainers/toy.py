"""The 2D command line: train a score model on a density, sample from it, evaluate it.

    python -m trainers.toy train --density eight_gaussians --model mlp --objective ncsn --out run.pt
    python -m trainers.toy sample --ckpt run.pt --sampler annealed --n 2000 --out samples.npy
    python -m trainers.toy evaluate --ckpt run.pt --density eight_gaussians --json
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time

import numpy as np
import torch

from . import samplers as S
from .atomic import atomic_write_bytes
from .densities import DensityError, load_density
from .fitting import (SAMPLERS, CheckpointError, ToyConfig, StepInfo, fisher_per_level, load_checkpoint,
                      make_sampler, natural_sampler, noise_levels, save_checkpoint, sigmas_from_extra, train)
from .metrics import energy_distance, mode_weight_error
from .objectives import OBJECTIVES


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line instead of usage + message
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def _positive_int(v: str) -> int:
    i = int(v)
    if i < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return i


def _positive_float(v: str) -> float:
    f = float(v)
    if not f > 0 or not np.isfinite(f):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {v}")
    return f


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m trainers.toy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a score model on a 2D density")
    t.add_argument("--density", required=True, help="preset name or density JSON file")
    t.add_argument("--model", choices=["mlp", "ebm"], default="mlp")
    t.add_argument("--objective", choices=list(OBJECTIVES), required=True)
    t.add_argument("--sigma", type=_positive_float, default=0.1, help="DSM noise level σ")
    t.add_argument("--sigma-max", type=float, default=0.0, help="NCSN σ₁ (0: largest pairwise data distance)")
    t.add_argument("--sigma-min", type=_positive_float, default=0.05, help="NCSN σ_L")
    t.add_argument("--levels", type=_positive_int, default=10, help="NCSN number of noise levels L")
    t.add_argument("--schedule", choices=["linear", "cosine"], default="linear", help="DDPM β schedule")
    t.add_argument("--timesteps", type=_positive_int, default=1000, help="DDPM T")
    t.add_argument("--width", type=_positive_int, default=128)
    t.add_argument("--depth", type=_positive_int, default=3)
    t.add_argument("--steps", type=_positive_int, default=4000)
    t.add_argument("--batch", type=_positive_int, default=512)
    t.add_argument("--lr", type=_positive_float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="checkpoint path (.pt), written atomically")

    s = sub.add_parser("sample", help="sample from a trained model")
    s.add_argument("--ckpt", required=True)
    s.add_argument("--sampler", choices=SAMPLERS, required=True)
    s.add_argument("--n", type=_positive_int, default=2000)
    s.add_argument("--steps", type=_positive_int, default=None,
                   help="Langevin: total steps (1000); annealed: steps per level T (100); ignored by DDPM")
    s.add_argument("--eps", type=_positive_float, default=None,
                   help="Langevin ε (x + ε s + √(2ε) z; default 0.01) or annealed ε (αᵢ = ε σᵢ²/σ_L²; default 0.1 σ_L²)")
    s.add_argument("--init", choices=["uniform", "gaussian"], default=None,
                   help="initial particles (default: gaussian for DDPM, uniform over the density's box otherwise)")
    s.add_argument("--exact", action="store_true", help="use the exact score of the checkpoint's density instead of the model")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="samples .npy of shape (N, 2)")

    e = sub.add_parser("evaluate", help="Fisher divergence per noise level and sample metrics")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--density", required=True, help="preset name or density JSON file")
    e.add_argument("--n", type=_positive_int, default=2000)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def cmd_train(a) -> None:
    from tqdm import tqdm

    density = load_density(a.density)
    cfg = ToyConfig(density=a.density, model=a.model, objective=a.objective, width=a.width, depth=a.depth,
                    lr=a.lr, batch=a.batch, steps=a.steps, seed=a.seed, sigma=a.sigma, sigma_max=a.sigma_max,
                    sigma_min=a.sigma_min, n_levels=a.levels, schedule=a.schedule, n_timesteps=a.timesteps)
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
    save_checkpoint(a.out, model, cfg, density,
                    {"sigmas": sigmas.tolist(), "final_loss": float(np.mean(losses[-50:])),
                     "train_seconds": time.perf_counter() - start})
    print(f"saved {a.out} (final loss {np.mean(losses[-50:]):.4f})")


def cmd_sample(a) -> None:
    model, cfg, density, extra = load_checkpoint(a.ckpt)
    sigmas = sigmas_from_extra(extra)
    if a.exact and density is None:
        raise DensityError("this checkpoint holds no density, so --exact has no score to use")
    sampler = make_sampler(a.sampler, cfg, None if a.exact else model, density, sigmas, a.eps, a.steps)
    gen = torch.Generator().manual_seed(a.seed)
    init = a.init or ("gaussian" if a.sampler == "ddpm" else "uniform")
    bounds = density.plot_bounds() if density is not None else (-4, 4, -4, 4)
    x0 = S.initial_particles(a.n, init, bounds, gen)
    x = sampler.run(x0, gen).x
    buf = io.BytesIO()
    np.save(buf, x.numpy().astype(np.float32))
    atomic_write_bytes(a.out, buf.getvalue())
    print(f"saved {a.n} samples to {a.out}")


def evaluate(ckpt: str, density_spec: str, n: int = 2000, seed: int = 0) -> dict:
    model, cfg, _, extra = load_checkpoint(ckpt)
    density = load_density(density_spec)
    sigmas = sigmas_from_extra(extra)
    if sigmas is None:
        sigmas = noise_levels(cfg, density)
    gen = torch.Generator().manual_seed(seed)
    name = natural_sampler(cfg)
    sampler = make_sampler(name, cfg, model, density, sigmas)
    x0 = S.initial_particles(n, "gaussian" if name == "ddpm" else "uniform", density.plot_bounds(), gen)
    x = sampler.run(x0, gen).x
    ref, ref2 = density.sample(n, gen), density.sample(n, gen)
    return {
        "objective": cfg.objective, "model": cfg.model, "sampler": name, "n": n,
        "fisher": fisher_per_level(model, cfg, density, sigmas, n, seed),
        "energy_distance": energy_distance(x, ref),
        "energy_distance_reference": energy_distance(ref2, ref),
        "mode_weight_error": mode_weight_error(x, density),
        "mode_weight_error_reference": mode_weight_error(ref2, density),
    }


def cmd_evaluate(a) -> None:
    result = evaluate(a.ckpt, a.density, a.n, a.seed)
    if a.json:
        print(json.dumps(result))
        return
    print(f"{result['objective']} ({result['model']}), sampled with {result['sampler']}, n = {result['n']}")
    for row in result["fisher"]:
        level = f"σ = {row['sigma']:.4g}" if "sigma" in row else f"t = {row['t'] + 1}"
        print(f"  Fisher divergence at {level:>14}: {row['fisher']:.4g}")
    print(f"  energy distance  {result['energy_distance']:.4g}  (a fresh exact sample: {result['energy_distance_reference']:.4g})")
    print(f"  mode-weight TV   {result['mode_weight_error']:.4g}  (a fresh exact sample: {result['mode_weight_error_reference']:.4g})")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Small 2D nets gain nothing from intra-op threads and lose a lot when cores are shared.
    torch.set_num_threads(1)
    try:
        {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate}[args.command](args)
    except (DensityError, CheckpointError, S.DivergenceError, FloatingPointError, ValueError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
