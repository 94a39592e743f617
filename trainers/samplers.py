"""Samplers with a per-step API, all driven by one `ScoreModel` (trainers.score_models), so every
sampler works with every model: an NCSN σ-model, a DDPM ε-model, a single-level model or the exact
score. Conventions (docs/math.md §3, §4, §8; each class's docstring repeats its own):

- langevin   x ← x + ε s(x, σ) + √(2ε) z                           ("ε convention"; σ = model.sigma_min)
- annealed   αᵢ = ε σᵢ²/σ_L²;  y ← y + (αᵢ/2) s(y, σᵢ) + √αᵢ z       (Song & Ermon 2019, Alg. 1, "α convention")
- ddpm       x_{t'} = (x_t − β/√(1−ᾱ_t) ε)/√(1−β) + σ z, β = 1 − ᾱ_t/ᾱ_{t'}   (Ho et al. 2020, Alg. 2;
             on a subsequence of timesteps it is the respaced chain of Nichol & Dhariwal 2021)
- ddim       x_{t'} = √ᾱ_{t'} x̂₀ + √(1−ᾱ_{t'}−σ_η²) ε + σ_η z         (Song, Meng & Ermon 2021)
- pf-ode     dy/dσ = −σ s(y, σ), Euler or Heun on a σ grid ending at 0 (Song et al. 2021; Karras et al. 2022, Alg. 1)
- pc         reverse-diffusion predictor + M Langevin corrector steps at signal-to-noise ratio r
             (Song et al. 2021, Alg. 2, VE)

"ddpm" and "ddim" move x in VP coordinates; the others move y in VE coordinates (y = x/√ᾱ).

Every sampler has `n_steps`, `nfe` (network evaluations for the whole chain), `prior_std` (the
legacy start prior_std · z, for models without data statistics; `prior_sample` draws the Gaussian
matched to p_σmax, `exact_prior_sample` p_σmax itself: docs/math.md §10.1), `sigmas_used()`,
`label(k)`, `step(x, k, generator)` and `run()`.
A step is written as a generator (`plan`) that yields the score evaluations it needs (`Query`) and
returns a `StepOutput`; `step()` answers them with the sampler's model, and `advance_together()`
answers the queries of several chains on one model with one batched forward pass. A chain whose
particles become NaN/inf or blow up raises `DivergenceError` naming the step and a smaller step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Callable, Generator

import torch

from .schedules import DDPMSchedule, GRIDS, geometric_sigmas, sigma_grid, spaced_timesteps
from .score_models import Query, ScoreModel, host_sigmas

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
    """Starting particles: z ~ N(0, I) (`prior_sample` maps it to a sampler's start: the Gaussian
    matched to p_σ₀, or prior_std · z without data statistics), or uniform over
    bounds=(xmin, xmax, ymin, ymax) (2D only)."""
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


StepPlan = Generator[Query, torch.Tensor, StepOutput]


class Sampler:
    name = "sampler"
    hint = "Try a smaller step size."
    space = "ve"
    n_steps: int
    model: ScoreModel

    @property
    def nfe(self) -> int:
        """Network evaluations for the whole chain (one per step unless a sampler says otherwise)."""
        return self.n_steps

    @property
    def prior_std(self) -> float:
        return 1.0

    def sigmas_used(self) -> torch.Tensor:
        """The VE noise levels at which this sampler asks the model for a score."""
        raise NotImplementedError

    def plan(self, x: torch.Tensor, k: int, generator=None) -> StepPlan:
        raise NotImplementedError

    def label(self, k: int) -> str:
        return f"step {k + 1}/{self.n_steps}"

    # How often `check` reads its verdict back from the device: every step (1, the default; free on
    # the CPU) or every k steps and at the last step, the first failing step kept on the device in
    # between (image sampling on a GPU: trainers.image.methods.generate), so a step makes no sync.
    check_every: int = 1

    def check(self, x: torch.Tensor, k: int) -> None:
        """Raise DivergenceError naming the first step whose particles are NaN/inf or beyond
        BLOWUP_NORM: at that step when check_every = 1, else at the next read (still naming it)."""
        bad = (x.abs() <= BLOWUP_NORM).logical_not_().any()        # NaN compares false: caught too
        if self.check_every <= 1:
            if bad:
                raise DivergenceError(k, self.name, self.hint)
            return
        first = getattr(self, "_first_bad", None)
        if k == 0 or first is None or first.device != x.device:
            first = torch.full((), -1, dtype=torch.long, device=x.device)
        self._first_bad = first = torch.where(bad & (first < 0), k, first)
        if (k + 1) % self.check_every == 0 or k + 1 >= self.n_steps:
            step = int(first)
            if step >= 0:
                raise DivergenceError(step, self.name, self.hint)

    @torch.no_grad()
    def step(self, x: torch.Tensor, k: int, generator=None) -> StepOutput:
        """Step k ∈ [0, n_steps) of the chain, answering the plan's queries with self.model."""
        plan = self.plan(x, k, generator)
        try:
            query = next(plan)
            while True:
                query = plan.send(self.model.evaluate([query])[0])
        except StopIteration as done:
            return done.value

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
    """Unadjusted Langevin dynamics at one noise level, ε convention: x ← x + ε s(x, σ) + √(2ε) z.
    σ defaults to the low end of the model's sampling range, `model.sigma_min` (σ_L of an NCSN, σ of
    the first DDPM timestep, the exact score's σ_min), so a network and the exact score built over the
    same range target the same p_σ."""
    name = "Langevin"

    def __init__(self, model: ScoreModel, eps: float, n_steps: int, sigma: float | None = None):
        if not eps > 0 or n_steps < 1:
            raise ValueError("Langevin needs eps > 0 and n_steps ≥ 1")
        self.model, self.eps, self.n_steps = model, float(eps), int(n_steps)
        self.sigma = float(model.sigma_min if sigma is None else sigma)
        self.hint = f"Try a smaller step size than ε = {self.eps:g}."

    def sigmas_used(self):
        return torch.tensor([self.sigma])

    def plan(self, x, k, generator=None):
        s = yield Query.score(x, self.sigma)
        x = x + self.eps * s + (2 * self.eps) ** 0.5 * _noise(x, generator)
        self.check(x, k)
        return StepOutput(x, None, self.label(k))


