"""The image training loop: one function, ``train(cfg, run_dir, ...)``, used by the CLI and tests.

Run directory layout::

    RUN_DIR/config.toml        the resolved config (overrides applied)
    RUN_DIR/progress.jsonl     one JSON object per line (see ``ProgressLog``), for the GUI to tail
    RUN_DIR/checkpoints/       ckpt_<step>.pt, the newest ``train.keep_ckpts`` kept
    RUN_DIR/samples/           step_<step>.png grids drawn with the EMA weights
    RUN_DIR/tb/                TensorBoard events (only when tensorboard is installed)

Determinism / resume: the batch order and flips are functions of (seed, step) (see
``datasets.batch_indices``) and the loss noise comes from a generator reseeded from
(seed, rank, step) every step, so a resumed run draws exactly what the uninterrupted run would
have; dropout uses the global torch RNG, whose state the checkpoint stores and restores (rank 0's
under DDP; other ranks reseed, which only changes dropout masks).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..atomic import atomic_write_text
from . import checkpoints as ck
from .config import ConfigError, RunConfig, from_dict, to_toml
from .datasets import batch_stream, build_dataset
from .imageio import save_grid, to_unit
from .methods import generate, make_method
from .unet import build_net, count_params


# -------------------------------------------------------------------------------- environment
class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (e.g. it holds checkpoints but no --resume)."""


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> DistInfo:
    """DDP when launched by torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_pref != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank)


def pick_device(pref: str, dist_info: DistInfo, log=print) -> torch.device:
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_info.local_rank)
        log("warning: no CUDA device found: training on the CPU (slow); bf16 autocast, "
            "channels_last and torch.compile are off")
        return torch.device("cpu")
    dev = torch.device(pref)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={pref} but this machine has no CUDA device (or torch is a "
                              "CPU build): use train.device=auto or train.device=cpu")
        if dist_info.world > 1:
            dev = torch.device("cuda", dist_info.local_rank)
    return dev


def _step_seed(seed: int, rank: int, step: int, stream: int) -> int:
    # distinct 63-bit seeds per (seed, rank, step, stream)
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729 + stream * 15_485_863) % (2**63 - 1)


# -------------------------------------------------------------------------------- progress log
class ProgressLog:
    """``progress.jsonl``: one JSON object per line, appended and flushed as training goes.

    Training lines: ``{"step", "loss", "images_per_s", "lr", "eta_s", "elapsed_s",
    "total_steps", "grad_norm"}`` (loss = mean over the steps since the previous line).
    Event lines carry ``"event"``: ``"start"`` (with ``device``, ``params``, ``resumed_from``),
    ``"checkpoint"`` / ``"samples"`` (with ``path``) and ``"done"``. A reader that only wants the
    curve keeps the lines that have ``"loss"``.
    """

    def __init__(self, path: Path, truncate_after: int | None = None):
        self.path = path
        if truncate_after is not None and truncate_after < 0:
            path.write_text("")   # a fresh run: start an empty log
        elif truncate_after is not None and path.exists():
            # resuming: drop lines from the killed run that lie after the checkpoint we resume
            keep = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= truncate_after:
                        keep.append(line)
                except json.JSONDecodeError:
                    pass  # a line cut by the kill
            atomic_write_text(path, "".join(l + "\n" for l in keep))
        self.f = open(path, "a", encoding="utf-8")

    def write(self, **rec) -> None:
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: the JSONL log is the record
        return None
    return SummaryWriter(str(run_dir / "tb"))


# -------------------------------------------------------------------------------- helpers
def lr_at(cfg: RunConfig, step: int) -> float:
    """Linear warm-up to train.lr over train.warmup steps (DDPM), then constant."""
    w = cfg.train.warmup
    return cfg.train.lr * (min(1.0, (step + 1) / w) if w > 0 else 1.0)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    ema_p = list(ema.parameters())
    p = [q.detach() for q in model.parameters()]
    if decay == 0:
        torch._foreach_copy_(ema_p, p)
    else:
        torch._foreach_lerp_(ema_p, p, 1.0 - decay)
    for eb, b in zip(ema.buffers(), model.buffers()):
        eb.copy_(b)


def prepare_batch(x01: torch.Tensor, cfg: RunConfig, step: int, rank: int, device) -> torch.Tensor:
    """[0,1] batch -> the method's range, random h-flips (a function of the step), on device."""
    x = x01.to(device, non_blocking=True)
    lo, hi = cfg.data_range
    if (lo, hi) != (0.0, 1.0):
        x = x * (hi - lo) + lo
    if cfg.data.random_flip:
        g = torch.Generator().manual_seed(_step_seed(cfg.train.seed, rank, step, 2))
        flip = (torch.rand(x.shape[0], generator=g) < 0.5).to(device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def make_run_dir(cfg: RunConfig, out: str | None) -> Path:
    if out:
        return Path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.name or cfg.method}-{stamp}"


