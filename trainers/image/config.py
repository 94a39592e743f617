"""Image-run configuration: TOML files read into dataclasses (never exec'd).

A config is one TOML file with a top-level ``method`` ("ddpm", "ncsn" or "fm") and the sections
``[data]``, ``[model]``, ``[ddpm]``, ``[ncsn]``, ``[fm]``, ``[train]`` and ``[sample]``; any field left out
keeps the dataclass default below. Command-line overrides are ``section.field=value`` (or just
``field=value`` when the name is unique across sections); the value is parsed by the field's
declared type, so ``train.lr=abc`` is an error that names the field and the expected type.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "assets" / "configs"

METHODS = ("ddpm", "ncsn", "fm")
DATASETS = ("digits", "mnist", "cifar10", "celeba", "folder")


class ConfigError(ValueError):
    """A config file or an override is invalid; the message says which key and why."""


@dataclass
class DataConfig:
    dataset: str = "digits"          # one of DATASETS
    data_dir: str = ""               # folder holding the files (ignored for digits)
    image_size: int = 8              # side of the square training images
    channels: int = 1
    random_flip: bool = False        # random horizontal flips (CIFAR-10 / CelebA in both papers)
    celeba_crop: int = 140           # CelebA: centre crop (NCSN: 140) before resizing to image_size
    num_workers: int = 0             # DataLoader workers for folder-backed datasets
    # Pixel range the method expects: [-1, 1] for DDPM (Ho et al. §4), [0, 1] for NCSN
    # (Song & Ermon §5). "" picks the method's convention.
    scale: str = ""


@dataclass
class ModelConfig:
    ch: int = 32                     # base channel count
    ch_mult: list[int] = field(default_factory=lambda: [1, 2])
    num_res_blocks: int = 1
    attn_resolutions: list[int] = field(default_factory=list)   # feature-map sides with self-attention
    dropout: float = 0.0
    resamp_with_conv: bool = True
    # stride-2 conv padding: "symmetric" (1 pixel each side; the default, older runs) or "tf_same"
    # (the reference TF code's "SAME": 0 before, 1 after; trainers/image/unet.py Downsample)
    downsample_pad: str = "symmetric"
    # > 0: a class-conditional U-Net (issue #22): a learned class embedding (n_classes + 1 rows, the
    # last the null class) added to the time embedding, so one network gives s(x|c) and s(x);
    # the dataset must carry labels 0 … n_classes − 1 (digits, MNIST). 0: unconditional.
    n_classes: int = 0


@dataclass
class DDPMConfig:
    T: int = 1000
    beta_schedule: str = "linear"    # "linear" (Ho et al.) or "cosine" (Nichol & Dhariwal)
    beta_start: float = 1e-4
    beta_end: float = 0.02
    loss_weighting: str = "simple"   # "simple" (L_simple, the paper's default) or "elbo"
    sample_variance: str = "beta"    # sigma_t^2 = beta_t ("beta") or beta~_t ("beta_tilde")
    # Clip the predicted x_0 to [-1, 1] and step with the posterior mean, as the reference
    # image code does (diffusion_tf, clip_denoised=True); false: the plain eq. 11 mean.
    clip_denoised: bool = True


@dataclass
class NCSNConfig:
    sigma_max: float = 1.0           # sigma_1
    sigma_min: float = 0.01          # sigma_L
    n_levels: int = 10               # L, geometric sequence
    steps_per_level: int = 100       # T of annealed Langevin (Algorithm 1)
    eps: float = 2e-5                # epsilon; alpha_i = eps * sigma_i^2 / sigma_L^2
    final_denoise: bool = False      # NCSNv2's extra x + sigma_L^2 s(x, sigma_L) step


@dataclass
class FMConfig:
    # flow matching on x_t = (1 − t) x₀ + t z (trainers.methods.flow_matching; the DDPM U-Net fed 1000·t):
    # "independent" pairs, or "ot" (each minibatch paired by its exact optimal-transport plan)
    coupling: str = "independent"


@dataclass
class TrainConfig:
    n_steps: int = 2000
    batch_size: int = 128            # global batch (split across DDP ranks)
    lr: float = 2e-4
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    warmup: int = 5000               # linear learning-rate warm-up steps
    grad_clip: float = 1.0           # global grad-norm clip; 0 disables
    # class-conditional runs (model.n_classes > 0): each label is replaced by the null class with
    # this probability (label dropout, Ho & Salimans 2022), so the network also learns s(x)
    p_uncond: float = 0.1
    ema_decay: float = 0.9999        # 0 disables EMA (then the raw weights are "EMA")
    # EMA warm-up: update t (0-based) uses decay_t = min(ema_decay, (1 + t) / (10 + t)), so the
    # EMA follows the weights early instead of staying near the initialisation for ~1/(1-decay) steps
    ema_warmup: bool = True
    seed: int = 0
    log_every: int = 50              # progress.jsonl / tqdm postfix cadence (steps)
    ckpt_every: int = 5000
    sample_every: int = 5000         # periodic sample grids; 0 disables
    keep_ckpts: int = 3
    n_grid: int = 64                 # images in the periodic grids
    # Sampler of the periodic (preview) grids, a registry name (trainers.samplers.SAMPLERS); ""
    # picks DDIM for DDPM runs and the run's own sampler (annealed Langevin) for NCSN runs.
    # preview_nfe: its network evaluations per chain; 0 keeps that sampler's default (DDIM: 50).
    # `sample` / `evaluate` keep the run's full sampler unless told otherwise.
    preview_sampler: str = ""
    preview_nfe: int = 0
    precision: str = "bf16"          # "bf16" (autocast, CUDA or CPU), "fp16" (autocast + GradScaler, CUDA) or "fp32"
    # channels_last weights and batches (any device): a measured option, off until
    # benchmarks/gpu_check.py shows it helps on the GPU at hand (GroupNorm wants NCHW on CUDA)
    channels_last: bool = False
    compile: bool = False            # torch.compile the model
    device: str = "auto"             # "auto", "cpu", "cuda", "cuda:1", ...
    threads: int = 0                 # torch.set_num_threads on CPU; 0 keeps torch's default


@dataclass
class SampleConfig:
    n: int = 64
    batch_size: int = 256


@dataclass
class RunConfig:
    method: str = "ddpm"
    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ddpm: DDPMConfig = field(default_factory=DDPMConfig)
    ncsn: NCSNConfig = field(default_factory=NCSNConfig)
    fm: FMConfig = field(default_factory=FMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    # -- derived ------------------------------------------------------------------------------
    @property
    def data_range(self) -> tuple[float, float]:
        scale = self.data.scale or ("zero_one" if self.method == "ncsn" else "minus_one_one")
        return (-1.0, 1.0) if scale == "minus_one_one" else (0.0, 1.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def validate(self) -> "RunConfig":
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.data.dataset not in DATASETS:
            raise ConfigError(f"data.dataset must be one of {DATASETS}, got {self.data.dataset!r}")
        if self.data.scale not in ("", "minus_one_one", "zero_one"):
            raise ConfigError("data.scale must be '', 'minus_one_one' or 'zero_one'")
        if self.data.channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {self.data.channels}")
        n_down = len(self.model.ch_mult) - 1
        if self.data.image_size % (2 ** n_down):
            raise ConfigError(
                f"data.image_size={self.data.image_size} must be divisible by 2^{n_down} "
                f"(model.ch_mult has {len(self.model.ch_mult)} levels)")
        if self.model.downsample_pad not in ("symmetric", "tf_same"):
            raise ConfigError("model.downsample_pad must be 'symmetric' or 'tf_same'")
        if self.ddpm.beta_schedule not in ("linear", "cosine"):
            raise ConfigError("ddpm.beta_schedule must be 'linear' or 'cosine'")
        if self.ddpm.loss_weighting not in ("simple", "elbo"):
            raise ConfigError("ddpm.loss_weighting must be 'simple' or 'elbo'")
        if self.ddpm.sample_variance not in ("beta", "beta_tilde"):
            raise ConfigError("ddpm.sample_variance must be 'beta' or 'beta_tilde'")
        if self.train.precision not in ("bf16", "fp16", "fp32"):
            raise ConfigError("train.precision must be 'bf16', 'fp16' or 'fp32'")
        if self.fm.coupling not in ("independent", "ot"):
            raise ConfigError("fm.coupling must be 'independent' or 'ot'")
        if not (self.ncsn.sigma_max > self.ncsn.sigma_min > 0):
            raise ConfigError("ncsn needs sigma_max > sigma_min > 0")
        if self.train.batch_size < 1 or self.train.n_steps < 0:
            raise ConfigError("train.batch_size must be >= 1 and train.n_steps >= 0")
        if not 0 <= self.train.ema_decay < 1:
            raise ConfigError("train.ema_decay must be in [0, 1)")
        if self.train.preview_sampler:
            from ..samplers import SAMPLERS         # torch: only when a sampler is named

            if self.train.preview_sampler not in SAMPLERS:
                raise ConfigError(f"train.preview_sampler={self.train.preview_sampler!r}: choose "
                                  f"one of {', '.join(SAMPLERS)} (or \"\" for the method's default)")
        if self.model.n_classes < 0:
            raise ConfigError(f"model.n_classes must be 0 (unconditional) or the number of classes, "
                              f"got {self.model.n_classes}")
        if not 0 <= self.train.p_uncond < 1:
            raise ConfigError(f"train.p_uncond must be in [0, 1), got {self.train.p_uncond}")
        if self.train.preview_nfe < 0:
            raise ConfigError("train.preview_nfe must be >= 0 (0: the sampler's default)")
        return self


_SECTIONS = {f.name: f.type for f in dataclasses.fields(RunConfig)
             if f.name not in ("method", "name")}


def _section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(RunConfig)
    return {name: hints[name] for name in _SECTIONS}


def _coerce(value, tp, where: str):
    """Check/convert a TOML value (or an override string) to the dataclass field type."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{where}: cannot parse {value!r} as a list ({e})") from None
            else:
                value = [v for v in text.split(",") if v.strip()] if text else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, where) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
            if f.is_integer():
                return int(f)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported field type {tp}")


