"""The 2D models: `ToyConfig` (one JSON-able config for the CLI, the GUI and the studies), the network
and training method it names (`build_network`, `method_for`), the training loop (`training_steps`,
`train`), its data, the trained network as a ScoreModel and a sampler (`score_model`, `make_sampler`),
the Fisher divergence per level, and checkpoints. What differs between methods lives in the method
classes (trainers.methods); nothing here branches on the objective."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator

import torch

from .atomic import CheckpointError, atomic_torch_save  # noqa: F401  (re-exported for the CLI)
from .conditional import ClassBound, labelled_training_data
from .densities import DEFAULT_DENSITY, GaussianMixture
from .methods import METHODS, Level, Method, method_class  # noqa: F401  (Level: re-exported for the views)
from .nets import build_model
from .priors import sigma_max_for
from .samplers import (Sampler, SamplerOptions, build_sampler, exact_prior_sample, initial_particles,
                       prior_sample)
from .schedules import sigma_grid
from .score_models import ScoreModel

CHECKPOINT_FORMAT = "score-explorer-toy"
CHECKPOINT_VERSION = 1


@dataclass
class ToyConfig:
    density: str = DEFAULT_DENSITY      # preset name or density JSON path (informational for drawn densities)
    model: str = "mlp"                  # mlp | ebm
    objective: str = "dsm"              # a trainers.methods.METHODS name: esm | ssm | dsm | ncsn | ddpm | …
    width: int = 128
    depth: int = 3
    lr: float = 2e-3
    batch: int = 512
    steps: int = 4000
    seed: int = 0
    sigma: float = 0.1                  # DSM noise level
    sigma_max: float = 0.0              # NCSN σ₁; 0 = automatic (the σ_max rule, trainers.priors.sigma_max_for)
    sigma_min: float = 0.05             # NCSN σ_L
    n_levels: int = 10
    ncsn_continuous: bool = True        # NCSN σ ~ log-uniform on [σ_L, σ₁] (False: only the L levels)
    schedule: str = "linear"            # DDPM β schedule: linear | cosine
    n_timesteps: int = 1000
    ddpm_weighting: str = "simple"      # simple | elbo
    ddpm_variance: str = "beta"         # σ_t² = β_t ("beta") or β̃_t ("beta_tilde")
    ssm_projection: str = "rademacher"  # rademacher | gaussian
    ssm_variance_reduced: bool = True
    lr_decay: bool = True               # cosine decay of the learning rate to 0 over `steps` (CLI/tests)
    n_data: int = 0                     # 0: a fresh batch of the density every step; N: N points drawn once
    n_classes: int = 0                  # > 0: a class-conditional network over the density's classes (trainers.conditional)
    p_uncond: float = 0.1               # conditional training: the probability a label is dropped to the null class
    # The fields above from `sigma` to `ssm_variance_reduced` are the built-in methods' parameters (each
    # method's Params names them). A method whose parameter has no field here keeps it in `extra`
    # ({name: value}), so a new method file needs no edit here.
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        method = method_class(self.objective)
        if self.model not in ("mlp", "ebm"):
            raise ValueError(f"unknown model {self.model!r}; choose mlp or ebm")
        for name in ("width", "depth", "batch", "n_levels", "n_timesteps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.n_classes < 0 or not 0 <= self.p_uncond < 1:
            raise ValueError("n_classes must be 0 or more and p_uncond in [0, 1)")
        if self.n_classes and method.cond is None:
            raise ValueError(f"a class-conditional model needs a method with noise levels; {self.objective} has none")
        if self.n_data < 0:
            raise ValueError("n_data must be 0 (fresh data every step) or a positive number of points")
        if not (self.lr > 0 and self.sigma > 0 and self.sigma_min > 0):
            raise ValueError("lr, sigma and sigma_min must be positive")
        own = {f.name for f in fields(self)}
        known = {f.name for m in METHODS.values() for f in fields(m.Params)} - own
        stray = sorted(set(self.extra) - known)
        if stray:
            raise ValueError(f"extra holds {', '.join(stray)}, which no registered method's parameters name")
        method.check_params(self.params())

    def params(self):
        """The chosen method's Params, read from the fields of the same name (else from `extra`)."""
        own = {f.name for f in fields(self)}
        return method_class(self.objective).params_from(
            lambda name, default: getattr(self, name) if name in own else self.extra.get(name, default))

    @classmethod
    def from_dict(cls, d: dict) -> "ToyConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def cond(self):
        """What the chosen method's network is conditioned on: None | "sigma" | "time"."""
        return method_class(self.objective).cond


