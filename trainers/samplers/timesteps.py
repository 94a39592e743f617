"""The base of the VP samplers DDPM and DDIM: a decreasing subsequence of a schedule's timesteps and
the options both read (their σ range and the VP schedule built over it for a non-ε model)."""
from __future__ import annotations

import math

import torch

from ..schedules import DDPMSchedule
from ..score_models import ScoreModel, host_sigmas
from .base import Sampler


class TimestepSampler(Sampler):
    """Shared by DDPM and DDIM: a decreasing subsequence τ of a schedule's timesteps (all by default),
    with ᾱ at "τ = −1" taken as 1; per-step coefficients precomputed in float64."""
    space = "vp"

    def __init__(self, model: ScoreModel, schedule: DDPMSchedule, timesteps=None, clip_denoised=None):
        self.model, self.schedule, self.clip = model, schedule, clip_denoised
        T = schedule.T
        ts = list(range(T - 1, -1, -1)) if timesteps is None else [int(t) for t in timesteps]
        if not ts or any(a <= b for a, b in zip(ts, ts[1:])) or ts[0] >= T or ts[-1] < 0:
            raise ValueError(f"timesteps must decrease within [0, {T})")
        self.timesteps = ts
        self.n_steps = len(ts)
        ab = torch.cumprod(1 - schedule.betas.detach().double().cpu(), 0)    # host tables
        self._ab = ab[ts]
        self._ab_next = torch.cat([ab[ts[1:]], torch.ones(1, dtype=torch.float64)])
        self._abf, self._ab_nextf = self._ab.tolist(), self._ab_next.tolist()   # read by the steps
        host_sigmas(schedule)                 # the queries' σ, read once here (score_models.Query.eps)

    def sigmas_used(self):
        return ((1 - self._ab) / self._ab).sqrt().float()

    def step_sigma(self, k):
        ab = self._abf[k]
        return math.sqrt((1 - ab) / ab)

    def label(self, k):
        return f"t = {self.timesteps[k] + 1}/{self.schedule.T}"

    def _x0(self, x, eps, k):
        ab = self._abf[k]
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        return x0.clamp(-self.clip, self.clip) if self.clip is not None else x0
