"""The image training loop: one function, ``train(cfg, run_dir, ...)``, used by the CLI and tests.

The run folder's layout is ``run_layout``'s, the event log ``progress``'s, and device / DDP /
threads / stop signals are ``runtime``'s; this module is the model, the optimisation step and the
loop. Every handle a run opens (event log, progress bar, TensorBoard writer, DDP process group,
thread count) sits on one ``contextlib.ExitStack``, so it is released however the run ends; a run
that fails after its ``start`` event ends ``progress.jsonl`` with a ``failed`` event carrying the
message (failures before it, such as a missing dataset, are reported on stderr only).

Determinism / resume: the batch order is a function of (seed, step) (see
``datasets.batch_indices``), and the flips and the loss noise come from generators on the device
reseeded from (seed, rank, step) every step, so a resumed run draws exactly what the uninterrupted
run would have (on the same kind of device: CPU and CUDA generators draw different streams);
dropout uses the global torch RNG, whose state the checkpoint stores and restores (rank 0's under
DDP; other ranks reseed, which only changes dropout masks).

Host syncs: a training step reads nothing back from the device (``hostreads`` counts it in the
tests and in ``benchmarks/gpu_check.py``); the loss, grad norm and loss per level accumulate on
the device and are read only at ``train.log_every``.
"""
from __future__ import annotations

import contextlib
import copy
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..atomic import atomic_write_text
from ..conditional import ClassBound, drop_labels
from . import checkpoints as ck
from . import progress as events
from . import run_layout as layout
from .config import ConfigError, RunConfig, from_dict, to_toml
from .hostreads import NO_PROBE
from .datasets import batch_stream, build_dataset, check_labels, close_stream
from .imageio import save_grid, to_unit
from .methods import SamplingStopped, generate, make_method, preview_sampler
from .progress import ProgressLog
from .runtime import (DistInfo, GracefulStop, all_reduce_mean, cpu_threads, distributed,
                      pick_device, step_seed, train_threads)
