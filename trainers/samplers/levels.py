"""What several samplers derive from their options, written once: the σ range, the VP schedule of a
non-ε model, the step count from an NFE budget; the option fields they share (`steps_option`,
`nfe_option`, `sigma_max_option`, `sigma_min_option`, `n_timesteps_option`, `clip_option`, `eta_option`), so
each shared field has one label, range and tooltip; and `EtaNoise`, the rules of a sampler whose η scales
its fresh noise."""
from __future__ import annotations

from typing import Callable

from ..schedules import DDPMSchedule, geometric_sigmas
from ..schema import option
from ..score_models import ScoreModel

MAX_STEPS = 100000


def steps_option(default: int | None, label: str, tip: str, gui: int, unset: str | None = None):
    """`steps`: what a step count means is each sampler's own (its label, tip and default)."""
    if default is None:
        return option(None, label, tip, lo=0, hi=MAX_STEPS, step=10, unset=unset or "default", gui=gui)
    return option(default, label, tip, lo=1, hi=MAX_STEPS, step=10, gui=gui)


def nfe_option():
    return option(None, "NFE budget", "Instead of steps: spend about this many network evaluations "
                  "(the sampler picks its steps; default: off).", lo=0, hi=MAX_STEPS, step=10, unset="off")


def sigma_max_option():
    return option(None, "σ_max", "Largest noise level σ₁ (default: the top of the model's trained σ range; "
                  "beyond it the model extrapolates and a note says so).",
                  lo=0.0, hi=1e4, step=0.5, decimals=3, unset="model's")


def sigma_min_option():
    return option(None, "σ_min", "Smallest noise level σ_L (default: the bottom of the model's trained σ range).",
                  lo=0.0, hi=50.0, step=0.01, decimals=3, unset="model's")


def n_timesteps_option():
    return option(1000, "Schedule T", "Length of the VP schedule built over the σ range for a model that is "
                  "not a DDPM ε-model (a DDPM model and a DDPM-config exact score use their own schedule).",
                  lo=1, hi=MAX_STEPS, step=10, gui=200)


def clip_option():
    return option(None, "Clip x̂₀", "Clip the denoised estimate x̂₀ to [−c, c] (images; default: off).",
                  lo=0.0, hi=100.0, step=0.5, decimals=2, unset="off")


def eta_option(default: float, tip: str):
    """`eta`: the scale of a step's fresh noise in [0, 1] (what η = 1 means is each sampler's tip)."""
    return option(default, "η", tip, lo=0.0, hi=1.0, step=0.1, decimals=2)


class EtaNoise:
    """Mixed into a sampler whose `eta` option scales its fresh noise: η = 0 draws none (a flow), the
    title names η, and the constructor checks 0 ≤ η ≤ 1 (`check_eta`)."""

    @classmethod
    def deterministic(cls, o):
        return not o.eta

    @classmethod
    def title_for(cls, o):
        return f"{cls.title} η={o.eta:g}"

    def check_eta(self, eta: float) -> float:
        if not 0 <= eta <= 1:
            raise ValueError(f"{self.title} needs 0 ≤ η ≤ 1, got {eta}")
        return float(eta)


def sigma_range(model: ScoreModel, o) -> tuple[float, float]:
    """(σ_max, σ_min) of options `o` (None: the model's own), σ_max raised to σ_min if below it."""
    hi = o.sigma_max if o.sigma_max is not None else model.sigma_max
    lo = o.sigma_min if o.sigma_min is not None else model.sigma_min
    if not lo > 0:
        raise ValueError(f"the smallest noise level must be positive, got σ_min = {lo}")
    return max(hi, lo), lo


def vp_schedule(model: ScoreModel, o) -> DDPMSchedule:
    """The model's own schedule (an ε-model's, or one given to the exact score); for any other model a schedule over its σ range
    (DDPMSchedule.from_sigmas on a geometric grid of n_timesteps levels). That range's top is the σ_max rule's
    (docs/math.md §10.1) for the exact score and for an NCSN trained with the automatic σ₁, and the chain
    starts from the matched Gaussian in VP coordinates (prior_sample). `o`: a DDPM/DDIM Options
    (sigma_max, sigma_min, n_timesteps)."""
    own = getattr(model, "schedule", None)
    if own is not None and o.sigma_max is None and o.sigma_min is None:
        return own
    hi, lo = sigma_range(model, o)
    return DDPMSchedule.from_sigmas(geometric_sigmas(max(hi, lo * 1.0001), lo, o.n_timesteps).flip(0))


def step_count(o, per_nfe: Callable[[int], int], default: int | None = None) -> int:
    """The steps of options `o`: from its NFE budget when set (per_nfe(nfe), at least 1), else its
    `steps` (else `default`)."""
    return max(1, per_nfe(o.nfe)) if o.nfe else (o.steps or default)
