"""An image RunConfig bound to the training methods (trainers.methods: the same NCSN and DDPM classes
the 2D explorer trains): its loss, score model, sampler defaults, initial noise and loss bins come
from the method; this module holds only what is about images (the config's sections, previews,
precision, clipping to the data range, and `generate`).

A run's network is wrapped as a ScoreModel, so every registry sampler (langevin, annealed, ddpm, ddim,
pf-ode, pc) works on every run: a DDPM ε-network answers σ-queries at the fractional timestep t(σ), an
NCSN σ-network answers ε-queries through σ_t = √((1−ᾱ_t)/ᾱ_t).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..conditional import ClassBound
from ..guidance import Guided
from ..methods import METHODS, Method
from ..samplers import SAMPLERS, Cancelled, Sampler, build_sampler, sampler_class
from ..schedules import DDPMSchedule
from ..score_models import ScoreModel
from .config import ConfigError

SAMPLER_NAMES = tuple(SAMPLERS)

# A method's parameters live in the RunConfig section of its name (cfg.ddpm, cfg.ncsn), some under
# other names; a parameter the section lacks takes the value images train with (NCSN: on the L
# levels only, as Song & Ermon).
SECTION_NAMES = {"n_timesteps": "T", "schedule": "beta_schedule", "ddpm_weighting": "loss_weighting",
                 "ddpm_variance": "sample_variance"}
IMAGE_VALUES = {"ncsn_continuous": False}
# Sampler settings a section holds for one sampler: annealed Langevin's ε, T per level, final step.
SECTION_SAMPLING = {"annealed": {"eps": "eps", "steps": "steps_per_level", "final_denoise": "final_denoise"}}
UNIFORM_START = {"ncsn": ("annealed",)}   # NCSN runs start annealed Langevin from U[0, 1] (Song & Ermon §5)


def image_method(cfg, device=None) -> Method:
    """cfg's method (METHODS[cfg.method]) with its section's parameters, its tensors on `device`: the
    DDPM β schedule (a linear one with the section's β ends), the NCSN levels σ₁ > … > σ_L. Samplers
    on its model clip x̂₀ to the data range and take the section's sampler settings."""
    section = getattr(cfg, cfg.method)
    cls = METHODS[cfg.method]
    params = cls.params_from(lambda name, default: getattr(section, SECTION_NAMES.get(name, name),
                                                           IMAGE_VALUES.get(name, default)))
    schedule = None
    if getattr(section, "beta_schedule", None) == "linear":
        schedule = DDPMSchedule.linear(section.T, section.beta_start, section.beta_end)
    sampling = {"*": {"clip_denoised": clip_bound(cfg)}}
    for name, fields in SECTION_SAMPLING.items():
        if all(hasattr(section, f) for f in fields.values()):
            sampling[name] = {k: getattr(section, f) for k, f in fields.items()}
    method = cls(params, schedule=schedule, sampling=sampling, uniform_start=UNIFORM_START.get(cfg.method, ()))
    return method.to(device) if device is not None else method


def make_method(cfg, device) -> Method:
    """The run's training method, its tensors on the training device."""
    return image_method(cfg, device)


PREVIEW_STEPS_PER_LEVEL = 10     # annealed Langevin previews of NCSN runs: T per level at most this


def preview_sampler(cfg) -> tuple[str, int | None]:
    """(registry name, nfe or None for the sampler's default) of the in-training grids:
    ``train.preview_sampler`` / ``train.preview_nfe``; "" means DDIM for DDPM runs, the run's own
    sampler for NCSN runs. A preview is a glance, not the run's result: annealed Langevin on an NCSN
    run with preview_nfe 0 takes at most PREVIEW_STEPS_PER_LEVEL steps per level (L·10 network
    evaluations instead of L·100 for the bundled configs; the grid's label says its NFE)."""
    own = METHODS[cfg.method].natural_sampler
    name = cfg.train.preview_sampler or ("ddim" if cfg.method == "ddpm" else own)
    nfe = cfg.train.preview_nfe or None
    if nfe is None and cfg.method == "ncsn" and name == "annealed":
        n = cfg.ncsn
        nfe = n.n_levels * min(PREVIEW_STEPS_PER_LEVEL, n.steps_per_level) + int(n.final_denoise)
    return name, nfe


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


def score_model(cfg, model, precision: str = "fp32", label=None) -> ScoreModel:
    """The run's network as a ScoreModel (Method.score_model): the DDPM U-Net takes the (possibly
    fractional) timestep, the NCSN U-Net takes σ and was trained on the config's L σ levels only (so
    samplers asking between them, DDPM/DDIM/PF-ODE/PC, get a range note). The method's tensors live
    on the network's device (a sampler step then indexes the schedule there, with no copy from the
    host); ``precision`` "bf16" runs the network under bf16 autocast. A class-conditional network
    (model.n_classes > 0) answers for class ``label`` (an int or an (N,) tensor; None: the null
    class, s(x))."""
    device = _device_of(model)
    if getattr(model, "n_classes", 0):
        model = ClassBound(model, label)
    elif label is not None:
        raise ConfigError("this run is not class-conditional (model.n_classes = 0), so it takes no class; "
                          "train one with --config ddpm_digits_cond (or model.n_classes=10)")
    net = AutocastNet(model, device.type) if precision == "bf16" else model
    return image_method(cfg, device).score_model(net)


def guided_score_model(cfg, model, precision: str = "fp32", label=None, guidance: float = 0.0) -> ScoreModel:
    """``score_model`` for class ``label``, with classifier-free guidance of weight w = ``guidance``:
    (1 + w) s(x|c) − w s(x), s(x) being the same network with the null class (trainers.guidance;
    w = 0: the conditional model, the scale of diffusers' ``guidance_scale`` is 1 + w)."""
    if label is not None and getattr(model, "n_classes", 0):    # checked once here, not in the forward pass
        bad = [int(k) for k in torch.as_tensor(label).reshape(-1).unique() if not 0 <= k < model.n_classes]
        if bad:
            raise ConfigError(f"class {bad[0]} is not one of this run's classes 0 … {model.n_classes - 1}")
    conditional = score_model(cfg, model, precision, label)
    if not guidance:
        return conditional
    if label is None:
        raise ConfigError("guidance needs a class: give --class K with --guidance W")
    try:
        return Guided(conditional, score_model(cfg, model, precision, None), guidance, "cfg")
    except ValueError as e:
        raise ConfigError(str(e)) from e


def clip_bound(cfg) -> float | None:
    """DDPM/DDIM clip x̂₀ to [−c, c] with c = the data range's bound (1 for both methods: DDPM data
    lie in [−1, 1], NCSN data in [0, 1] ⊂ [−1, 1]); None when a DDPM config turns clipping off."""
    if cfg.method == "ddpm" and not cfg.ddpm.clip_denoised:
        return None
    lo, hi = cfg.data_range
    return max(abs(lo), abs(hi))


def image_sampler(cfg, model, name: str | None = None, precision: str = "fp32", label=None,
                  guidance: float = 0.0, **overrides) -> tuple[Sampler, ScoreModel]:
    """(registry sampler `name`, the ScoreModel driving it) for a trained run, from the method's
    sampler defaults (Method.sampler_defaults). `overrides` are sampler options (nfe, eta, solver,
    snr, …); None values keep the defaults. Bad settings raise ConfigError (exit status 2 on the
    command line). ``precision``: "fp32" or "bf16" (the network under bf16 autocast;
    ``sampling_precision`` resolves "auto"). ``label`` / ``guidance``: the class and the CFG weight
    of a class-conditional run (``guided_score_model``)."""
    method = image_method(cfg)
    name = name or method.natural_sampler
    try:
        sampler_class(name)             # the registry's check and message
    except ValueError as e:
        raise ConfigError(str(e)) from e
    sm = guided_score_model(cfg, model, sampling_precision(cfg, _device_of(model), precision), label, guidance)
    try:
        s = build_sampler(name, sm, method.sampler_defaults(name),
                          **{k: v for k, v in overrides.items() if v is not None})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"sampler {name}: {e}") from e
    return s, sm


