"""Glue shared by the 2D CLI, the GUI worker and the tests: a JSON-able config, the model and objective
it describes, one training-step generator, samplers for a trained model, and checkpoints."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

import torch

from .atomic import CheckpointError, atomic_torch_save  # noqa: F401  (re-exported for the CLI)
from .densities import DEFAULT_DENSITY, GaussianMixture
from .nets import build_model
from .objectives import OBJECTIVES, Objective
from .priors import sigma_max_for
from .samplers import (Sampler, SamplerOptions, build_sampler, exact_prior_sample, initial_particles,
                       prior_sample)
from .schedules import DDPMSchedule, sigma_grid
from .score_models import ExactScore, ScoreModel, from_network

CHECKPOINT_FORMAT = "score-explorer-toy"
CHECKPOINT_VERSION = 1


@dataclass
class ToyConfig:
    density: str = DEFAULT_DENSITY      # preset name or density JSON path (informational for drawn densities)
    model: str = "mlp"                  # mlp | ebm
    objective: str = "dsm"              # esm | ssm | dsm | ncsn | ddpm
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

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.model not in ("mlp", "ebm"):
            raise ValueError(f"unknown model {self.model!r}; choose mlp or ebm")
        for name in ("width", "depth", "batch", "n_levels", "n_timesteps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.n_data < 0:
            raise ValueError("n_data must be 0 (fresh data every step) or a positive number of points")
        if not (self.lr > 0 and self.sigma > 0 and self.sigma_min > 0):
            raise ValueError("lr, sigma and sigma_min must be positive")

    @classmethod
    def from_dict(cls, d: dict) -> "ToyConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def cond(self):
        return OBJECTIVES[self.objective].cond


def auto_sigma_max(density: GaussianMixture) -> float:
    """σ₁ by the σ_max rule (docs/math.md §10.1): the smallest σ at which the matched start
    N(m, C + σ²I) is within priors.TOL nats of p_σ (it replaces Song & Ermon's "largest pairwise
    distance", a proxy for the same aim)."""
    return sigma_max_for(density)


def noise_levels(cfg: ToyConfig, density: GaussianMixture | None = None) -> torch.Tensor:
    """cfg's geometric σ₁ > … > σ_L (σ₁ = 0 in cfg: from the density, or 10 without one)."""
    sigma_max = cfg.sigma_max or (auto_sigma_max(density) if density is not None else 10.0)
    return sigma_grid("geometric", sigma_max, cfg.sigma_min, cfg.n_levels)


def ddpm_schedule(cfg: ToyConfig) -> DDPMSchedule:
    return DDPMSchedule.from_name(cfg.schedule, cfg.n_timesteps)


def build_model_and_objective(cfg: ToyConfig, density: GaussianMixture | None = None,
                              sigmas: torch.Tensor | None = None):
    """The network and bound loss for cfg. For NCSN, σ levels come from `sigmas`, else from cfg/density.
    Weights are initialised from cfg.seed without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, cfg.cond, cfg.width, cfg.depth, cfg.n_timesteps)
    params = {
        "esm": {},
        "ssm": {"projection": cfg.ssm_projection, "variance_reduced": cfg.ssm_variance_reduced},
        "dsm": {"sigma": cfg.sigma},
        "ncsn": {"sigmas": sigmas if sigmas is not None else noise_levels(cfg, density),
                 "continuous": cfg.ncsn_continuous},
        "ddpm": {"schedule": ddpm_schedule(cfg), "weighting": cfg.ddpm_weighting, "variance": cfg.ddpm_variance},
    }[cfg.objective]
    return model, Objective(cfg.objective, **params)


@dataclass
class StepInfo:
    step: int      # number of optimiser steps done
    loss: float
    levels: torch.Tensor | None = None        # noise level of each example (σ for NCSN, t for DDPM)
    level_losses: torch.Tensor | None = None  # each example's loss term (their mean is `loss`)


def training_steps(model: torch.nn.Module, objective: Callable, sample_batch: Callable[[int], torch.Tensor],
                   lr: float = 1e-3, batch: int = 512, seed: int = 0,
                   optimizer: torch.optim.Optimizer | None = None, start_step: int = 0,
                   decay_steps: int | None = None) -> Iterator[StepInfo]:
    """One Adam step per `next()`: draw a batch, evaluate the objective, update. Infinite; the caller
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
        terms, levels = objective.terms(model, x, gen) if hasattr(objective, "terms") \
            else (objective(model, x, gen).reshape(1), None)
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
    if not cfg.n_data:
        return (lambda n: density.sample(n, gen)), None
    points = density.sample(cfg.n_data, torch.Generator().manual_seed(cfg.seed + 2))
    return (lambda n: points[torch.randint(len(points), (n,), generator=gen)]), points


def train(cfg: ToyConfig, density: GaussianMixture, progress: Callable[[StepInfo], None] | None = None):
    """Train for cfg.steps steps; returns (model, losses)."""
    model, objective = build_model_and_objective(cfg, density)
    sample_batch, _ = training_data(cfg, density)
    losses = []
    for info in training_steps(model, objective, sample_batch, cfg.lr, cfg.batch,
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
    the exact score of `density` over the same σ range (and, for a DDPM config, the same schedule).
    A network carries the moments of its training data (`stats`, a checkpoint's; default: from cfg and
    `density`, fitting.data_stats), so samplers start from the matched Gaussian (docs/math.md §10.1)."""
    if sigmas is None:
        sigmas = noise_levels(cfg, density)
    if model is None:
        if density is None:
            raise ValueError("the exact score needs a density")
        if cfg.cond == "time":
            return ExactScore(density, schedule=ddpm_schedule(cfg))
        # a DSM network knows only p_σ at its σ: the exact score's range starts there too, so both
        # drive plain Langevin (at the range's low end) to the same target
        low = cfg.sigma if cfg.objective == "dsm" else float(sigmas[-1])
        return ExactScore(density, low, float(sigmas[0]))
    model.eval()
    level = cfg.sigma if cfg.objective == "dsm" else 0.0
    sm = from_network(model, cfg.cond, sigmas=sigmas, schedule=ddpm_schedule(cfg), sigma=level,
                      discrete=not cfg.ncsn_continuous)
    stats = stats if stats is not None else data_stats(cfg, density)
    if stats is not None:
        sm.with_data_stats(stats["mean"], stats.get("var"), stats.get("cov"))
    return sm


def default_options(name: str, cfg: ToyConfig) -> SamplerOptions:
    """The CLI's defaults for sampler `name` on a model trained with cfg."""
    return SamplerOptions(variance=cfg.ddpm_variance, n_levels=cfg.n_levels, n_timesteps=cfg.n_timesteps)


def make_sampler(name: str, cfg: ToyConfig, model: torch.nn.Module | None = None,
                 density: GaussianMixture | None = None, sigmas: torch.Tensor | None = None,
                 options: SamplerOptions | None = None, **overrides) -> Sampler:
    """Registry sampler `name` driven by the trained `model`, or by the exact score of `density` when
    model is None. Any model drives any sampler (trainers.score_models converts between them)."""
    sm = score_model(model, cfg, density, sigmas)
    return build_sampler(name, sm, options or default_options(name, cfg), **overrides)


def natural_sampler(cfg: ToyConfig) -> str:
    """The sampler a model was trained for: annealed Langevin (NCSN), DDPM, or plain Langevin."""
    return {"sigma": "annealed", "time": "ddpm"}.get(cfg.cond, "langevin")


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


# ------------------------------------------------------------------ noise levels a model knows
@dataclass
class Level:
    """One noise level of a trained model, as the score view and metrics name it."""
    label: str
    sigma: float | None = None   # compare with p_σ (None and t None: the data density itself)
    t: int | None = None         # compare with the DDPM marginal q(x_t)

    @property
    def value(self) -> float:
        """The `level` argument of model_score_at / target_density_at."""
        return float(self.t) if self.t is not None else float(self.sigma or 0.0)


def levels_of(cfg: ToyConfig, sigmas: torch.Tensor | None = None,
              density: GaussianMixture | None = None) -> list[Level]:
    """The noise levels a model trained with cfg has a score for, least noisy first."""
    if cfg.objective == "ncsn":
        sig = sigmas if sigmas is not None else noise_levels(cfg, density)
        return [Level(f"σ{i + 1} = {float(sig[i]):.3g}", sigma=float(sig[i])) for i in reversed(range(len(sig)))]
    if cfg.objective == "ddpm":
        sch = ddpm_schedule(cfg)
        return [Level(f"t = {t + 1}/{sch.T}  (√(1−ᾱ) = {float(sch.sqrt_one_minus_alpha_bars[t]):.3g})", t=t)
                for t in range(sch.T)]
    if cfg.objective == "dsm":
        return [Level(f"σ = {cfg.sigma:.3g} (DSM fits p_σ)", sigma=cfg.sigma)]
    return [Level("σ = 0 (the data density)")]


def fisher_metric(cfg: ToyConfig, density: GaussianMixture, n_eval: int = 1024):
    """fn(model) -> (Fisher divergence at the least-noisy level the model knows, label), on samples
    of that level's density (fixed seed, so the curve moves only with the model)."""
    from .metrics import fisher_divergence
    lev = levels_of(cfg)[0]
    target = target_density_at(cfg, density, lev.value)
    x = target.sample(n_eval, generator=torch.Generator().manual_seed(12345))

    def fn(model):
        return fisher_divergence(model_score_at(model, cfg, lev.value), target, x), lev.label
    return fn


# ------------------------------------------------------------------ evaluation
def model_score_at(model, cfg: ToyConfig, level: float):
    """The model's score field at one noise level: σ for NCSN (ignored by unconditioned models),
    the 0-based timestep t for DDPM (score = −ε_θ/√(1−ᾱ_t))."""
    if cfg.cond == "sigma":
        return lambda x: model(x, torch.full((len(x),), float(level)))
    if cfg.cond == "time":
        schedule = ddpm_schedule(cfg)
        t = int(level)
        return lambda x: schedule.eps_to_score(model(x, torch.full((len(x),), t, dtype=torch.long)),
                                               torch.full((len(x),), t, dtype=torch.long))
    return lambda x: model(x)


def target_density_at(cfg: ToyConfig, density: GaussianMixture, level: float) -> GaussianMixture:
    """The density whose score the model should match at `level`: p for ESM/SSM, p_σ for DSM/NCSN,
    the DDPM marginal q(x_t) for DDPM."""
    if cfg.cond == "time":
        return density.ddpm_marginal(float(ddpm_schedule(cfg).alpha_bars[int(level)]))
    if cfg.objective == "dsm":
        return density.noised(cfg.sigma)
    if cfg.cond == "sigma":
        return density.noised(float(level))
    return density


def evaluation_levels(cfg: ToyConfig, sigmas: torch.Tensor) -> list[float]:
    if cfg.cond == "sigma":
        return [float(s) for s in sigmas]
    if cfg.cond == "time":
        return [float(t) for t in torch.linspace(0, cfg.n_timesteps - 1, min(10, cfg.n_timesteps)).round().long()]
    return [cfg.sigma if cfg.objective == "dsm" else 0.0]


def fisher_per_level(model, cfg: ToyConfig, density: GaussianMixture, sigmas: torch.Tensor,
                     n: int = 2000, seed: int = 0) -> list[dict]:
    """E_{p_level}‖s_θ − ∇log p_level‖² at each noise level, on samples of that level's density."""
    from .metrics import fisher_divergence
    gen = torch.Generator().manual_seed(seed)
    key = {"sigma": "sigma", "time": "t"}.get(cfg.cond, "sigma")
    rows = []
    for level in evaluation_levels(cfg, sigmas):
        target = target_density_at(cfg, density, level)
        x = target.sample(n, gen)
        rows.append({key: level if key == "sigma" else int(level),
                     "fisher": fisher_divergence(model_score_at(model, cfg, level), target, x)})
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
    model = build_model(cfg.model, cfg.cond, cfg.width, cfg.depth, cfg.n_timesteps)
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