class AnnealedLangevinSampler(Sampler):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1), α convention:
    for each level i, αᵢ = ε σᵢ²/σ_L², repeated T times: y ← y + (αᵢ/2) s(y, σᵢ) + √αᵢ z.
    With final_denoise (NCSNv2, off by default) one extra step y ← y + σ_L² s(y, σ_L) ends the chain."""
    name = "Annealed Langevin"

    def __init__(self, model: ScoreModel, sigmas, eps: float = 2e-5, steps_per_level: int = 100,
                 final_denoise: bool = False):
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float32).flatten()
        if len(self.sigmas) < 1 or not eps > 0 or steps_per_level < 1:
            raise ValueError("annealed Langevin needs ≥ 1 noise level, eps > 0 and steps_per_level ≥ 1")
        self.model, self.eps, self.T, self.final_denoise = model, float(eps), int(steps_per_level), final_denoise
        self.n_steps = len(self.sigmas) * self.T + int(final_denoise)
        self.hint = f"Try a smaller ε than {self.eps:g} (the step at level i is αᵢ = ε σᵢ²/σ_L²)."
        # per-level σᵢ and αᵢ as Python floats, so a step reads nothing back from a tensor
        self._sigf = self.sigmas.tolist()
        self._alphaf = [self.alpha(i) for i in range(len(self.sigmas))]

    @property
    def prior_std(self):
        return float(self.sigmas[0])

    def sigmas_used(self):
        return self.sigmas

    def level(self, k: int) -> int:
        return min(k // self.T, len(self.sigmas) - 1)

    def alpha(self, i: int) -> float:
        return self.eps * float(self.sigmas[i] ** 2 / self.sigmas[-1] ** 2)

    def label(self, k):
        if self.final_denoise and k == self.n_steps - 1:
            return "final denoising step"
        i = self.level(k)
        return f"level {i + 1}/{len(self.sigmas)} (σ = {self._sigf[i]:.3g}), step {k % self.T + 1}/{self.T}"

    def plan(self, x, k, generator=None):
        if self.final_denoise and k == self.n_steps - 1:
            sigma = self._sigf[-1]
            x = x + sigma**2 * (yield Query.score(x, sigma))
            self.check(x, k)
            return StepOutput(x, x, self.label(k))
        i = self.level(k)
        sigma = self._sigf[i]
        a = self._alphaf[i]
        s = yield Query.score(x, sigma)
        denoised = x + sigma**2 * s                      # Tweedie's estimate of the clean sample
        x = x + 0.5 * a * s + a**0.5 * _noise(x, generator)
        self.check(x, k)
        return StepOutput(x, denoised, self.label(k))


class _TimestepSampler(Sampler):
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

    def label(self, k):
        return f"t = {self.timesteps[k] + 1}/{self.schedule.T}"

    def _x0(self, x, eps, k):
        ab = self._abf[k]
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        return x0.clamp(-self.clip, self.clip) if self.clip is not None else x0


class DDPMSampler(_TimestepSampler):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) over the timesteps τ (0-based t):
    with β = 1 − ᾱ_t/ᾱ_{t'} (= β_t for consecutive steps),
    x_{t'} = (x_t − β/√(1−ᾱ_t) ε(x_t, t))/√(1−β) + σ z, σ² = β ("beta") or β̃ = (1−ᾱ_{t'})/(1−ᾱ_t) β
    ("beta_tilde"), z = 0 at the last step. With clip_denoised, x̂₀ is clipped to [−c, c] and the
    posterior mean μ̃(x_t, x̂₀) used instead (as the reference image code does)."""
    name = "DDPM"
    hint = "The schedule's steps are fixed: check the model (NaN weights?) or use more timesteps."

    def __init__(self, model: ScoreModel, schedule: DDPMSchedule, variance: str = "beta",
                 clip_denoised: float | None = None, timesteps=None):
        if variance not in ("beta", "beta_tilde"):
            raise ValueError(f"unknown reverse variance {variance!r}; choose beta or beta_tilde")
        super().__init__(model, schedule, timesteps, clip_denoised)
        self.variance = variance
        self._beta = 1 - self._ab / self._ab_next
        self._var = self._beta if variance == "beta" else (1 - self._ab_next) / (1 - self._ab) * self._beta
        self._betaf, self._varf = self._beta.tolist(), self._var.tolist()

    def plan(self, x, k, generator=None):
        eps = yield Query.eps(x, self.timesteps[k], self.schedule)
        ab, ab_next, beta = self._abf[k], self._ab_nextf[k], self._betaf[k]
        x0 = self._x0(x, eps, k)
        if self.clip is not None:
            mean = (math.sqrt(ab_next) * beta * x0 + math.sqrt(1 - beta) * (1 - ab_next) * x) / (1 - ab)
        else:
            mean = (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(1 - beta)
        x = mean + math.sqrt(self._varf[k]) * _noise(x, generator) if k < self.n_steps - 1 else mean
        self.check(x, k)
        return StepOutput(x, x0, self.label(k))


class DDIMSampler(_TimestepSampler):
    """DDIM (Song, Meng & Ermon 2021, eq. 12) over the timesteps τ:
    x̂₀ = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t, σ_η² = η² (1−ᾱ_{t'})/(1−ᾱ_t) (1 − ᾱ_t/ᾱ_{t'}),
    x_{t'} = √ᾱ_{t'} x̂₀ + √(1−ᾱ_{t'}−σ_η²) ε + σ_η z. η = 0: deterministic; η = 1 over all
    timesteps: DDPM ancestral with σ² = β̃."""
    name = "DDIM"
    hint = "DDIM's steps are fixed by the schedule: check the model, or use more steps."

    def __init__(self, model: ScoreModel, schedule: DDPMSchedule, timesteps=None, eta: float = 0.0,
                 clip_denoised: float | None = None):
        if not 0 <= eta <= 1:
            raise ValueError(f"DDIM needs 0 ≤ η ≤ 1, got {eta}")
        super().__init__(model, schedule, timesteps, clip_denoised)
        self.eta = float(eta)
        self._sig2 = eta**2 * (1 - self._ab_next) / (1 - self._ab) * (1 - self._ab / self._ab_next)
        self._sig2f = self._sig2.tolist()

    def plan(self, x, k, generator=None):
        eps = yield Query.eps(x, self.timesteps[k], self.schedule)
        ab_next, sig2 = self._ab_nextf[k], self._sig2f[k]
        x0 = self._x0(x, eps, k)
        x_new = math.sqrt(ab_next) * x0 + math.sqrt(max(1 - ab_next - sig2, 0.0)) * eps
        if sig2 > 0:
            x_new = x_new + math.sqrt(sig2) * _noise(x, generator)
        self.check(x_new, k)
        return StepOutput(x_new, x0, self.label(k))


class PFODESampler(Sampler):
    """The probability-flow ODE in VE coordinates with σ as time, dy/dσ = −σ s(y, σ) = (y − D(y, σ))/σ,
    over the grid σ_0, σ_1, … (decreasing to sample; increasing runs it backwards, data → noise).
    "euler": y ← y + (σ' − σ) d(y, σ). "heun" (Karras et al. 2022, Alg. 1): an Euler trial then the
    average of both slopes, except on a step to σ' = 0, which is Euler (there y' = D(y, σ)). So Heun
    costs 2 evaluations per step but 1 on a step to 0."""
    name = "PF-ODE"
    hint = "The ODE steps are too coarse for this model: use more steps (or Heun)."

    def __init__(self, model: ScoreModel, sigmas, solver: str = "heun"):
        if solver not in ("euler", "heun"):
            raise ValueError(f"unknown ODE solver {solver!r}; choose euler or heun")
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if len(self.sigmas) < 2 or bool((self.sigmas < 0).any()):
            raise ValueError("the PF-ODE needs a grid of at least two σ ≥ 0")
        self.model, self.solver, self.n_steps = model, solver, len(self.sigmas) - 1
        self._sigf = self.sigmas.tolist()          # the grid as Python floats: a step reads no tensor
        self.name = f"PF-ODE ({solver})"

    @property
    def prior_std(self):
        return float(self.sigmas[0])

    @property
    def nfe(self):
        two = self.solver == "heun"
        return sum(1 + int(two and float(self.sigmas[k + 1]) > 0) for k in range(self.n_steps))

    def sigmas_used(self):
        return self.sigmas[self.sigmas > 0].float()

    def label(self, k):
        return f"σ {self._sigf[k]:.3g} → {self._sigf[k + 1]:.3g} (step {k + 1}/{self.n_steps})"

    def plan(self, x, k, generator=None):
        s0, s1 = self._sigf[k], self._sigf[k + 1]
        d = -s0 * (yield Query.score(x, s0))
        x_new = x + (s1 - s0) * d
        if self.solver == "heun" and s1 > 0:
            d1 = -s1 * (yield Query.score(x_new, s1))
            x_new = x + (s1 - s0) * 0.5 * (d + d1)
        self.check(x_new, k)
        return StepOutput(x_new, x - s0 * d, self.label(k))


class PCSampler(Sampler):
    """Predictor–corrector (Song et al. 2021, Alg. 2, VE) over decreasing levels σ_0 … σ_{N−1}, σ_N = 0.
    Step i: predictor (reverse diffusion) y ← y + (σᵢ² − σᵢ₊₁²) s(y, σᵢ) + √(σᵢ² − σᵢ₊₁²) z
    (no noise on the last step, which lands on Tweedie's D(y, σ_{N−1})); then, unless last, M corrector
    Langevin steps at σᵢ₊₁: y ← y + a s + √(2a) z with a = 2 (r ‖z‖/‖s‖)² (norms per particle, averaged
    over the batch; r the signal-to-noise ratio). Evaluations: N + M (N − 1)."""
    name = "Predictor–corrector"
    hint = "Try a smaller signal-to-noise ratio r (the corrector's step grows as r²)."

    def __init__(self, model: ScoreModel, sigmas, snr: float = 0.16, corrector_steps: int = 1):
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float32).flatten()
        if len(self.sigmas) < 1 or not snr > 0 or corrector_steps < 0:
            raise ValueError("predictor–corrector needs ≥ 1 level, snr > 0 and corrector_steps ≥ 0")
        self.model, self.snr, self.M = model, float(snr), int(corrector_steps)
        self.n_steps = len(self.sigmas)

    @property
    def prior_std(self):
        return float(self.sigmas[0])

    @property
    def nfe(self):
        return self.n_steps + self.M * (self.n_steps - 1)

    def sigmas_used(self):
        return self.sigmas

    def label(self, k):
        nxt = float(self.sigmas[k + 1]) if k + 1 < self.n_steps else 0.0
        return f"σ {float(self.sigmas[k]):.3g} → {nxt:.3g}" + (f" + {self.M} corrector" if k + 1 < self.n_steps and self.M else "")

    def plan(self, x, k, generator=None):
        s0 = float(self.sigmas[k])
        last = k == self.n_steps - 1
        s1 = 0.0 if last else float(self.sigmas[k + 1])
        score = yield Query.score(x, s0)
        var = s0**2 - s1**2
        denoised = x + s0**2 * score
        x = x + var * score
        if not last:
            x = x + math.sqrt(var) * _noise(x, generator)
            for _ in range(self.M):
                score = yield Query.score(x, s1)
                z = _noise(x, generator)
                s_norm = float(score.flatten(1).norm(dim=1).mean())
                # a zero score (e.g. an untrained net with a zero output layer) gives no corrector step
                a = 2 * (self.snr * float(z.flatten(1).norm(dim=1).mean()) / s_norm) ** 2 if s_norm > 0 else 0.0
                x = x + a * score + math.sqrt(2 * a) * z
        self.check(x, k)
        return StepOutput(x, denoised, self.label(k))


