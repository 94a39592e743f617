"""What differs between DDPM and NCSN, in one place: the loss, the sampler, the initial noise.

The maths lives in the shared core (``trainers.objectives``, ``trainers.samplers``,
``trainers.schedules``), which is rank-agnostic; this module only binds it to a RunConfig.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..objectives import ddpm_loss, ncsn_loss
from ..samplers import (AnnealedLangevinSampler, DDPMSampler, Sampler, model_eps_fn,
                        model_sigma_score_fn)
from ..schedules import DDPMSchedule, geometric_sigmas


def ddpm_schedule(cfg) -> DDPMSchedule:
    d = cfg.ddpm
    if d.beta_schedule == "linear":
        return DDPMSchedule.linear(d.T, d.beta_start, d.beta_end)
    return DDPMSchedule.from_name(d.beta_schedule, d.T)


def ncsn_sigmas(cfg) -> torch.Tensor:
    n = cfg.ncsn
    return geometric_sigmas(n.sigma_max, n.sigma_min, n.n_levels)


@dataclass
class Method:
    name: str
    loss: Callable            # (model, x, generator) -> scalar loss
    default_sampler: str


def make_method(cfg, device) -> Method:
    if cfg.method == "ddpm":
        schedule = ddpm_schedule(cfg).to(device)
        w, v = cfg.ddpm.loss_weighting, cfg.ddpm.sample_variance
        return Method("ddpm", lambda m, x, g: ddpm_loss(m, x, schedule, g, weighting=w, variance=v),
                      "ddpm")
    sigmas = ncsn_sigmas(cfg).to(device)
    return Method("ncsn", lambda m, x, g: ncsn_loss(m, x, sigmas, g), "annealed")


SAMPLERS = ("ddpm", "annealed")


def make_sampler(cfg, model, name: str | None = None) -> Sampler:
    """The core sampler for a trained model: DDPM ancestral (ε-model) or annealed Langevin (σ-model)."""
    name = name or ("ddpm" if cfg.method == "ddpm" else "annealed")
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if name == "ddpm":
        if cfg.method != "ddpm":
            raise ValueError("the ddpm sampler needs an ε-prediction (DDPM) model; this run is "
                             "NCSN: use --sampler annealed")
        lo, hi = cfg.data_range
        clip = max(abs(lo), abs(hi)) if cfg.ddpm.clip_denoised else None
        return DDPMSampler(model_eps_fn(model), ddpm_schedule(cfg), cfg.ddpm.sample_variance,
                           clip_denoised=clip)
    if cfg.method != "ncsn":
        raise ValueError("the annealed Langevin sampler needs a σ-conditioned (NCSN) model; "
                         "this run is DDPM: use --sampler ddpm")
    n = cfg.ncsn
    return AnnealedLangevinSampler(model_sigma_score_fn(model), ncsn_sigmas(cfg), eps=n.eps,
                                   steps_per_level=n.steps_per_level, final_denoise=n.final_denoise)


def initial_noise(cfg, n: int, device, generator: torch.Generator) -> torch.Tensor:
    """x_T ~ N(0, I) for DDPM; uniform noise on [0, 1] for NCSN (Song & Ermon 2019, §5)."""
    shape = (n, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    if cfg.method == "ddpm":
        return torch.randn(shape, generator=generator, device=device)
    return torch.rand(shape, generator=generator, device=device)


@torch.no_grad()
def generate(cfg, model, n: int, device, seed: int = 0, sampler: str | None = None,
             batch_size: int = 256, record_frames: int = 0):
    """n samples in the data range (and, with record_frames > 0, ~that many chain frames).

    Returns (x, frames or None, frame_steps, labels). Runs in chunks of batch_size; sampling
    uses its own generator, so it never touches the training RNG streams.
    """
    s = make_sampler(cfg, model, sampler)
    g = torch.Generator(device=device).manual_seed(seed)
    every = max(1, s.n_steps // record_frames) if record_frames else 0
    xs, frames, steps = [], [], []
    for start in range(0, n, batch_size):
        x0 = initial_noise(cfg, min(batch_size, n - start), device, g)
        res = s.run(x0, generator=g, record_every=every)
        xs.append(res.x)
        if every:
            frames.append(res.frames.cpu())
            steps = res.frame_steps
    labels = [("initial noise" if k == 0 else s.label(k - 1)) for k in steps]
    return (torch.cat(xs), torch.cat(frames, dim=1) if frames else None, steps, labels)
