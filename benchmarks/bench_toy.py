"""2D training and sampling speed on this CPU.

    python benchmarks/bench_toy.py [--threads 1] [--steps 1500]

Prints training steps/s (DSM, width-128 depth-3 MLP, batch 512) for our shared training-step
generator next to a plain hand-written PyTorch loop of the same network and loss, and sampler
particle-evaluations/s (particles × network evaluations per second) at 10k particles for every
registry sampler with the same MLP.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import nn

from trainers import samplers
from trainers.densities import preset
from trainers.fitting import ToyConfig, build_model_and_method, build_network, score_model, training_steps
from trainers.score_models import ExactScore


def ours(density):
    """Our path: ToyConfig → model + its training method → the shared training_steps generator."""
    cfg = ToyConfig(objective="dsm", sigma=0.1, width=128, depth=3, batch=512)
    model, method = build_model_and_method(cfg, density)
    gen = torch.Generator().manual_seed(0)
    it = training_steps(model, method, lambda n: density.sample(n, gen), cfg.lr, cfg.batch)
    return lambda: next(it)


def plain_loop(density):
    """The baseline: the same MLP and DSM loss, written directly."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(),
                        nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 2))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    sigma = 0.1

    def one():
        x = density.sample(512, gen)
        z = torch.randn(x.shape, generator=gen)
        loss = (0.5 * ((net(x + sigma * z) + z / sigma) ** 2).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return one


def steps_per_second(step, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - t)


def compare_training(density, steps: int, rounds: int = 5):
    """Alternate short rounds of both loops so background load hits them alike; report medians."""
    a, b = ours(density), plain_loop(density)
    steps_per_second(a, 50), steps_per_second(b, 50)          # warm-up
    ra, rb = [], []
    for _ in range(rounds):
        ra.append(steps_per_second(a, steps // rounds))
        rb.append(steps_per_second(b, steps // rounds))
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return med(ra), med(rb), med([x / y for x, y in zip(ra, rb)])


@torch.no_grad()
def sampler_rate(sampler: samplers.Sampler, x: torch.Tensor, steps: int) -> float:
    sampler.step(x, 0)
    t = time.perf_counter()
    for k in range(steps):
        x = sampler.step(x, k).x
    return steps * len(x) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--particles", type=int, default=10_000)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    density = preset("eight_gaussians")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {a.threads} thread(s)")
    r_ours, r_plain, ratio = compare_training(density, a.steps)
    print(f"training (DSM, MLP 128x3, batch 512): ours {r_ours:,.0f} steps/s ({r_ours * 60:,.0f}/min), "
          f"plain PyTorch loop {r_plain:,.0f} steps/s, ratio {ratio:.2f} (median of interleaved rounds)")

    torch.manual_seed(0)
    n = a.particles
    x = torch.randn(n, 2)
    models = {}
    for objective in ("dsm", "ncsn", "ddpm"):
        cfg = ToyConfig(objective=objective, sigma_max=8.0)
        models[objective] = score_model(build_network(cfg), cfg, density)
    exact = ExactScore(density, 0.05, 8.0)
    # every registry sampler at 100 evaluations, on the model its family was trained with, and on the exact score
    plan = [("langevin", "dsm"), ("annealed", "ncsn"), ("ddpm", "ddpm"), ("ddim", "ddpm"), ("pf-ode", "ddpm"),
            ("pc", "ncsn")]
    rates = {}
    for name, objective in plan:
        sampler = samplers.build_sampler(name, models[objective], nfe=100)
        rates[f"{name} ({objective} MLP)"] = sampler_rate(sampler, x, sampler.n_steps) * sampler.nfe / sampler.n_steps
    rates["langevin (exact score, 8 components)"] = sampler_rate(samplers.build_sampler("langevin", exact, steps=100), x, 100)
    for name, r in rates.items():
        print(f"sampling {name}, {n:,} particles: {r / 1e6:.2f} M particle-evaluations/s ({r / n:,.0f} NFE/s)")


if __name__ == "__main__":
    main()