# ------------------------------------------------------------------ stepping several chains at once
@dataclass
class ChainState:
    """A chain being advanced: its sampler, state, steps taken and noise generator."""
    sampler: Sampler
    x: torch.Tensor
    generator: torch.Generator | None = None
    k: int = 0
    label: str = ""
    denoised: torch.Tensor | None = None
    nfe: int = 0                       # evaluations spent so far
    error: str = ""


@torch.no_grad()
def advance_together(chains: list[ChainState], targets: list[int], cancelled: Callable[[], bool] = lambda: False):
    """Advance each chain to its target step count. Chains whose samplers share a ScoreModel have their
    score queries answered by one batched forward pass per round. A diverging chain gets `error` set
    and stops; the others go on. Returns False if `cancelled()` became true."""
    plans: dict[int, StepPlan] = {}
    pending: dict[int, Query] = {}

    def start(i: int):
        c = chains[i]
        if c.error or c.k >= targets[i]:
            return
        plans[i] = c.sampler.plan(c.x, c.k, c.generator)
        feed(i, None)

    def feed(i: int, answer):
        c = chains[i]
        try:
            pending[i] = next(plans[i]) if answer is None else plans[i].send(answer)
        except StopIteration as done:
            out = done.value
            c.x, c.label, c.denoised, c.k = out.x, out.label, out.denoised, c.k + 1
            del plans[i]
            pending.pop(i, None)
            start(i)
        except DivergenceError as e:
            c.error = str(e)
            del plans[i]
            pending.pop(i, None)

    for i in range(len(chains)):
        start(i)
    while pending:
        if cancelled():
            return False
        groups: dict[int, list[int]] = {}
        for i in pending:
            groups.setdefault(id(chains[i].sampler.model), []).append(i)
        for ids in groups.values():
            model = chains[ids[0]].sampler.model
            queries = [pending.pop(i) for i in ids]
            answers = model.evaluate(queries)
            for i, a in zip(ids, answers):
                chains[i].nfe += 1
                feed(i, a)
    return True