def initial_noise(cfg, sampler: Sampler, name: str, n: int, device, generator: torch.Generator) -> torch.Tensor:
    """The sampler's Gaussian prior, prior_std · z, except annealed Langevin on an NCSN run, which
    starts from uniform noise on [0, 1] (Method.initial_noise)."""
    shape = (n, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    return image_method(cfg).initial_noise(sampler, name, shape, generator, device)


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
             label=None, guidance: float = 0.0, **overrides) -> Generated:
    """n samples in the data range (and, with record_frames > 0, ~that many chain frames) from the
    registry sampler `sampler` (default: the run's own). Runs in chunks of batch_size; sampling
    uses its own generator, so it never touches the training RNG streams. ``should_stop`` (a
    callable, or None) is asked between sampler steps; when it says yes, ``SamplingStopped`` is
    raised (a stop request is honoured within one network evaluation).

    ``precision`` "auto": bf16 autocast where the run trained in bf16, else fp32 ("fp32" forces
    it). A step reads nothing back from the device except the divergence verdict, every
    ``check_every`` steps (a diverging chain still stops, naming its first bad step). ``probe`` (a
    ``hostreads.StepProbe``) counts the host reads of each sampler step under "sample".

    Class-conditional runs: ``label`` is the class of every sample (an int), or one class per
    sample (a sequence of n), None the null class (s(x)); ``guidance`` the CFG weight w
    (``guided_score_model``)."""
    method = image_method(cfg)
    name = sampler or method.natural_sampler
    precision = sampling_precision(cfg, device, precision)
    per_sample = label is not None and not isinstance(label, int)
    if per_sample and len(label) != n:
        raise ConfigError(f"{len(label)} classes given for {n} samples")

    def build(classes):
        s, sm = image_sampler(cfg, model, name, precision, label=classes, guidance=guidance, **overrides)
        s.check_every = max(1, int(check_every))
        return s, sm
    s, sm = build(label)          # checks every class once; per-sample classes are bound chunk by chunk below
    g = torch.Generator(device=device).manual_seed(seed)
    every = max(1, s.n_steps // record_frames) if record_frames else 0
    step_context = None if probe is None else (lambda: probe.step("sample"))
    shape = (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    xs, frames, steps = [], [], []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        if per_sample:
            s, sm = build(torch.as_tensor(label[start:start + m]))
        x = method.initial_noise(s, name, (m, *shape), g, device)
        try:
            out = s.run(x, g, record_every=every, cancelled=should_stop, step_context=step_context)
        except Cancelled as e:
            raise SamplingStopped(f"{name} sampling stopped at step {e.step}/{s.n_steps}") from None
        xs.append(out.x)
        steps = out.frame_steps
        if every:
            frames.append(out.frames.cpu())
    labels = [("initial noise" if k == 0 else s.label(k - 1)) for k in steps]
    return Generated(torch.cat(xs), torch.cat(frames, dim=1) if frames else None, steps, labels,
                     name, s.nfe, sm.range_note(s.sigmas_used()))