from .unet import build_net, count_params


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (e.g. it holds checkpoints but no --resume)."""


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: the JSONL log is the record
        return None
    return SummaryWriter(str(layout.tensorboard_dir(run_dir)))


# -------------------------------------------------------------------------------- helpers
def lr_at(cfg: RunConfig, step: int) -> float:
    """Linear warm-up to train.lr over train.warmup steps (DDPM), then constant."""
    w = cfg.train.warmup
    return cfg.train.lr * (min(1.0, (step + 1) / w) if w > 0 else 1.0)


def ema_decay_at(cfg: RunConfig, t: int) -> float:
    """The EMA decay of update t (0-based: the update after training step t + 1).
    With ``train.ema_warmup``: min(ema_decay, (1 + t) / (10 + t)), so early updates follow the
    weights (0.1 at t = 0, 0.5 at t = 8, 0.9 at t = 80, 0.99 at t = 890); else ema_decay."""
    d = cfg.train.ema_decay
    return min(d, (1 + t) / (10 + t)) if cfg.train.ema_warmup else d


class LevelLoss:
    """Per-noise-level sums and counts of the per-example loss terms on the device (no sync per
    step); ``take()`` returns the means since the last call and starts over."""

    def __init__(self, method, device):
        bins = method.loss_bins()                  # the method's rule (Method.loss_bins)
        self.edges, self.centres = bins.edges.to(device), bins.centres
        self.sums = torch.zeros(len(self.centres), dtype=torch.float64, device=device)
        self.counts = torch.zeros_like(self.sums)

    def add(self, terms: torch.Tensor, levels: torch.Tensor) -> None:
        idx = torch.bucketize(levels.detach().double().flatten(), self.edges)
        self.sums.index_add_(0, idx, terms.detach().double().flatten())
        self.counts.index_add_(0, idx, torch.ones_like(self.sums[idx]))

    def take(self, dist_info: DistInfo) -> list[float | None]:
        """Mean loss per bin since the last call (None for a bin nothing fell in)."""
        both = all_reduce_mean(torch.stack([self.sums, self.counts]), dist_info).cpu()
        self.sums.zero_()
        self.counts.zero_()
        return [float(s / c) if c > 0 else None for s, c in zip(both[0], both[1])]


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


def prepare_batch(x01: torch.Tensor, cfg: RunConfig, step: int, rank: int, device,
                  flip_gen: torch.Generator | None = None) -> torch.Tensor:
    """A host batch (uint8 in [0, 255], or float in [0, 1]; pinned when a GPU is present) -> the
    method's range with random h-flips, on ``device``, without making the host wait: the copy is
    asynchronous, the conversion to float runs on the device, and the flips are drawn there by
    ``flip_gen`` (a generator on ``device``, reseeded from (seed, rank, step) so a resumed run flips
    exactly as the uninterrupted one on the same kind of device)."""
    x = x01.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    lo, hi = cfg.data_range
    if (lo, hi) != (0.0, 1.0):
        x = x * (hi - lo) + lo
    if cfg.data.random_flip:
        g = flip_gen if flip_gen is not None else torch.Generator(device=device)
        g.manual_seed(step_seed(cfg.train.seed, rank, step, 2))
        flip = torch.rand(x.shape[0], generator=g, device=device) < 0.5
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

    Shared by ``train()``, ``benchmarks/bench_image_train.py`` and ``benchmarks/gpu_check.py`` so
    the benchmarks time the real step. On CUDA: bf16 (or fp16 + GradScaler) autocast; on the CPU:
    bf16 autocast when the config asks for bf16, else fp32. ``train.channels_last`` (any device;
    a measured option, see ``gpu_check.py``) keeps the weights and the batch in channels_last.
    ``step`` does: set lr, loss under autocast, backward, unscale + clip the global grad norm, Adam
    step (the fused kernel where the device has one: no per-parameter host reads of the step
    count), EMA update (decay ``ema_decay_at`` the training step); it returns (loss, grad norm) as
    tensors and reads nothing back from the device (``hostreads`` counts it: zero per step), and
    keeps the per-example terms and their noise levels in ``last_terms``.
    """

    def __init__(self, cfg: RunConfig, device: torch.device, dist_info: DistInfo | None = None,
                 log=print):
        dist_info = dist_info or DistInfo()
        self.cfg, self.device = cfg, device
        on_cuda = device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.precision)
        # bf16 autocast runs on the CPU too (so CI exercises that code path); fp16 + GradScaler is
        # CUDA-only, and trains in fp32 elsewhere.
        self.use_amp = self.amp_dtype is not None and (on_cuda or self.amp_dtype is torch.bfloat16)
        if self.amp_dtype is torch.float16 and not on_cuda:
            log("warning: train.precision=fp16 needs CUDA; training in fp32 on the CPU")
        if self.amp_dtype is torch.bfloat16 and on_cuda and not torch.cuda.is_bf16_supported():
            log("warning: this GPU has no bf16 support; training in fp32")
            self.use_amp = False
        self.channels_last = cfg.train.channels_last
        model = build_net(cfg).to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        t = cfg.train
        self.opt = torch.optim.Adam(model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2),
                                    eps=t.adam_eps, weight_decay=t.weight_decay,
                                    fused=device.type in ("cuda", "cpu") or None)
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
        self.updates = 0                      # EMA updates so far (the step when none is given)
        self.last_terms: tuple[torch.Tensor, torch.Tensor] | None = None

    def step(self, x: torch.Tensor, noise_gen: torch.Generator, lr: float, step: int | None = None,
             labels: torch.Tensor | None = None):
        """One optimisation step; ``step`` (0-based, the training loop's) sets the EMA decay, so a
        resumed run averages exactly as an uninterrupted one. ``labels``: a class-conditional run's
        (N,) classes after label dropout (the null class = n_classes), bound to the network."""
        cfg = self.cfg
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for group in self.opt.param_groups:
            group["lr"] = lr
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.use_amp
                    else contextlib.nullcontext())
        with autocast:
            net = self.train_model if labels is None else ClassBound(self.train_model, labels)
            terms, levels = self.method.terms(net, x, noise_gen)
            loss = terms.mean()
        self.last_terms = (terms.detach().float(), levels.detach())
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        gnorm = self._zero
        if cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        t = self.updates if step is None else step
        ema_update(self.ema, self.model, ema_decay_at(cfg, t))
        self.updates = t + 1
        return loss, gnorm


def train(cfg: RunConfig, run_dir, data_dir: str | None = None, resume: bool = False,
          quiet: bool = False, stop_after: int | None = None, probe=None) -> dict:
    """Train per ``cfg`` into ``run_dir``. ``stop_after`` ends the process's work after that
    many total steps without a final checkpoint (what a kill does; used by tests). ``probe`` (a
    ``hostreads.StepProbe``; tests and ``gpu_check.py``) counts the host reads of each training
    step, from the host batch to the EMA update; logging, checkpoints and grids are outside it.
    Returns a summary dict (steps, losses logged, final checkpoint, ...)."""
    run = _Run(cfg, Path(run_dir), quiet)
    run.probe = probe if probe is not None else NO_PROBE
    with contextlib.ExitStack() as stack:
        stack.enter_context(cpu_threads(train_threads(cfg)))
        run.dist = stack.enter_context(distributed(cfg.train.device))
        # SIGTERM / SIGINT from here to the end: honoured between training steps and between the
        # sampler steps of a grid, also the final one drawn by finish()
        run.stop = stack.enter_context(GracefulStop(enabled=run.dist.world == 1))
        run.start(stack, data_dir, resume)
        run.loop(stop_after)
        return run.finish()