# ------------------------------------------------------------------ the registry
@dataclass
class SamplerOptions:
    """Every sampler's settings in one place (each sampler reads the ones in its registry `params`).
    σ_max/σ_min None: the model's own range (the trained range; for the exact score its default)."""
    steps: int | None = None        # langevin: steps; annealed: T per level; ddpm/ddim: timesteps; pf-ode/pc: σ levels
    nfe: int | None = None          # instead of steps: spend about this many network evaluations
    eps: float | None = None        # langevin ε (default 0.01); annealed ε (default 0.1 σ_L²)
    n_levels: int = 10              # annealed L
    sigma_max: float | None = None
    sigma_min: float | None = None
    final_denoise: bool = False     # annealed: NCSNv2's last step y + σ_L² s
    variance: str = "beta"          # ddpm: σ² = β or β̃
    eta: float = 0.0                # ddim η
    solver: str = "heun"            # pf-ode: euler | heun
    grid: str = "karras"            # pf-ode σ grid: geometric | karras
    rho: float = 7.0                # Karras grid ρ
    snr: float = 0.16               # pc signal-to-noise ratio r
    corrector_steps: int = 1        # pc M
    clip_denoised: float | None = None   # ddpm/ddim: clip x̂₀ to [−c, c] (images)
    n_timesteps: int = 1000         # ddpm/ddim: length of the VP schedule built for a non-ε model

    @classmethod
    def from_dict(cls, d: dict) -> "SamplerOptions":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})