def _build_section(cls, table: dict, where: str):
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in table.items()}
    return cls(**kwargs)


def from_dict(d: dict) -> RunConfig:
    d = dict(d)
    classes = _section_classes()
    top_known = {"method", "name", *classes}
    unknown = sorted(set(d) - top_known)
    if unknown:
        raise ConfigError(f"unknown top-level key(s): {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(top_known))}")
    kwargs = {}
    for key in ("method", "name"):
        if key in d:
            kwargs[key] = _coerce(d[key], str, key)
    for name, cls in classes.items():
        kwargs[name] = _build_section(cls, d.get(name, {}), name)
    return RunConfig(**kwargs).validate()


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def resolve_config_path(spec: str | Path) -> Path:
    """A bundled config name (``ddpm_digits``) or a path to a TOML file."""
    p = Path(spec)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return p
    candidate = CONFIG_DIR / f"{spec}.toml"
    if candidate.is_file():
        return candidate
    raise ConfigError(f"unknown config {spec!r}: not a file, and not one of the bundled configs "
                      f"({', '.join(available_configs())}) in {CONFIG_DIR}")


def load_config(spec: str | Path, overrides: typing.Sequence[str] = ()) -> RunConfig:
    path = resolve_config_path(spec)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None
    if not data.get("name"):
        data["name"] = path.stem
    cfg = from_dict(data)
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: RunConfig, overrides: typing.Sequence[str]) -> RunConfig:
    """Apply ``key=value`` strings; the value is typed by the dataclass field it targets."""
    classes = _section_classes()
    d = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key in ("method", "name"):
            d[key] = value
            continue
        if "." in key:
            section, fname = key.split(".", 1)
            if section not in classes:
                raise ConfigError(f"override {key!r}: unknown section {section!r}; "
                                  f"sections: {', '.join(classes)}")
            fields = {f.name for f in dataclasses.fields(classes[section])}
            if fname not in fields:
                raise ConfigError(f"override {key!r}: [{section}] has no field {fname!r}; "
                                  f"fields: {', '.join(sorted(fields))}")
        else:
            matches = [s for s, c in classes.items()
                       if key in {f.name for f in dataclasses.fields(c)}]
            if not matches:
                raise ConfigError(f"override {key!r}: no config field has that name")
            if len(matches) > 1:
                raise ConfigError(f"override {key!r} is ambiguous; write one of "
                                  + ", ".join(f"{s}.{key}" for s in matches))
            section, fname = matches[0], key
        hints = typing.get_type_hints(classes[section])
        d[section][fname] = _coerce(value, hints[fname], f"{section}.{fname}")
    return from_dict(d)


