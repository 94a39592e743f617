"""Where a training process runs: device choice, DDP set-up and tear-down, CPU threads, per-step
seeds and graceful stop on SIGTERM / SIGINT. No model or data here."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass

import torch

from .config import ConfigError, RunConfig


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


def teardown_distributed(info: DistInfo, barrier: bool = True) -> None:
    """End DDP: wait for the other ranks (after a clean finish only: a failed rank must not wait
    on ranks that will never arrive) and destroy the process group."""
    if info.world <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if barrier:
        dist.barrier()
    dist.destroy_process_group()


@contextlib.contextmanager
def distributed(device_pref: str):
    """``setup_distributed`` for the duration; torn down on the way out, also on an exception."""
    info = setup_distributed(device_pref)
    try:
        yield info
    except BaseException:
        teardown_distributed(info, barrier=False)
        raise
    teardown_distributed(info, barrier=True)


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """In place: the mean of ``t`` over the DDP ranks (``t`` itself in a single process)."""
    if info.world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
        t /= info.world
    return t


def pick_device(pref: str, dist_info: DistInfo, log=print) -> torch.device:
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_info.local_rank)
        log("warning: no CUDA device found: training on the CPU (slow; train.precision=bf16 uses "
            "the CPU's bf16 autocast)")
        return torch.device("cpu")
    dev = torch.device(pref)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={pref} but this machine has no CUDA device (or torch is a "
                              "CPU build): use train.device=auto or train.device=cpu")
        if dist_info.world > 1:
            dev = torch.device("cuda", dist_info.local_rank)
    return dev


def train_threads(cfg: RunConfig) -> int:
    """torch threads for a training process: train.threads on the CPU, untouched (0) on a GPU."""
    on_cpu = cfg.train.device == "cpu" or not torch.cuda.is_available()
    return cfg.train.threads if on_cpu else 0


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


def step_seed(seed: int, rank: int, step: int, stream: int) -> int:
    """Distinct 63-bit seeds per (seed, rank, step, stream): streams 0 = the global RNG, 1 = the
    loss noise, 2 = the flips, 3 = label dropout (class-conditional runs)."""
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729 + stream * 15_485_863) % (2**63 - 1)


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
