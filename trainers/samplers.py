"""Samplers with a per-step API, so a GUI timer can animate any of them and `run()` is a plain loop.

Step conventions (each sampler's docstring repeats its own):
- Langevin:           x ← x + ε ∇log p(x) + √(2ε) z                      (SPEC §3, "ε convention")
- Annealed Langevin:  αᵢ = ε σᵢ²/σ_L²;  x ← x + (αᵢ/2) s_θ(x, σᵢ) + √αᵢ z  (Song & Ermon 2019, Alg. 1, "α convention")
- DDPM ancestral:     x_{t−1} = μ_θ(x_t, t) + σ_t z, z = 0 at the last step  (Ho et al. 2020, Alg. 2)

Every sampler has `n_steps`, `step(x, k, generator) -> StepOutput` for the global step k ∈ [0, n_steps),
`label(k)` for a scrub bar, and `run()`. A chain whose particles become NaN/inf or blow up raises
`DivergenceError` naming the step and suggesting a smaller step size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .schedules import DDPMSchedule

# A particle whose norm passes this is called diverged (the data live within |x| ≲ 10² here).
BLOWUP_NORM = 1e6


class DivergenceError(RuntimeError):
    def __init__(self, step: int, sampler: str, hint: str):
        self.step = step
        super().__init__(f"{sampler} diverged at step {step}: particles became NaN/infinite or exploded. {hint}")


@dataclass
class StepOutput:
    x: torch.Tensor
    denoised: torch.Tensor | None = None   # the sampler's estimate of the clean sample, where it has one
    label: str = ""


@dataclass
class SampleResult:
    x: torch.Tensor
    frames: torch.Tensor | None            # (F, N, ...) recorded states, frame 0 is the initial state
    frame_steps: list[int]                 # number of steps taken before each frame


def initial_particles(n: int, kind: str = "gaussian", bounds=None, generator: torch.Generator | None = None,
                      shape: tuple[int, ...] = (2,)) -> torch.Tensor:
    """Starting particles: N(0, I), or uniform over bounds=(xmin, xmax, ymin, ymax) (2D only)."""
    if kind == "gaussian":
        return torch.randn((n, *shape), generator=generator)
    if kind == "uniform":
        if bounds is None or shape != (2,):
            raise ValueError("uniform initialisation needs 2D points and bounds (xmin, xmax, ymin, ymax)")
        u = torch.rand((n, 2), generator=generator)
        lo = torch.tensor([bounds[0], bounds[2]], dtype=torch.float32)
        hi = torch.tensor([bounds[1], bounds[3]], dtype=torch.float32)
        return lo + u * (hi - lo)
    raise ValueError(f"unknown initialisation {kind!r}; choose gaussian or uniform")


def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class Sampler:
    name = "sampler"
    hint = "Try a smaller step size."
    n_steps: int

    def step(self, x: torch.Tensor, k: int, generator=None) -> StepOutput:
        raise NotImplementedError

    def label(self, k: int) -> str:
        return f"step {k + 1}/{self.n_steps}"

    def check(self, x: torch.Tensor, k: int) -> None:
        flat = x.reshape(len(x), -1)
        if not torch.isfinite(flat).all() or flat.abs().max() > BLOWUP_NORM:
            raise DivergenceError(k, self.name, self.hint)

    @torch.no_grad()
    def run(self, x: torch.Tensor, generator=None, record_every: int = 0) -> SampleResult:
        """All n_steps steps; with record_every=k > 0, keeps every k-th state (and the last)."""
        frames, frame_steps = ([x.clone()], [0]) if record_every else (None, [])
        for k in range(self.n_steps):
            x = self.step(x, k, generator).x
            if record_every and ((k + 1) % record_every == 0 or k + 1 == self.n_steps):
                frames.append(x.clone())
                frame_steps.append(k + 1)
        return SampleResult(x, torch.stack(frames) if frames else None, frame_steps)


class LangevinSampler(Sampler):
    """Unadjusted Langevin dynamics, ε convention: x ← x + ε s(x) + √(2ε) z."""
    name = "Langevin"

    def __init__(self, score_fn: Callable[[torch.Tensor], torch.Tensor], eps: float, n_steps: int):
        if not eps > 0 or n_steps < 1:
            raise ValueError("Langevin needs eps > 0 and n_steps ≥ 1")
        self.score_fn, self.eps, self.n_steps = score_fn, float(eps), int(n_steps)
        self.hint = f"Try a smaller step size than ε = {self.eps:g}."

    @torch.no_grad()
    def step(self, x, k, generator=None):
        x = x + self.eps * self.score_fn(x) + (2 * self.eps) ** 0.5 * _noise(x, generator)
        self.check(x, k)
        return StepOutput(x, None, self.label(k))


class AnnealedLangevinSampler(Sampler):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1), α convention:
    for each level i, αᵢ = ε σᵢ²/σ_L², repeated T times: x ← x + (αᵢ/2) s_θ(x, σᵢ) + √αᵢ z.
    With final_denoise (NCSNv2, off by default) one extra step x ← x + σ_L² s_θ(x, σ_L) ends the chain."""
    name = "Annealed Langevin"

    def __init__(self, score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sigmas,
                 eps: float = 2e-5, steps_per_level: int = 100, final_denoise: bool = False):
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float32).flatten()
        if len(self.sigmas) < 1 or not eps > 0 or steps_per_level < 1:
            raise ValueError("annealed Langevin needs ≥ 1 noise level, eps > 0 and steps_per_level ≥ 1")
        self.score_fn, self.eps, self.T, self.final_denoise = score_fn, float(eps), int(steps_per_level), final_denoise
        self.n_steps = len(self.sigmas) * self.T + int(final_denoise)
        self.hint = f"Try a smaller ε than {self.eps:g} (the step at level i is αᵢ = ε σᵢ²/σ_L²)."

    def level(self, k: int) -> int:
        return min(k // self.T, len(self.sigmas) - 1)

    def alpha(self, i: int) -> float:
        return self.eps * float(self.sigmas[i] ** 2 / self.sigmas[-1] ** 2)

    def label(self, k):
        if self.final_denoise and k == self.n_steps - 1:
            return "final denoising step"
        i = self.level(k)
        return f"level {i + 1}/{len(self.sigmas)} (σ = {float(self.sigmas[i]):.3g}), step {k % self.T + 1}/{self.T}"

    @torch.no_grad()
    def step(self, x, k, generator=None):
        if self.final_denoise and k == self.n_steps - 1:
            sigma = self.sigmas[-1]
            x = x + sigma**2 * self.score_fn(x, torch.full((len(x),), float(sigma), device=x.device))
            self.check(x, k)
            return StepOutput(x, x, self.label(k))
        i = self.level(k)
        sigma = float(self.sigmas[i])
        a = self.alpha(i)
        s = self.score_fn(x, torch.full((len(x),), sigma, device=x.device))
        denoised = x + sigma**2 * s                      # Tweedie's estimate of the clean sample
        x = x + 0.5 * a * s + a**0.5 * _noise(x, generator)
        self.check(x, k)
        return StepOutput(x, denoised, self.label(k))


class DDPMSampler(Sampler):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): step k runs timestep t = T−1−k (0-based),
    x_{t−1} = (x_t − β_t/√(1−ᾱ_t) ε_θ(x_t, t))/√α_t + σ_t z, σ_t² = β_t or β̃_t, z = 0 at the last step."""
    name = "DDPM"
    hint = "The schedule's steps are fixed: check the model (NaN weights?) or use more timesteps."

    def __init__(self, eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: DDPMSchedule,
                 variance: str = "beta", clip_denoised: float | None = None):
        if variance not in ("beta", "beta_tilde"):
            raise ValueError(f"unknown reverse variance {variance!r}; choose beta or beta_tilde")
        self.eps_fn, self.schedule, self.variance, self.clip = eps_fn, schedule, variance, clip_denoised
        self.n_steps = schedule.T

    def timestep(self, k: int) -> int:
        return self.schedule.T - 1 - k

    def label(self, k):
        return f"t = {self.timestep(k) + 1}/{self.schedule.T}"

    @torch.no_grad()
    def step(self, x, k, generator=None):
        t = torch.full((len(x),), self.timestep(k), dtype=torch.long, device=x.device)
        sched = self.schedule
        eps = self.eps_fn(x, t)
        x0 = sched.predict_x0(x, t, eps)
        if self.clip is not None:
            # Clip x̂_0 to the data range and use the posterior mean (as the reference image code does).
            x0 = x0.clamp(-self.clip, self.clip)
            mean = sched.posterior_mean(x0, x, t)
        else:
            mean = sched.eps_mean(x, t, eps)
        if self.timestep(k) > 0:
            x = mean + sched.sigma(t, self.variance, x.shape) * _noise(x, generator)
        else:
            x = mean
        self.check(x, k)
        return StepOutput(x, x0, self.label(k))


# ------------------------------------------------------------------ score adapters
def model_score_fn(model):
    """s(x) from an unconditioned score model."""
    return lambda x: model(x)


def model_sigma_score_fn(model):
    """s(x, σ) from a σ-conditioned model."""
    return lambda x, sigma: model(x, sigma)


def model_eps_fn(model):
    """ε(x_t, t) from a t-conditioned ε-prediction model."""
    return lambda x, t: model(x, t)


def exact_score_fn(density):
    return lambda x: density.score(x).to(x.dtype)


def exact_sigma_score_fn(density):
    """The exact score of p_σ; every particle shares σ (as in annealed Langevin)."""
    cache: dict[float, object] = {}

    def fn(x, sigma):
        s = float(sigma.flatten()[0]) if torch.is_tensor(sigma) else float(sigma)
        if s not in cache:
            cache[s] = density.noised(s)
        return cache[s].score(x).to(x.dtype)
    return fn


def exact_eps_fn(density, schedule: DDPMSchedule):
    """ε*(x_t, t) = −√(1−ᾱ_t) ∇log q_t(x_t), q_t the exact DDPM marginal of the mixture."""
    cache: dict[int, object] = {}

    def fn(x, t):
        ti = int(t.flatten()[0])
        if ti not in cache:
            cache[ti] = density.ddpm_marginal(float(schedule.alpha_bars[ti]))
        return -float(schedule.sqrt_one_minus_alpha_bars[ti]) * cache[ti].score(x).to(x.dtype)
    return fn