def to_toml(cfg: RunConfig) -> str:
    """Write a config back as TOML (flat scalars and lists only, which is all we have)."""
    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        raise TypeError(v)

    d = cfg.to_dict()
    lines = [f"method = {fmt(d['method'])}", f"name = {fmt(d['name'])}", ""]
    for section in _SECTIONS:
        lines.append(f"[{section}]")
        lines += [f"{k} = {fmt(v)}" for k, v in d[section].items()]
        lines.append("")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- resuming
# Fields a resumed run may change: how long it trains, where and with what precision it runs, what it
# logs, checkpoints and previews, and how it samples. Every other field decides what a training step
# computes (method, data, network, noise schedule, loss, optimiser, seed): a resume with another value
# would not continue the run (and a network field would not even load its weights).
RESUME_FREE = frozenset({
    "name", "data.data_dir", "data.num_workers", "ddpm.sample_variance", "ddpm.clip_denoised",
    "ncsn.steps_per_level", "ncsn.eps", "ncsn.final_denoise", "train.n_steps", "train.log_every",
    "train.ckpt_every", "train.sample_every", "train.keep_ckpts", "train.n_grid", "train.preview_sampler",
    "train.preview_nfe", "train.precision", "train.channels_last", "train.compile", "train.device",
    "train.threads", "sample.n", "sample.batch_size"})