class _Run:
    """One training run: set-up (``start``), the step loop (``loop``) and the end (``finish``).
    Only rank 0 (``main``) writes the run folder."""

    def __init__(self, cfg: RunConfig, run_dir: Path, quiet: bool):
        self.cfg, self.run_dir, self.quiet = cfg, run_dir, quiet
        self.dist = DistInfo()
        self.progress: ProgressLog | None = None
        self.bar = None
        self.tb = None
        self.start_step = self.step = 0
        self.losses: list[float] = []
        self.last_ckpt: Path | None = None
        self.stopped = False
        self.stop = GracefulStop(enabled=False)    # train() installs the real one
        self.probe = NO_PROBE

    @property
    def main(self) -> bool:
        return self.dist.is_main

    def log(self, msg: str) -> None:
        if self.main:
            print(msg, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ set-up
    def _resume_point(self, resume: bool) -> dict | None:
        """The checkpoint to resume from (None: start at step 0); refuses to overwrite a run."""
        existing = ck.list_checkpoints(self.run_dir)
        if self.main:
            ck.remove_partial_writes(self.run_dir)     # a checkpoint write cut short by a kill
        if resume and existing:
            ckpt, path = ck.load_latest(self.run_dir)
            ck.refuse_mismatched_resume(self.cfg, ckpt, self.run_dir, self.main)
            self.start_step = int(ckpt["step"])
            self.log(f"resuming from {path} (step {self.start_step})")
            return ckpt
        if resume:
            self.log(f"warning: --resume given but {ck.ckpt_dir(self.run_dir)} holds no checkpoint; "
                     "starting from step 0")
        elif existing:
            raise RunDirError(f"{self.run_dir} already holds checkpoints (newest: step "
                              f"{existing[-1][0]}); pass --resume to continue it, or choose "
                              "another --out")
        return None

    def _restore(self, ckpt: dict) -> None:
        core, seed, rank = self.core, self.cfg.train.seed, self.dist.rank
        core.model.load_state_dict(ckpt["model"])
        core.ema.load_state_dict(ckpt["ema"])
        if "optimizer" in ckpt:
            core.opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            core.scaler.load_state_dict(ckpt["scaler"])
        if "rng" in ckpt and self.main:
            ck.restore_rng_state(ckpt["rng"], self.device)
        elif not self.main:
            torch.manual_seed(step_seed(seed, rank, self.start_step, 0))

    def start(self, stack: contextlib.ExitStack, data_dir: str | None, resume: bool) -> None:
        """Data, model, optimiser (restored when resuming); on rank 0 the run folder, the event
        log, TensorBoard and the progress bar, each closed by ``stack``."""
        cfg, dist_info = self.cfg, self.dist
        ckpt = self._resume_point(resume)
        self.device = pick_device(cfg.train.device, dist_info, self.log)
        if self.device.type == "cuda":          # fixed shapes: let cuDNN pick its fastest kernels
            stack.callback(setattr, torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
            torch.backends.cudnn.benchmark = True
        self.ds = build_dataset(cfg.data, data_dir)
        if cfg.model.n_classes:
            check_labels(self.ds, cfg.model.n_classes)
        if cfg.train.batch_size % dist_info.world:
            raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not divisible by the "
                             f"{dist_info.world} DDP ranks")
        torch.manual_seed(step_seed(cfg.train.seed, dist_info.rank, 0, 0))
        np.random.seed(cfg.train.seed + dist_info.rank)
        random.seed(cfg.train.seed + dist_info.rank)
        self.core = TrainCore(cfg, self.device, dist_info, self.log)
        if ckpt is not None:
            self._restore(ckpt)
        self.step = self.start_step
        if not self.main:
            return

        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(layout.config_path(self.run_dir), to_toml(cfg))
        self.progress = ProgressLog(layout.progress_path(self.run_dir),
                                    truncate_after=self.start_step if ckpt is not None else -1)
        stack.callback(self.progress.close)
        stack.push(self._record_failure)          # runs before the log closes
        self.tb = _tensorboard(self.run_dir)
        if self.tb is not None:
            stack.callback(self.tb.close)
        if not self.quiet:
            from tqdm import tqdm

            self.bar = stack.enter_context(tqdm(
                total=cfg.train.n_steps, initial=self.start_step, dynamic_ncols=True,
                mininterval=1.0, desc=cfg.name or cfg.method, unit="step"))
        core, n_params = self.core, count_params(self.core.model)
        self.progress.event(events.START, self.start_step, total_steps=cfg.train.n_steps,
                            device=str(self.device), params=n_params, world_size=dist_info.world,
                            resumed_from=self.start_step if ckpt is not None else None,
                            dataset=cfg.data.dataset, n_images=len(self.ds), method=cfg.method)
        self.log(f"{cfg.method} on {cfg.data.dataset} ({len(self.ds)} images "
                 f"{tuple(self.ds.shape)}), {n_params / 1e6:.2f}M params, device {self.device}"
                 f"{' bf16' if core.use_amp and core.amp_dtype is torch.bfloat16 else ''}"
                 f"{' x' + str(dist_info.world) + ' ranks' if dist_info.world > 1 else ''}, "
                 f"run dir {self.run_dir}")

    def _record_failure(self, exc_type, exc, tb) -> bool:
        """ExitStack exit callback: an exception ends the log with a ``failed`` event."""
        if exc is not None and self.progress is not None and not self.progress.closed:
            self.progress.failed(exc, self.step)
            self.log(f"training failed at step {self.step}: {events.failure_message(exc)}")
        return False                               # never swallow the exception

    # ------------------------------------------------------------------ files
    def checkpoint(self) -> Path | None:
        if not self.main:
            return None
        core, step = self.core, self.step
        path = ck.save_checkpoint(self.run_dir, step, {
            "model": core.model.state_dict(), "ema": core.ema.state_dict(),
            "optimizer": core.opt.state_dict(), "scaler": core.scaler.state_dict(),
            "rng": ck.capture_rng_state(self.device), "config": self.cfg.to_dict(),
            "method": self.cfg.method}, keep=self.cfg.train.keep_ckpts)
        self.progress.event(events.CHECKPOINT, step, path=str(path))
        self.last_ckpt = path
        return path

    def sample_grid(self) -> Path | None:
        """A preview grid from the EMA weights with ``train.preview_sampler`` / ``preview_nfe``;
        a stop request between two sampler steps abandons it (None, no ``samples`` event)."""
        if not self.main:
            return None
        cfg = self.cfg
        name, nfe = preview_sampler(cfg)
        self.log(f"drawing a preview grid at step {self.step} ({name}, EMA weights) …")
        t0 = time.perf_counter()
        try:
            # a class-conditional run previews every class in turn (0, 1, …, 9, 0, …), unguided
            classes = [i % cfg.model.n_classes for i in range(cfg.train.n_grid)] if cfg.model.n_classes else None
            gen = generate(cfg, self.core.ema, cfg.train.n_grid, self.device, seed=cfg.train.seed,
                           sampler=name, batch_size=cfg.sample.batch_size, nfe=nfe,
                           should_stop=lambda: self.stop.requested, label=classes)
        except SamplingStopped as e:
            self.log(f"preview grid at step {self.step} abandoned: a stop was requested ({e})")
            return None
        path = save_grid(to_unit(gen.x, cfg.data_range),
                         layout.sample_grid_path(self.run_dir, self.step))
        self.progress.event(events.SAMPLES, self.step, path=str(path), sampler=gen.sampler,
                            nfe=gen.nfe, weights="ema",
                            seconds=round(time.perf_counter() - t0, 3))
        return path

    def _checkpointed_now(self) -> bool:
        return self.last_ckpt is not None and ck.list_checkpoints(self.run_dir)[-1][0] == self.step

    # ------------------------------------------------------------------ the loop
    def loop(self, stop_after: int | None) -> None:
        cfg = self.cfg
        end = cfg.train.n_steps if stop_after is None else min(cfg.train.n_steps, stop_after)
        stream = batch_stream(self.ds, cfg.train.batch_size, cfg.train.seed, self.start_step,
                              self.dist.rank, self.dist.world, cfg.data.num_workers,
                              with_labels=cfg.model.n_classes > 0)
        try:
            self._steps(stream, end)
        finally:
            close_stream(stream)

    def _steps(self, stream, end: int) -> None:
        cfg, dist_info, device, core = self.cfg, self.dist, self.device, self.core
        noise_gen = torch.Generator(device=device)
        core.model.train()
        loss_acc = torch.zeros((), device=device)
        n_acc = 0
        levels = LevelLoss(core.method, device)
        flip_gen = torch.Generator(device=device) if cfg.data.random_flip else None
        n_classes = cfg.model.n_classes
        drop_gen = torch.Generator() if n_classes else None      # label dropout, on the host
        t_last = self.t0 = time.perf_counter()
        stop, probe = self.stop, self.probe
        while self.step < end and not stop.requested:
            step = self.step
            batch = next(stream)                 # the host's side: indices, gather, pinning
            labels = None
            if n_classes:                        # (images, labels): drop labels as a function of the step
                batch, labels = batch
                drop_gen.manual_seed(step_seed(cfg.train.seed, dist_info.rank, step, 3))
                labels = drop_labels(labels, n_classes, cfg.train.p_uncond, drop_gen).to(device, non_blocking=True)
            with probe.step("train"):
                x = prepare_batch(batch, cfg, step, dist_info.rank, device, flip_gen)
                noise_gen.manual_seed(step_seed(cfg.train.seed, dist_info.rank, step, 1))
                lr = lr_at(cfg, step)
                loss, gnorm = core.step(x, noise_gen, lr, step=step, labels=labels)
                loss_acc += loss.detach().float()
                levels.add(*core.last_terms)
            n_acc += 1
            self.step = step = step + 1
            if self.bar is not None:
                self.bar.update(1)

            if step % cfg.train.log_every == 0 or step == end:
                mean_loss = float(all_reduce_mean(loss_acc, dist_info)) / n_acc
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"loss became {mean_loss} at step {step}; try a "
                                             "smaller train.lr or a larger train.warmup")
                now = time.perf_counter()
                self._log_line(step, mean_loss, n_acc, now - t_last, lr, gnorm,
                               {"level": core.method.level_name, "at": levels.centres,
                                "loss": levels.take(dist_info)})
                self.losses.append(mean_loss)
                loss_acc.zero_()
                n_acc = 0
                t_last = time.perf_counter()
            if cfg.train.sample_every and step % cfg.train.sample_every == 0:
                self.sample_grid()
                t_last = time.perf_counter()
            if cfg.train.ckpt_every and step % cfg.train.ckpt_every == 0:
                self.checkpoint()
                t_last = time.perf_counter()
        self.stopped = stop.requested

    def _log_line(self, step: int, mean_loss: float, n: int, seconds: float, lr: float, gnorm,
                  level_loss: dict | None = None) -> None:
        if not self.main:
            return
        cfg = self.cfg
        seconds = max(seconds, 1e-9)
        ips = n * cfg.train.batch_size / seconds
        self.progress.write(step=step, loss=mean_loss, images_per_s=ips, lr=lr,
                            eta_s=(cfg.train.n_steps - step) / (n / seconds),
                            elapsed_s=time.perf_counter() - self.t0,
                            total_steps=cfg.train.n_steps, grad_norm=float(gnorm),
                            level_loss=level_loss)
        if self.tb is not None:
            self.tb.add_scalar("loss", mean_loss, step)
            self.tb.add_scalar("lr", lr, step)
            self.tb.add_scalar("images_per_s", ips, step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{ips:.0f}")

    # ------------------------------------------------------------------ the end
    def finish(self) -> dict:
        """Checkpoint the last step (stopped or finished) and write the closing event."""
        cfg, step = self.cfg, self.step
        finished = step >= cfg.train.n_steps
        elapsed = time.perf_counter() - self.t0
        if self.stopped and not finished and self.main:
            if not self._checkpointed_now():
                self.checkpoint()
            self.progress.event(events.STOPPED, step, elapsed_s=elapsed)
            self.log(f"stopped by a signal at step {step}; checkpoint written, --resume continues")
        if finished and self.main:
            if not self._checkpointed_now():
                self.checkpoint()
            if cfg.train.sample_every and step % cfg.train.sample_every:
                self.sample_grid()
            self.progress.event(events.DONE, step, elapsed_s=time.perf_counter() - self.t0)
        return {"run_dir": str(self.run_dir), "start_step": self.start_step, "step": step,
                "finished": finished, "losses": self.losses,
                "checkpoint": str(self.last_ckpt) if self.last_ckpt else None}


WEIGHTS = ("ema", "raw")


def load_run(run_dir, step: int | None = None, device="cpu", weights: str = "ema"):
    """(cfg, model in eval mode, checkpoint dict, path) of a run directory: the EMA weights
    (``weights="ema"``, the default) or the raw training weights (``"raw"``)."""
    if weights not in WEIGHTS:
        raise ConfigError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    ckpt, path = ck.load_latest(run_dir, step)
    cfg = from_dict(ckpt["config"])
    model = build_net(cfg)
    model.load_state_dict(ckpt["ema" if weights == "ema" else "model"])
    return cfg, model.to(device).eval().requires_grad_(False), ckpt, path