def auto_sigma_max(density: GaussianMixture) -> float:
    """σ₁ by the σ_max rule (docs/math.md §10.1): the smallest σ at which the matched start
    N(m, C + σ²I) is within priors.TOL nats of p_σ (it replaces Song & Ermon's "largest pairwise
    distance", a proxy for the same aim)."""
    return sigma_max_for(density)


def noise_levels(cfg: ToyConfig, density: GaussianMixture | None = None) -> torch.Tensor:
    """cfg's geometric σ₁ > … > σ_L (σ₁ = 0 in cfg: from the density, or 10 without one): an NCSN
    model's levels, and for every method the σ range its exact score and samplers cover."""
    sigma_max = cfg.sigma_max or (auto_sigma_max(density) if density is not None else 10.0)
    return sigma_grid("geometric", sigma_max, cfg.sigma_min, cfg.n_levels)


def method_for(cfg: ToyConfig, density: GaussianMixture | None = None,
               sigmas: torch.Tensor | None = None) -> Method:
    """cfg's training method, bound to its parameters. Its σ levels are `sigmas` (a checkpoint's), else
    cfg's (noise_levels, computed when first asked). Samplers on its model start from the config's
    L, T and reverse variance (a 2D config holds every method's fields; the Training tab's values)."""
    levels = sigmas if sigmas is not None else (lambda: noise_levels(cfg, density))
    sampling = {"*": {"variance": cfg.ddpm_variance, "n_levels": cfg.n_levels, "n_timesteps": cfg.n_timesteps}}
    return method_class(cfg.objective)(cfg.params(), sigmas=levels, sampling=sampling)


def build_network(cfg: ToyConfig) -> torch.nn.Module:
    """The untrained network cfg describes, its weights initialised from cfg.seed without touching the
    caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_model(cfg.model, cfg.cond, cfg.width, cfg.depth, cfg.n_timesteps, cfg.n_classes)


def build_model_and_method(cfg: ToyConfig, density: GaussianMixture | None = None,
                           sigmas: torch.Tensor | None = None) -> tuple[torch.nn.Module, Method]:
    """(build_network(cfg), method_for(cfg, density, sigmas)): what training starts from."""
    return build_network(cfg), method_for(cfg, density, sigmas)


@dataclass
class StepInfo:
    step: int      # number of optimiser steps done
    loss: float
    levels: torch.Tensor | None = None        # noise level of each example (σ for NCSN, t for DDPM)
    level_losses: torch.Tensor | None = None  # each example's loss term (their mean is `loss`)


def training_steps(model: torch.nn.Module, method: Method, sample_batch: Callable[[int], torch.Tensor],
                   lr: float = 1e-3, batch: int = 512, seed: int = 0,
                   optimizer: torch.optim.Optimizer | None = None, start_step: int = 0,
                   decay_steps: int | None = None) -> Iterator[StepInfo]:
    """One Adam step per `next()`: draw a batch, evaluate the method's loss terms, update. Infinite; the caller
    decides when to stop (the CLI after cfg.steps, the GUI worker when cancelled). With `decay_steps`
    the learning rate follows a cosine from lr to 0 over that many steps (then stays at 0).
    A non-finite loss raises FloatingPointError with a hint instead of silently corrupting the weights."""
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    base_lrs = [group["lr"] for group in opt.param_groups]
    gen = torch.Generator().manual_seed(seed)
    model.train()
    step = start_step
    while True:
        x = sample_batch(batch)
        net = model
        if isinstance(x, tuple):      # (points, labels after dropout): a class-conditional batch
            x, net = x[0], ClassBound(model, x[1])
        terms, levels = method.terms(net, x, gen)
        loss = terms.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {float(loss.detach())} at step {step + 1}; "
                                     "try a smaller learning rate or a larger σ")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if decay_steps:
            scale = 0.5 * (1 + math.cos(math.pi * min(step / decay_steps, 1.0)))
            for group, base in zip(opt.param_groups, base_lrs):
                group["lr"] = base * scale
        opt.step()
        step += 1
        yield StepInfo(step, float(loss.detach()), None if levels is None else levels.detach(),
                       None if levels is None else terms.detach())


def training_data(cfg: ToyConfig, density: GaussianMixture):
    """(sample_batch(n), training points or None). With cfg.n_data = N, a fixed training set of N points
    is drawn once (seed cfg.seed + 2) and batches resample it; otherwise every batch is fresh."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if cfg.n_classes:
        return labelled_training_data(cfg, density, gen)
    if not cfg.n_data:
        return (lambda n: density.sample(n, gen)), None
    points = density.sample(cfg.n_data, torch.Generator().manual_seed(cfg.seed + 2))
    return (lambda n: points[torch.randint(len(points), (n,), generator=gen)]), points