@dataclass(frozen=True)
class SamplerInfo:
    name: str
    title: str
    space: str                      # "ve" (moves y) or "vp" (moves x_t)
    stochastic: bool
    convention: str                 # the update, in one line
    description: str
    params: tuple[str, ...]         # the SamplerOptions fields it reads
    build: Callable = field(repr=False, compare=False)


def _range(model: ScoreModel, o: SamplerOptions) -> tuple[float, float]:
    hi = o.sigma_max if o.sigma_max is not None else model.sigma_max
    lo = o.sigma_min if o.sigma_min is not None else model.sigma_min
    if not lo > 0:
        raise ValueError(f"the smallest noise level must be positive, got σ_min = {lo}")
    return max(hi, lo), lo


def vp_schedule(model: ScoreModel, o: SamplerOptions) -> DDPMSchedule:
    """The model's own schedule (an ε-model's, or one given to the exact score); for any other model a schedule over its σ range
    (DDPMSchedule.from_sigmas on a geometric grid of n_timesteps levels). That range's top is the σ_max rule's
    (docs/math.md §10.1) for the exact score and for an NCSN trained with the automatic σ₁, and the chain
    starts from the matched Gaussian in VP coordinates (prior_sample)."""
    own = getattr(model, "schedule", None)
    if own is not None and o.sigma_max is None and o.sigma_min is None:
        return own
    hi, lo = _range(model, o)
    return DDPMSchedule.from_sigmas(geometric_sigmas(max(hi, lo * 1.0001), lo, o.n_timesteps).flip(0))