# -------------------------------------------------------------------------------- training
class TrainCore:
    """Model, EMA copy, optimiser, grad scaler and the one optimisation step.

    Shared by ``train()`` and ``benchmarks/bench_image_train.py`` so the benchmark times the
    real step. On CUDA: bf16 (or fp16 + GradScaler) autocast and channels_last per config; on
    the CPU: fp32. ``step`` does: set lr, loss under autocast, backward, unscale + clip the
    global grad norm, Adam step, EMA update; it returns (loss, grad norm) as tensors (no sync).
    """

    def __init__(self, cfg: RunConfig, device: torch.device, dist_info: DistInfo | None = None,
                 log=print):
        dist_info = dist_info or DistInfo()
        self.cfg, self.device = cfg, device
        on_cuda = device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.precision)
        self.use_amp = on_cuda and self.amp_dtype is not None
        if self.amp_dtype is torch.bfloat16 and on_cuda and not torch.cuda.is_bf16_supported():
            log("warning: this GPU has no bf16 support; training in fp32")
            self.use_amp = False
        self.channels_last = on_cuda and cfg.train.channels_last
        model = build_net(cfg).to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        t = cfg.train
        self.opt = torch.optim.Adam(model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2),
                                    eps=t.adam_eps, weight_decay=t.weight_decay)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.use_amp and self.amp_dtype is torch.float16)
        self.method = make_method(cfg, device)
        train_model: nn.Module = model
        if dist_info.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            train_model = DDP(model, device_ids=[device.index] if on_cuda else None)
        if t.compile:
            train_model = torch.compile(train_model)
        self.train_model = train_model
        self._zero = torch.zeros((), device=device)

    def step(self, x: torch.Tensor, noise_gen: torch.Generator, lr: float):
        cfg = self.cfg
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for group in self.opt.param_groups:
            group["lr"] = lr
        autocast = (torch.autocast("cuda", dtype=self.amp_dtype) if self.use_amp
                    else contextlib.nullcontext())
        with autocast:
            loss = self.method.loss(self.train_model, x, noise_gen)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        gnorm = self._zero
        if cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        ema_update(self.ema, self.model, cfg.train.ema_decay)
        return loss, gnorm


@contextlib.contextmanager
def cpu_threads(n: int):
    """torch.set_num_threads(n) for the duration (n <= 0: leave as is); it is process-wide."""
    prev = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0:
            torch.set_num_threads(prev)


