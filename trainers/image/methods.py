"""What differs between DDPM and NCSN, in one place: the loss, the score model, the sampler defaults,
the initial noise.

The maths lives in the shared core (``trainers.objectives``, ``trainers.score_models``,
``trainers.samplers``, ``trainers.schedules``), which is rank-agnostic; this module only binds it to
a RunConfig. A run's network is wrapped as a ScoreModel, so every registry sampler (langevin,
annealed, ddpm, ddim, pf-ode, pc) works on every run: a DDPM ε-network answers σ-queries at the
fractional timestep t(σ), an NCSN σ-network answers ε-queries through σ_t = √((1−ᾱ_t)/ᾱ_t).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..objectives import ddpm_loss, ncsn_loss
from ..samplers import SAMPLERS, Sampler, SamplerOptions, build_sampler, prior_sample
from ..schedules import DDPMSchedule, geometric_sigmas
from ..score_models import ScoreModel, from_network
from .config import ConfigError

SAMPLER_NAMES = tuple(SAMPLERS)


def image_ddpm_schedule(cfg) -> DDPMSchedule:
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
    terms: Callable           # (model, x, generator) -> (per-example loss terms, their t or σ)
    default_sampler: str
    level: str                # what ``terms`` returns as the noise level: "t" (DDPM) or "sigma" (NCSN)

    def loss(self, model, x, generator) -> torch.Tensor:
        """The scalar training loss (the mean of ``terms``: the same draws, the same value)."""
        return self.terms(model, x, generator)[0].mean()


def make_method(cfg, device) -> Method:
    if cfg.method == "ddpm":
        schedule = image_ddpm_schedule(cfg).to(device)
        w, v = cfg.ddpm.loss_weighting, cfg.ddpm.sample_variance
        return Method("ddpm", lambda m, x, g: ddpm_loss(m, x, schedule, g, weighting=w, variance=v,
                                                        per_example=True),
                      default_sampler(cfg), "t")
    sigmas = ncsn_sigmas(cfg).to(device)
    return Method("ncsn", lambda m, x, g: ncsn_loss(m, x, sigmas, g, per_example=True),
                  default_sampler(cfg), "sigma")


def level_bins(cfg) -> tuple[torch.Tensor, list[float]]:
    """(inner bin edges for ``torch.bucketize``, bin centres) of the loss-per-noise-level log:
    DDPM: 20 equal bins of the timestep t in [0, T); NCSN: one bin per trained σ level
    (edges at the geometric means of neighbouring levels), centred on the level."""
    if cfg.method == "ddpm":
        T, n = cfg.ddpm.T, min(20, cfg.ddpm.T)
        edges = torch.linspace(0, T, n + 1, dtype=torch.float64)
        return edges[1:-1], ((edges[:-1] + edges[1:]) / 2).tolist()
    s = ncsn_sigmas(cfg).double().sort().values
    return (s[:-1] * s[1:]).sqrt(), s.tolist()


PREVIEW_STEPS_PER_LEVEL = 10     # annealed Langevin previews of NCSN runs: T per level at most this


def preview_sampler(cfg) -> tuple[str, int | None]:
    """(registry name, nfe or None for the sampler's default) of the in-training grids:
    ``train.preview_sampler`` / ``train.preview_nfe``; "" means DDIM for DDPM runs, the run's own
    sampler for NCSN runs. A preview is a glance, not the run's result: annealed Langevin on an NCSN
    run with preview_nfe 0 takes at most PREVIEW_STEPS_PER_LEVEL steps per level (L·10 network
    evaluations instead of L·100 for the bundled configs; the grid's label says its NFE)."""
    name = cfg.train.preview_sampler or ("ddim" if cfg.method == "ddpm" else default_sampler(cfg))
    nfe = cfg.train.preview_nfe or None
    if nfe is None and cfg.method == "ncsn" and name == "annealed":
        n = cfg.ncsn
        nfe = n.n_levels * min(PREVIEW_STEPS_PER_LEVEL, n.steps_per_level) + int(n.final_denoise)
    return name, nfe


def default_sampler(cfg) -> str:
    """The sampler a run was trained for: DDPM ancestral (DDPM runs), annealed Langevin (NCSN runs)."""
    return "ddpm" if cfg.method == "ddpm" else "annealed"


PRECISIONS = ("auto", "bf16", "fp32")


class AutocastNet:
    """A network called under bf16 autocast on `device_type`, its output returned in float32 (so
    the samplers' arithmetic stays in fp32). No ``infer``: ScoreModel calls it as a plain net."""

    def __init__(self, net, device_type: str):
        self.net, self.device_type = net, device_type

    def __call__(self, x, c):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.net(x, c).float()


def sampling_precision(cfg, device, precision: str = "auto") -> str:
    """"bf16" or "fp32": "auto" samples in bf16 autocast where the run trained in bf16 (as its
    training steps ran: on the CPU, or on a GPU with bf16 support), else fp32; "bf16"/"fp32" force."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    dev = torch.device(device)
    bf16_ok = dev.type == "cpu" or (dev.type == "cuda" and torch.cuda.is_bf16_supported())
    return "bf16" if cfg.train.precision == "bf16" and bf16_ok else "fp32"


def _device_of(model) -> torch.device:
    p = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return p.device if p is not None else torch.device("cpu")


def score_model(cfg, model, precision: str = "fp32") -> ScoreModel:
    """The run's network as a ScoreModel: the DDPM U-Net takes the (possibly fractional) timestep,
    the NCSN U-Net takes σ and was trained on the config's L σ levels only (so samplers asking
    between them, DDPM/DDIM/PF-ODE/PC, get a range note). The DDPM schedule lives on the network's
    device (a sampler step then indexes it there, with no copy from the host); ``precision`` "bf16"
    runs the network under bf16 autocast."""
    device = _device_of(model)
    net = AutocastNet(model, device.type) if precision == "bf16" else model
    if cfg.method == "ddpm":
        return from_network(net, "time", schedule=image_ddpm_schedule(cfg).to(device))
    return from_network(net, "sigma", sigmas=ncsn_sigmas(cfg), discrete=True)


def clip_bound(cfg) -> float | None:
    """DDPM/DDIM clip x̂₀ to [−c, c] with c = the data range's bound (1 for both methods: DDPM data
    lie in [−1, 1], NCSN data in [0, 1] ⊂ [−1, 1]); None when a DDPM config turns clipping off."""
    if cfg.method == "ddpm" and not cfg.ddpm.clip_denoised:
        return None
    lo, hi = cfg.data_range
    return max(abs(lo), abs(hi))


def sampler_options(cfg, name: str) -> SamplerOptions:
    """Defaults from the run's config: the DDPM reverse variance and clipping; for annealed Langevin
    on an NCSN run, the config's ε, T per level, L and final denoising step (σ range: the model's)."""
    o = SamplerOptions(clip_denoised=clip_bound(cfg))
    if cfg.method == "ddpm":
        o.variance = cfg.ddpm.sample_variance
    elif name == "annealed":
        n = cfg.ncsn
        o.eps, o.steps, o.n_levels, o.final_denoise = n.eps, n.steps_per_level, n.n_levels, n.final_denoise
    return o


def image_sampler(cfg, model, name: str | None = None, precision: str = "fp32",
                  **overrides) -> tuple[Sampler, ScoreModel]:
    """(registry sampler `name`, the ScoreModel driving it) for a trained run. `overrides` are
    SamplerOptions fields (nfe, eta, solver, snr, …); None values keep the defaults. Bad settings
    raise ConfigError (exit status 2 on the command line). ``precision``: "fp32" or "bf16" (the
    network under bf16 autocast; ``sampling_precision`` resolves "auto")."""
    name = name or default_sampler(cfg)
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    sm = score_model(cfg, model, sampling_precision(cfg, _device_of(model), precision))
    try:
        s = build_sampler(name, sm, sampler_options(cfg, name),
                          **{k: v for k, v in overrides.items() if v is not None})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"sampler {name}: {e}") from e
    return s, sm


def initial_noise(cfg, sampler: Sampler, name: str, n: int, device, generator: torch.Generator) -> torch.Tensor:
    """The sampler's Gaussian prior, prior_std · z, except annealed Langevin on an NCSN run, which
    starts from uniform noise on [0, 1] (Song & Ermon 2019, §5)."""
    shape = (n, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    if cfg.method == "ncsn" and name == "annealed":
        return torch.rand(shape, generator=generator, device=device)
    return prior_sample(sampler, torch.randn(shape, generator=generator, device=device))


class SamplingStopped(RuntimeError):
    """``generate``'s ``should_stop`` said yes between two sampler steps (a stop request)."""