def _steps(o: SamplerOptions, default: int, per_nfe: Callable[[int], int]) -> int:
    return max(1, per_nfe(o.nfe)) if o.nfe else (o.steps or default)


def _build_langevin(model, o):
    n = _steps(o, 1000, lambda nfe: nfe)
    return LangevinSampler(model, o.eps or 0.01, n)


def _build_annealed(model, o):
    hi, lo = _range(model, o)
    L = min(o.n_levels, o.nfe) if o.nfe else o.n_levels
    sigmas = sigma_grid("geometric", hi, lo, max(1, L))
    T = _steps(o, 100, lambda nfe: (nfe - int(o.final_denoise)) // len(sigmas))
    return AnnealedLangevinSampler(model, sigmas, o.eps or 0.1 * lo**2, T, o.final_denoise)


def _build_ddpm(model, o):
    sched = vp_schedule(model, o)
    n = _steps(o, sched.T, lambda nfe: nfe)
    return DDPMSampler(model, sched, o.variance, o.clip_denoised, spaced_timesteps(sched.T, n))


def _build_ddim(model, o):
    sched = vp_schedule(model, o)
    n = _steps(o, 50, lambda nfe: nfe)
    return DDIMSampler(model, sched, spaced_timesteps(sched.T, n), o.eta, o.clip_denoised)


def _build_pf_ode(model, o):
    hi, lo = _range(model, o)
    per_nfe = (lambda nfe: (nfe + 1) // 2) if o.solver == "heun" else (lambda nfe: nfe)
    n = _steps(o, 50, per_nfe)              # n levels + the final 0 = n steps
    grid = torch.cat([sigma_grid(o.grid, hi, lo, n, o.rho), torch.zeros(1)])
    return PFODESampler(model, grid, o.solver)


def _build_pc(model, o):
    hi, lo = _range(model, o)
    M = o.corrector_steps
    n = _steps(o, 100, lambda nfe: (nfe + M) // (M + 1))
    return PCSampler(model, sigma_grid("geometric", hi, lo, n), o.snr, M)


SAMPLERS: dict[str, SamplerInfo] = {info.name: info for info in [
    SamplerInfo("langevin", "Langevin", "ve", True, "x ← x + ε s(x, σ_min) + √(2ε) z",
                "Plain Langevin at the least noisy level: right locally, wrong mode weights",
                ("steps", "nfe", "eps"), _build_langevin),
    SamplerInfo("annealed", "Annealed Langevin", "ve", True, "αᵢ = ε σᵢ²/σ_L²; y ← y + αᵢ/2 s(y, σᵢ) + √αᵢ z",
                "NCSN's sampler: T Langevin steps at each of L geometric noise levels",
                ("steps", "nfe", "eps", "n_levels", "sigma_max", "sigma_min", "final_denoise"), _build_annealed),
    SamplerInfo("ddpm", "DDPM", "vp", True, "x_{t'} = (x_t − β/√(1−ᾱ_t) ε)/√(1−β) + σ z",
                "DDPM's ancestral sampler (respaced when given fewer steps than timesteps)",
                ("steps", "nfe", "variance", "clip_denoised", "n_timesteps"), _build_ddpm),
    SamplerInfo("ddim", "DDIM", "vp", True, "x_{t'} = √ᾱ' x̂₀ + √(1−ᾱ'−σ_η²) ε + σ_η z",
                "DDIM: few-step sampling; η = 0 deterministic, η = 1 DDPM-like",
                ("steps", "nfe", "eta", "clip_denoised", "n_timesteps"), _build_ddim),
    SamplerInfo("pf-ode", "PF-ODE", "ve", False, "dy/dσ = −σ s(y, σ)  (Euler / Heun)",
                "Probability-flow ODE: deterministic, a flow from noise to data",
                ("steps", "nfe", "solver", "grid", "rho", "sigma_max", "sigma_min"), _build_pf_ode),
    SamplerInfo("pc", "Predictor–corrector", "ve", True, "reverse diffusion + M Langevin steps at SNR r",
                "Song et al.'s predictor–corrector: each step corrected by Langevin",
                ("steps", "nfe", "snr", "corrector_steps", "sigma_max", "sigma_min"), _build_pc),
]}


def build_sampler(name: str, model: ScoreModel, options: SamplerOptions | None = None, **overrides) -> Sampler:
    """The sampler `name` from the registry, driven by `model` (any ScoreModel)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    o = SamplerOptions(**{**(options.__dict__ if options else {}), **overrides})
    if o.grid not in GRIDS:
        raise ValueError(f"unknown σ grid {o.grid!r}; choose one of {', '.join(GRIDS)}")
    return SAMPLERS[name].build(model, o)


def start_level(sampler: Sampler) -> tuple[float, float]:
    """(σ₀, c): the chain starts at the VE level σ₀ of its first step, in coordinates x = c·y
    (c = √ᾱ of the first timestep for the VP samplers DDPM/DDIM, 1 for the VE ones)."""
    if sampler.space == "vp":
        ab0 = float(sampler._ab[0])
        return math.sqrt((1 - ab0) / ab0), math.sqrt(ab0)
    sigma0 = getattr(sampler, "sigma", None)
    if sigma0 is None:
        sigma0 = float(sampler.sigmas[0])
    return float(sigma0), 1.0


def prior_sample(sampler: Sampler, z: torch.Tensor) -> torch.Tensor:
    """The sampler's Gaussian start from standard normal draws z (docs/math.md §10.1).

    When the model knows its data's mean m and covariance C (2D points) or mean per-dimension
    variance v, the start is the Gaussian matched to p_σ₀ = p * N(0, σ₀²I) in its first two moments,
    N(m, C + σ₀² I) (or N(m, (v + σ₀²) I)), written in the sampler's coordinates (VP: x = √ᾱ₀ y).
    Without data statistics (image models) the legacy start: prior_std · z (VE), z (VP)."""
    model = sampler.model
    if model.data_mean is None:
        return sampler.prior_std * z
    sigma0, c = start_level(sampler)
    mean = model.data_mean.to(z.device, z.dtype).reshape(1, *z.shape[1:]) if z.ndim > 1 else model.data_mean
    cov = getattr(model, "data_cov", None)
    if cov is not None and z.ndim == 2 and z.shape[1] == len(cov):
        eye = torch.eye(len(cov), dtype=torch.float64)
        chol = torch.linalg.cholesky(cov.double() + sigma0**2 * eye).to(z.device, z.dtype)
        return c * mean + c * z @ chol.T
    return c * mean + c * math.sqrt(sigma0**2 + model.data_var) * z


def exact_prior_sample(sampler: Sampler, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n exact draws of the chain's true start p_σ₀ (only for the exact score, whose density p_σ₀ is a
    mixture we can sample), in the sampler's coordinates. With it a chain has no prior mismatch."""
    density = getattr(sampler.model, "density", None)
    if density is None:
        raise ValueError("an exact start p_σmax needs the exact score (a model cannot say what p_σmax is)")
    sigma0, c = start_level(sampler)
    return c * density.noised(sigma0).sample(n, generator)


def start_from(sampler: Sampler, z: torch.Tensor, init: str = "gaussian",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """A chain's first particles from draws z shared by several chains: init "uniform": z itself
    (uniform points); "gaussian": prior_sample(sampler, z); "exact": exact draws of p_σ₀ (with
    `generator`) where the sampler's model is the exact score, prior_sample(sampler, z) elsewhere."""
    if init == "uniform":
        return z
    if init == "exact" and getattr(sampler.model, "density", None) is not None:
        return exact_prior_sample(sampler, len(z), generator)
    if init not in ("gaussian", "exact"):
        raise ValueError(f"unknown start {init!r}; choose gaussian, exact or uniform")
    return prior_sample(sampler, z)