def train(cfg: ToyConfig, density: GaussianMixture, progress: Callable[[StepInfo], None] | None = None):
    """Train for cfg.steps steps; returns (model, losses)."""
    model, method = build_model_and_method(cfg, density)
    sample_batch, _ = training_data(cfg, density)
    losses = []
    for info in training_steps(model, method, sample_batch, cfg.lr, cfg.batch,
                               cfg.seed, decay_steps=cfg.steps if cfg.lr_decay else None):
        losses.append(info.loss)
        if progress:
            progress(info)
        if info.step >= cfg.steps:
            break
    model.eval()
    return model, losses


# ------------------------------------------------------------------ one score model, every sampler
def data_stats(cfg: ToyConfig, density: GaussianMixture | None) -> dict | None:
    """The moments of the data a model trained with cfg on `density` saw, JSON-able {"mean", "var",
    "cov"}: the fixed training set's (cfg.n_data, population moments) or the density's; None without
    a density."""
    if density is None:
        return None
    points = training_data(cfg, density)[1]
    if points is None:
        m, c = density.mean(), density.covariance()
    else:
        p = points.double()
        m = p.mean(0)
        c = (p - m).T @ (p - m) / len(p)
    return {"mean": m.tolist(), "var": float(torch.diagonal(c).mean()), "cov": c.tolist()}


def stats_from_extra(extra: dict) -> dict | None:
    """A checkpoint's data statistics (None for an old checkpoint without them)."""
    st = extra.get("data_stats")
    return st if isinstance(st, dict) and st.get("mean") is not None else None


def score_model(model: torch.nn.Module | None, cfg: ToyConfig, density: GaussianMixture | None = None,
                sigmas: torch.Tensor | None = None, stats: dict | None = None) -> ScoreModel:
    """The trained `model` as a ScoreModel (its trained σ range from cfg/sigmas), or, with model None,
    the exact score of `density` over the same range (Method.score_model). A network carries the
    moments of its training data (`stats`, a checkpoint's; default: from cfg and `density`,
    data_stats), so samplers start from the matched Gaussian (docs/math.md §10.1)."""
    if model is not None:
        model.eval()
        if stats is None:
            stats = data_stats(cfg, density)
    return method_for(cfg, density, sigmas).score_model(model, density, stats)


def make_sampler(name: str, cfg: ToyConfig, model: torch.nn.Module | None = None,
                 density: GaussianMixture | None = None, sigmas: torch.Tensor | None = None,
                 options: SamplerOptions | None = None, **overrides) -> Sampler:
    """Registry sampler `name` driven by the trained `model`, or by the exact score of `density` when
    model is None, with the method's sampler defaults unless `options` are given. Any model drives any
    sampler (trainers.score_models converts between them)."""
    sm = score_model(model, cfg, density, sigmas)
    return build_sampler(name, sm, options or method_for(cfg, density, sigmas).sampler_defaults(name), **overrides)