class GracefulStop:
    """SIGTERM / SIGINT ask the training loop to stop at the next step boundary, after writing a
    checkpoint (so Stop in the GUI or Ctrl+C loses nothing); a second signal acts as usual.
    Installed only in a single-process run's main thread (signal handlers cannot be set elsewhere)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._old: dict = {}

    def _handle(self, signum, frame):
        self.requested = True
        self._restore()                     # a second signal gets the old behaviour

    def _restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def __enter__(self) -> "GracefulStop":
        if self.enabled:
            self._old = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        self._restore()


def train(cfg: RunConfig, run_dir, data_dir: str | None = None, resume: bool = False,
          quiet: bool = False, stop_after: int | None = None) -> dict:
    """Train per ``cfg`` into ``run_dir``. ``stop_after`` ends the process's work after that
    many total steps without a final checkpoint (what a kill does; used by tests).
    Returns a summary dict (steps, losses logged, final checkpoint, ...)."""
    threads = cfg.train.threads if cfg.train.device == "cpu" or not torch.cuda.is_available() else 0
    with cpu_threads(threads):
        return _train(cfg, run_dir, data_dir, resume, quiet, stop_after)


def _train(cfg, run_dir, data_dir, resume, quiet, stop_after) -> dict:
    run_dir = Path(run_dir)
    dist_info = setup_distributed(cfg.train.device)
    main = dist_info.is_main

    def log(msg: str) -> None:
        if main:
            print(msg, file=sys.stderr, flush=True)

    # ---- resume: the checkpoint's config is the base unless a config was given explicitly
    start_step, ckpt = 0, None
    existing = ck.list_checkpoints(run_dir)
    if resume and existing:
        ckpt, path = ck.load_latest(run_dir)
        start_step = int(ckpt["step"])
        log(f"resuming from {path} (step {start_step})")
    elif resume:
        log(f"warning: --resume given but {ck.ckpt_dir(run_dir)} holds no checkpoint; "
            "starting from step 0")
    elif existing:
        raise RunDirError(f"{run_dir} already holds checkpoints (newest: step "
                           f"{existing[-1][0]}); pass --resume to continue it, or choose "
                           "another --out")

    device = pick_device(cfg.train.device, dist_info, log)

    # ---- data, model, optimiser
    ds = build_dataset(cfg.data, data_dir)
    if cfg.train.batch_size % dist_info.world:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} is not divisible by the "
                         f"{dist_info.world} DDP ranks")
    torch.manual_seed(_step_seed(cfg.train.seed, dist_info.rank, 0, 0))
    np.random.seed(cfg.train.seed + dist_info.rank)
    random.seed(cfg.train.seed + dist_info.rank)
    core = TrainCore(cfg, device, dist_info, log)
    model, ema, opt, scaler = core.model, core.ema, core.opt, core.scaler
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        if "optimizer" in ckpt:
            opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if "rng" in ckpt and main:
            ck.restore_rng_state(ckpt["rng"], device)
        elif not main:
            torch.manual_seed(_step_seed(cfg.train.seed, dist_info.rank, start_step, 0))
    use_amp, amp_dtype = core.use_amp, core.amp_dtype

    # ---- run directory
    progress = None
    tb = None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.toml", to_toml(cfg))
        progress = ProgressLog(run_dir / "progress.jsonl",
                               truncate_after=start_step if ckpt is not None else -1)
        tb = _tensorboard(run_dir)
        n_params = count_params(model)
        progress.write(event="start", step=start_step, total_steps=cfg.train.n_steps,
                       device=str(device), params=n_params, world_size=dist_info.world,
                       resumed_from=start_step if ckpt is not None else None,
                       dataset=cfg.data.dataset, n_images=len(ds), method=cfg.method)
        log(f"{cfg.method} on {cfg.data.dataset} ({len(ds)} images {tuple(ds.shape)}), "
            f"{n_params / 1e6:.2f}M params, device {device}"
            f"{' bf16' if use_amp and amp_dtype is torch.bfloat16 else ''}"
            f"{' x' + str(dist_info.world) + ' ranks' if dist_info.world > 1 else ''}, "
            f"run dir {run_dir}")

    def checkpoint(step: int) -> Path | None:
        if not main:
            return None
        path = ck.save_checkpoint(run_dir, step, {
            "model": model.state_dict(), "ema": ema.state_dict(),
            "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
            "rng": ck.capture_rng_state(device), "config": cfg.to_dict(),
            "method": cfg.method}, keep=cfg.train.keep_ckpts)
        progress.write(event="checkpoint", step=step, path=str(path))
        return path

    def sample_grid(step: int) -> Path | None:
        if not main:
            return None
        x = generate(cfg, ema, cfg.train.n_grid, device, seed=cfg.train.seed,
                     batch_size=cfg.sample.batch_size).x
        path = save_grid(to_unit(x, cfg.data_range), run_dir / "samples" / f"step_{step:08d}.png")
        progress.write(event="samples", step=step, path=str(path))
        return path

    # ---- loop
    n_steps = cfg.train.n_steps
    end = n_steps if stop_after is None else min(n_steps, stop_after)
    stream = batch_stream(ds, cfg.train.batch_size, cfg.train.seed, start_step,
                          dist_info.rank, dist_info.world, cfg.data.num_workers)
    noise_gen = torch.Generator(device=device)
    bar = None
    if main and not quiet:
        from tqdm import tqdm

        bar = tqdm(total=n_steps, initial=start_step, dynamic_ncols=True, mininterval=1.0,
                   desc=cfg.name or cfg.method, unit="step")
    model.train()
    losses_logged: list[float] = []
    loss_acc = torch.zeros((), device=device)
    n_acc = 0
    t_last = time.perf_counter()
    t0 = t_last
    last_ckpt = None
    step = start_step
    stop = GracefulStop(enabled=dist_info.world == 1)
    with stop:
        while step < end and not stop.requested:
            x = prepare_batch(next(stream), cfg, step, dist_info.rank, device)
            noise_gen.manual_seed(_step_seed(cfg.train.seed, dist_info.rank, step, 1))
            lr = lr_at(cfg, step)
            loss, gnorm = core.step(x, noise_gen, lr)
            loss_acc += loss.detach().float()
            n_acc += 1
            step += 1
            if bar is not None:
                bar.update(1)

            if step % cfg.train.log_every == 0 or step == end:
                if dist_info.world > 1:
                    import torch.distributed as dist

                    dist.all_reduce(loss_acc)
                    loss_acc /= dist_info.world
                mean_loss = float(loss_acc) / n_acc
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"loss became {mean_loss} at step {step}; try a "
                                             "smaller train.lr or a larger train.warmup")
                now = time.perf_counter()
                ips = n_acc * cfg.train.batch_size / max(now - t_last, 1e-9)
                sps = n_acc / max(now - t_last, 1e-9)
                if main:
                    rec = dict(step=step, loss=mean_loss, images_per_s=ips, lr=lr,
                               eta_s=(n_steps - step) / sps, elapsed_s=now - t0,
                               total_steps=n_steps, grad_norm=float(gnorm))
                    progress.write(**rec)
                    if tb is not None:
                        tb.add_scalar("loss", mean_loss, step)
                        tb.add_scalar("lr", lr, step)
                        tb.add_scalar("images_per_s", ips, step)
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{ips:.0f}")
                losses_logged.append(mean_loss)
                loss_acc.zero_()
                n_acc = 0
                t_last = time.perf_counter()
            if cfg.train.sample_every and step % cfg.train.sample_every == 0:
                sample_grid(step)
                t_last = time.perf_counter()
            if cfg.train.ckpt_every and step % cfg.train.ckpt_every == 0:
                last_ckpt = checkpoint(step)
                t_last = time.perf_counter()

    finished = step >= n_steps
    if stop.requested and not finished and main:
        if last_ckpt is None or ck.list_checkpoints(run_dir)[-1][0] != step:
            last_ckpt = checkpoint(step)
        progress.write(event="stopped", step=step, elapsed_s=time.perf_counter() - t0)
        log(f"stopped by a signal at step {step}; checkpoint written, --resume continues")
    if finished and main:
        if last_ckpt is None or ck.list_checkpoints(run_dir)[-1][0] != step:
            last_ckpt = checkpoint(step)
        if cfg.train.sample_every and step % cfg.train.sample_every:
            sample_grid(step)
        progress.write(event="done", step=step, elapsed_s=time.perf_counter() - t0)
    if bar is not None:
        bar.close()
    if progress is not None:
        progress.close()
    if tb is not None:
        tb.close()
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return {"run_dir": str(run_dir), "start_step": start_step, "step": step,
            "finished": finished, "losses": losses_logged,
            "checkpoint": str(last_ckpt) if last_ckpt else None}


def load_run(run_dir, step: int | None = None, device="cpu"):
    """(cfg, EMA model in eval mode, checkpoint dict) of a run directory."""
    ckpt, path = ck.load_latest(run_dir, step)
    cfg = from_dict(ckpt["config"])
    model = build_net(cfg)
    model.load_state_dict(ckpt["ema"])
    return cfg, model.to(device).eval().requires_grad_(False), ckpt, path