class ResumeMismatch(ConfigError):
    """A run folder was asked to resume with a config that differs from its own in fields that decide
    what it trains; the message names them (one line) and says how to continue or start anew."""


def _flat(cfg: RunConfig) -> dict:
    d = cfg.to_dict()
    out = {"method": d["method"], "name": d["name"]}
    for section in _SECTIONS:
        out.update({f"{section}.{k}": v for k, v in d[section].items()})
    return out


def resume_differences(stored, asked: RunConfig) -> list[tuple[str, object, object]]:
    """(field, the run's value, the asked value) for each field outside RESUME_FREE where the run's
    config (a RunConfig, or the dict a checkpoint holds) and `asked` differ."""
    run = stored if isinstance(stored, RunConfig) else from_dict(stored)
    a, b = _flat(run), _flat(asked)
    return [(k, a[k], b[k]) for k in a if k not in RESUME_FREE and a[k] != b[k]]


def check_resume(stored, asked: RunConfig, run_dir, hint: str | None = None) -> None:
    """Raise ResumeMismatch (one line: which fields differ, how to go on — `hint`, by default the CLI's
    words) if `asked` would not continue the run in `run_dir`, whose config is `stored` (its
    checkpoint's dict, or a RunConfig)."""
    diffs = resume_differences(stored, asked)
    if not diffs:
        return
    shown = "; ".join(f"{k}: run {_show(v)}, asked {_show(w)}" for k, v, w in diffs[:6])
    more = f" and {len(diffs) - 6} more" if len(diffs) > 6 else ""
    if hint is None:
        hint = ("to continue it, resume with its own config (leave out --config; overrides may change only "
                "train.n_steps, train.device, train.threads and the like); to train this config, start a new "
                "run (another --out, without --resume)")
    raise ResumeMismatch(f"cannot resume {run_dir} with another config ({shown}{more}): {hint}")


def _show(v) -> str:
    return json.dumps(v) if isinstance(v, str) else str(v)


def resume_refusal(run_dir, config: str, overrides: typing.Sequence[str] = (), hint: str | None = None) -> str:
    """For a front end that always names a config (the Image-runs tab): '' if resuming `run_dir` with
    `config` and `overrides` continues the run, else ResumeMismatch's one line. The config named after
    the run's own (the same bundled name or its config.toml) means "the run's own": the overrides are
    applied to the run's stored config, as ``train --resume`` without ``--config`` does. A run without
    a readable config.toml is not judged here ('')."""
    from .run_layout import config_path

    path = config_path(run_dir)
    try:
        stored = load_config(path)
    except (ConfigError, OSError):
        return ""
    own = Path(config).stem == stored.name or Path(config).expanduser().resolve() == path.resolve()
    try:
        asked = apply_overrides(stored, overrides) if own else load_config(config, overrides)
        check_resume(stored, asked, run_dir, hint)
    except ConfigError as e:
        return str(e)
    return ""


def run_config_name(run_dir) -> str:
    """The name of the config a run folder was trained with (its config.toml), '' if unreadable."""
    from .run_layout import config_path

    try:
        return load_config(config_path(run_dir)).name
    except (ConfigError, OSError):
        return ""