START_CHOICES = ("prior", "exact")


def initial_for(sampler: Sampler, n: int, init: str = "gaussian", bounds=None,
                generator: torch.Generator | None = None, start: str = "prior") -> torch.Tensor:
    """Starting particles: with init "gaussian", the sampler's Gaussian prior (`start` "prior": matched
    to p_σmax when the model knows its data's moments, samplers.prior_sample) or, with the exact score,
    exact draws of p_σmax (`start` "exact", samplers.exact_prior_sample); or uniform over bounds."""
    if start not in START_CHOICES:
        raise ValueError(f"unknown start {start!r}; choose prior or exact")
    if init == "gaussian" and start == "exact":
        return exact_prior_sample(sampler, n, generator)
    x = initial_particles(n, init, bounds, generator)
    return prior_sample(sampler, x) if init == "gaussian" else x


# ------------------------------------------------------------------ Fisher divergence
def fisher_metric(cfg: ToyConfig, density: GaussianMixture, n_eval: int = 1024):
    """fn(model) -> (Fisher divergence at the least-noisy level the model knows, label), on samples
    of that level's density (fixed seed, so the curve moves only with the model)."""
    from .metrics import fisher_divergence
    method = method_for(cfg)
    lev = method.levels()[0]
    target = method.target_density(density, lev.value)
    x = target.sample(n_eval, generator=torch.Generator().manual_seed(12345))

    def fn(model):
        return fisher_divergence(method.score_field(method.score_model(model), lev.value), target, x), lev.label
    return fn


def fisher_per_level(model, cfg: ToyConfig, density: GaussianMixture, sigmas: torch.Tensor,
                     n: int = 2000, seed: int = 0) -> list[dict]:
    """E_{p_level}‖s_θ − ∇log p_level‖² at each of the method's evaluation levels, on samples of that
    level's density; rows {"sigma": σ} or {"t": t} (Method.level_name) with "fisher"."""
    from .metrics import fisher_divergence
    gen = torch.Generator().manual_seed(seed)
    method = method_for(cfg, density, sigmas)
    sm = method.score_model(model)
    key = method.level_name
    rows = []
    for level in method.evaluation_levels():
        target = method.target_density(density, level)
        x = target.sample(n, gen)
        rows.append({key: level if key == "sigma" else int(level),
                     "fisher": fisher_divergence(method.score_field(sm, level), target, x)})
    return rows


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(path, model: torch.nn.Module, cfg: ToyConfig, density: GaussianMixture | None = None,
                    extra: dict | None = None) -> Path:
    """Weights plus JSON-able metadata only, written atomically; loadable with weights_only=True.
    With a density, extra["data_stats"] records the training data's moments (fitting.data_stats)."""
    extra = dict(extra or {})
    if density is not None and "data_stats" not in extra:
        extra["data_stats"] = data_stats(cfg, density)
    ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": cfg.to_dict(),
            "state_dict": model.state_dict(), "density": density.to_dict() if density else None,
            "extra": extra}
    return atomic_torch_save(ckpt, path)


def load_checkpoint(path):
    """(model, cfg, density or None, extra). Never unpickles code: weights_only=True. extra["data_stats"]:
    the training data's moments (from the checkpoint's density for one saved without them; absent
    when it has no density either)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, foreign pickle, not a torch file at all
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a Score Explorer 2D checkpoint")
    if ckpt.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer version (format {ckpt['version']})")
    cfg = ToyConfig.from_dict(ckpt["config"])
    model = build_model(cfg.model, cfg.cond, cfg.width, cfg.depth, cfg.n_timesteps, cfg.n_classes)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    density = GaussianMixture.from_dict(ckpt["density"]) if ckpt.get("density") else None
    extra = dict(ckpt.get("extra") or {})
    if stats_from_extra(extra) is None and density is not None:
        extra["data_stats"] = data_stats(cfg, density)     # an older checkpoint: its density's moments
    return model, cfg, density, extra


def sigmas_from_extra(extra: dict) -> torch.Tensor | None:
    s = extra.get("sigmas")
    return torch.tensor(s, dtype=torch.float32) if s else None