@dataclass
class Generated:
    x: torch.Tensor                      # (N, C, H, W) samples in the run's data range, unclipped
    frames: torch.Tensor | None          # (F, N, C, H, W) chain frames (on the CPU), or None
    frame_steps: list[int]
    labels: list[str]
    sampler: str                         # registry name
    nfe: int                             # network evaluations per chain
    note: str                            # the model's range note ('' when it stays in its trained range)


CHECK_EVERY = 25       # image chains read their divergence verdict back every 25 steps (Sampler.check_every)


@torch.no_grad()
def generate(cfg, model, n: int, device, seed: int = 0, sampler: str | None = None,
             batch_size: int = 256, record_frames: int = 0, should_stop=None,
             precision: str = "auto", check_every: int = CHECK_EVERY, probe=None,
             **overrides) -> Generated:
    """n samples in the data range (and, with record_frames > 0, ~that many chain frames) from the
    registry sampler `sampler` (default: the run's own). Runs in chunks of batch_size; sampling
    uses its own generator, so it never touches the training RNG streams. ``should_stop`` (a
    callable, or None) is asked between sampler steps; when it says yes, ``SamplingStopped`` is
    raised (a stop request is honoured within one network evaluation).

    ``precision`` "auto": bf16 autocast where the run trained in bf16, else fp32 ("fp32" forces
    it). A step reads nothing back from the device except the divergence verdict, every
    ``check_every`` steps (a diverging chain still stops, naming its first bad step). ``probe`` (a
    ``hostreads.StepProbe``) counts the host reads of each sampler step under "sample"."""
    name = sampler or default_sampler(cfg)
    s, sm = image_sampler(cfg, model, name, sampling_precision(cfg, device, precision), **overrides)
    s.check_every = max(1, int(check_every))
    g = torch.Generator(device=device).manual_seed(seed)
    every = max(1, s.n_steps // record_frames) if record_frames else 0
    xs, frames, steps = [], [], []
    for start in range(0, n, batch_size):
        x = initial_noise(cfg, s, name, min(batch_size, n - start), device, g)
        chain, steps = ([x.cpu()], [0]) if every else ([], [])
        for k in range(s.n_steps):          # Sampler.run's loop, with a stop check per step
            if should_stop is not None and should_stop():
                raise SamplingStopped(f"{name} sampling stopped at step {k}/{s.n_steps}")
            if probe is None:
                x = s.step(x, k, g).x
            else:
                with probe.step("sample"):
                    x = s.step(x, k, g).x
            if every and ((k + 1) % every == 0 or k + 1 == s.n_steps):
                chain.append(x.cpu())
                steps.append(k + 1)
        xs.append(x)
        if every:
            frames.append(torch.stack(chain))
    labels = [("initial noise" if k == 0 else s.label(k - 1)) for k in steps]
    return Generated(torch.cat(xs), torch.cat(frames, dim=1) if frames else None, steps, labels,
                     name, s.nfe, sm.range_note(s.sigmas_used()))
