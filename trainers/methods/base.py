"""A training method as one class: its parameters, its loss and per-level loss terms, its noise levels
or schedule, the density it fits at each level, how its network becomes a ScoreModel (the only
conversion path), its natural sampler and sampler defaults, its loss-per-level bins and its advice
when training diverges. `@register_method` on the class puts it in `METHODS` (as score_sde's
`@register_predictor`); the 2D fitting loop, the 2D command line, the explorer's Training tab and the
image trainer all read the registry, so a new method is one new file.

Conventions: a class's nested `Params` is a dataclass of `trainers.schema.option` fields (label,
tooltip, range, command-line flag); a 2D config (trainers.fitting.ToyConfig) holds them flat under the
same names, or in its `extra` dict for a method whose names it lacks. An instance is bound to one
config: `fitting.method_for(cfg)` (2D) or `trainers.image.methods.image_method(cfg)` (images).
Levels are σ (VE noise std) or, for a time-conditioned method, the 0-based timestep t.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from .. import schema
from ..samplers import SamplerOptions, prior_sample
from ..schedules import DDPMSchedule
from ..score_models import ExactScore, Query, ScoreModel, from_network

METHODS: dict[str, type["Method"]] = {}


def answer(sm: ScoreModel, query: Query) -> torch.Tensor:
    """sm's answer to one query, without autograd: the ScoreModel's own evaluation (for a 2D network its
    folded inference pass, as the samplers take; it agrees with the training forward pass to float
    rounding)."""
    return sm.evaluate([query])[0]


def register_method(cls: type["Method"]) -> type["Method"]:
    """Class decorator: METHODS[cls.name] = cls (a name may be registered once)."""
    if not cls.name or cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} is empty or already registered")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type["Method"]:
    """The registered class called `name` (ValueError naming the choices otherwise)."""
    if name not in METHODS:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def sum_dims(v: torch.Tensor) -> torch.Tensor:
    """Per-example sum over every dimension but the first (points (N, 2) or images (N, C, H, W))."""
    return v.reshape(len(v), -1).sum(1)


def randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


@dataclass
class Level:
    """One noise level of a trained model, as the score view and the metrics name it."""
    label: str
    sigma: float | None = None   # compare with p_σ (None and t None: the data density itself)
    t: int | None = None         # compare with the DDPM marginal q(x_t)

    @property
    def value(self) -> float:
        """The `level` argument of Method.target_density / Method.score_field."""
        return float(self.t) if self.t is not None else float(self.sigma or 0.0)


@dataclass
class LossBins:
    """The loss-per-noise-level bins of a method: `edges` are the inner bin edges on the level's own
    scale (for torch.bucketize; float64), `centres` each bin's level; `log`: drawn on a log axis;
    `offset` is added to the centres when shown (0-based t is shown as t = 1 … T)."""
    edges: torch.Tensor
    centres: list[float]
    log: bool
    axis: str                 # the axis label of a loss-per-level plot
    offset: float = 0.0

    def index(self, levels: torch.Tensor) -> torch.Tensor:
        """The bin of each level (0 … len(centres) − 1; levels beyond the ends fall in the end bins)."""
        return torch.bucketize(levels.detach().double().flatten(), self.edges.to(levels.device))


@dataclass
class NoParams:
    """A method without parameters of its own."""


class Method:
    """Base class (see the module docstring). Subclasses set the class attributes, `Params` and
    `loss`; the defaults below are those of an unconditioned score network fitted at one level."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""            # one line, e.g. "Denoising score matching (one σ)"
    short: ClassVar[str] = ""            # the Training tab's combo text
    tip: ClassVar[str] = ""              # one line for the Training tab's objective tooltip
    cond: ClassVar[str | None] = None    # what the network is conditioned on: None | "sigma" | "time"
    level_name: ClassVar[str] = "sigma"  # what `terms` returns as each example's level: "sigma" or "t"
    natural_sampler: ClassVar[str] = "langevin"   # the sampler the method was made for
    Params: ClassVar[type] = NoParams

    def __init__(self, params=None, *, sigmas=None, schedule: DDPMSchedule | None = None,
                 sampling: dict | None = None, uniform_start: tuple[str, ...] = ()):
        """params: a `Params` (default: its defaults). sigmas: the binding's σ₁ > … > σ_L (2D: the
        config's σ range, also the exact score's; NCSN: its trained levels), or a function returning
        them (called when first needed: the σ_max rule costs a few milliseconds). schedule: a DDPM schedule
        that replaces the one the parameters name (images: custom β ends). sampling: sampler settings
        of the binding, {"*": for every sampler, <sampler name>: for that one}, under the method's
        own (`sampler_defaults`). uniform_start: samplers that start from U[0, 1]ᵈ (image NCSN runs)."""
        self.params = params if params is not None else self.Params()
        self._sigmas = sigmas
        self._schedule = schedule
        self.sampling = sampling or {}
        self.uniform_start = tuple(uniform_start)

    def to(self, device) -> "Method":
        """Move the bound tensors (σ levels, DDPM schedule) to `device` (a training or sampling
        device: a step then reads nothing from the host); returns self."""
        sig = self.noise_levels()
        if sig is not None:
            self._sigmas = sig.to(device)
        sched = self.schedule()
        if sched is not None:
            self._schedule = sched.to(device)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"

    # ------------------------------------------------------------------ parameters
    @classmethod
    def params_from(cls, get: Callable[[str, object], object]):
        """A `Params` whose fields come from get(name, default) (e.g. a 2D config's attributes)."""
        values = {f.name: get(f.name, f.default) for f in dataclasses.fields(cls.Params)}
        return cls.Params(**values)

    @classmethod
    def check_params(cls, params) -> None:
        """ValueError naming the field when a parameter lies outside its schema."""
        schema.check(params, cls.name)

    # ------------------------------------------------------------------ training
    def loss(self, net, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def terms(self, net, x: torch.Tensor, generator: torch.Generator | None = None):
        """(per-example loss terms, each one's level: σ or t) — their mean is the loss; a method
        without noise levels returns (the loss as a 1-element tensor, None)."""
        return self.loss(net, x, generator).reshape(1), None

    # ------------------------------------------------------------------ noise levels
    def noise_levels(self) -> torch.Tensor | None:
        """σ₁ > … > σ_L of the binding (see __init__), or None."""
        if callable(self._sigmas):
            self._sigmas = self._sigmas()
        return None if self._sigmas is None else torch.as_tensor(self._sigmas)

    def schedule(self) -> DDPMSchedule | None:
        """The DDPM schedule of a time-conditioned method; None otherwise."""
        return self._schedule

    def fixed_level(self) -> float:
        """The one σ an unconditioned network is fitted at (0: the data density itself)."""
        return 0.0

    @property
    def has_levels(self) -> bool:
        """Is the network conditioned on a noise level (σ or t), so it has a score at every level (what
        a PF-ODE likelihood needs)?"""
        return self.cond is not None

    @property
    def noised(self) -> bool:
        """Does the model fit a noised density (a level above σ = 0; ESM and SSM fit the data itself)?"""
        return self.has_levels or self.fixed_level() > 0

    def levels(self) -> list[Level]:
        """The noise levels the model has a score for, least noisy first."""
        return [Level("σ = 0 (the data density)")]

    def evaluation_levels(self) -> list[float]:
        """The levels at which the command line's `evaluate` reports the Fisher divergence."""
        return [self.fixed_level()]

    def target_density(self, density, level: float):
        """The density whose score the model should match at `level` (a GaussianMixture)."""
        return density

    # ------------------------------------------------------------------ networks as score models
    def score_model(self, net, density=None, stats: dict | None = None) -> ScoreModel:
        """The trained `net` as a ScoreModel over the method's range, or, with net None, the exact score
        of `density` over the same range (the same schedule for a DDPM method). `stats` ({"mean", "var",
        "cov"}: the training data's moments) let samplers start from the matched Gaussian."""
        if net is None:
            if density is None:
                raise ValueError("the exact score needs a density")
            return self.exact_score(density)
        sm = self.network_score(net)
        if stats is not None:
            sm.with_data_stats(stats["mean"], stats.get("var"), stats.get("cov"))
        return sm

    def network_score(self, net) -> ScoreModel:
        return from_network(net, None, sigma=self.fixed_level())

    def exact_score(self, density) -> ScoreModel:
        # the exact score's range starts where the network's does (a DSM network knows only p_σ at its
        # σ), so both drive plain Langevin (at the range's low end) to the same target
        sig = self.noise_levels()
        if sig is None:
            return ExactScore(density, self.fixed_level() or 0.01)
        low = self.fixed_level() or float(sig[-1])
        return ExactScore(density, low, float(sig[0]))

    def score_field(self, sm: ScoreModel, level: float) -> Callable[[torch.Tensor], torch.Tensor]:
        """x ↦ the model's score at `level` (of target_density(…, level)), through the ScoreModel."""
        return lambda x: answer(sm, Query.score(x, float(level)))

    # ------------------------------------------------------------------ sampling
    def sampler_defaults(self, name: str) -> SamplerOptions:
        """The options sampler `name` starts from on this method's model: the binding's sampling
        settings, then the method's own (`own_sampler_defaults`)."""
        values = {**self.sampling.get("*", {}), **self.sampling.get(name, {}), **self.own_sampler_defaults(name)}
        return SamplerOptions(**values)

    def own_sampler_defaults(self, name: str) -> dict:
        return {}

    def initial_noise(self, sampler, name: str, shape, generator: torch.Generator, device=None) -> torch.Tensor:
        """Starting particles of sampler `name`: its Gaussian prior, prior_std · z (matched to p_σmax
        when the model knows its data's moments), or U[0, 1]ᵈ for a sampler in `uniform_start`."""
        if name in self.uniform_start:
            return torch.rand(shape, generator=generator, device=device)
        return prior_sample(sampler, torch.randn(shape, generator=generator, device=device))

    # ------------------------------------------------------------------ training feedback
    def loss_bins(self) -> LossBins | None:
        """The bins of the loss-per-noise-level curve; None for a method without levels."""
        return None

    def divergence_advice(self) -> str:
        """What to change (besides the learning rate) when the loss became nan or inf, in the words of
        the parameters' labels; '' when nothing but the learning rate helps."""
        return ""

    def _label(self, field: str) -> str:
        return next(s.label for s in schema.specs(self.Params) if s.name == field)
