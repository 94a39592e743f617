"""Run-directory checkpoints: atomic writes, ``weights_only=True`` loads, fall back on corruption.

A checkpoint is ``RUN_DIR/checkpoints/ckpt_<step:08d>.pt`` (``run_layout.ckpt_path``) holding plain
types and tensors only (so ``torch.load(weights_only=True)`` accepts it): model and EMA weights,
optimizer and grad-scaler state, the step, RNG states (torch CPU/CUDA as byte tensors, numpy's MT19937 key as a tensor,
python's ``random`` state tuple) and the config dict. Writes go through
``trainers.atomic.atomic_torch_save`` (temp file + fsync + rename), so a crash mid-write never
leaves a half-written checkpoint under the final name; a file damaged anyway (disk full, copied
truncated) is reported and the previous checkpoint is used.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch

from ..atomic import CheckpointError, atomic_torch_save  # noqa: F401  (re-exported: callers catch it here)
from . import run_layout as layout
from .run_layout import ckpt_dir, ckpt_path  # noqa: F401  (this module's API since the start)

CKPT_VERSION = 1
REQUIRED_KEYS = ("version", "step", "model", "ema", "config")


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint file, oldest first."""
    d = ckpt_dir(run_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = layout.CKPT_NAME.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def remove_partial_writes(run_dir) -> list[Path]:
    """Delete the temp files of checkpoint writes a kill interrupted (``.ckpt_<step>.pt.*.tmp``:
    ``atomic_torch_save`` renames a file into place only once it is complete, so these are never
    read); returns what was removed."""
    d = ckpt_dir(run_dir)
    removed = []
    for p in d.glob(".ckpt_*.tmp") if d.is_dir() else []:
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def refuse_mismatched_resume(asked, ckpt: dict, run_dir, write_log: bool = True) -> None:
    """Before a resume loads anything: if the config `asked` differs from the checkpoint's in a field
    that decides what the run trains (``config.check_resume``), append a ``failed`` event to the run's
    progress.jsonl (when `write_log`: rank 0) and raise ``config.ResumeMismatch`` (one line)."""
    from . import progress as events
    from .config import ResumeMismatch, check_resume

    try:
        check_resume(ckpt["config"], asked, run_dir)
    except ResumeMismatch as e:
        if write_log:
            path = layout.progress_path(run_dir)
            if path.exists() and path.stat().st_size:
                with open(path, "rb+") as f:          # a torn last line (a kill) gets closed off first
                    f.seek(-1, 2)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
            log = events.ProgressLog(path)
            try:
                log.failed(e, int(ckpt["step"]))
            finally:
                log.close()
        raise


# -------------------------------------------------------------------------------- RNG states
def capture_rng_state(device: torch.device | None = None) -> dict:
    np_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "cuda": [],
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "python": random.getstate(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = [torch.cuda.get_rng_state(device)]
    return state


def restore_rng_state(state: dict, device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"][0], device)
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


# -------------------------------------------------------------------------------- save / load
def save_checkpoint(run_dir, step: int, payload: dict, keep: int = 3) -> Path:
    """Atomically write ``payload`` (plus version and step) and prune to the newest ``keep``."""
    payload = {"version": CKPT_VERSION, "step": int(step), **payload}
    path = ckpt_path(run_dir, step)
    atomic_torch_save(payload, path)
    if keep > 0:
        for _, old in list_checkpoints(run_dir)[:-keep]:
            try:
                old.unlink()
            except FileNotFoundError:
                pass
    return path


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def load_checkpoint_file(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, wrong type: all mean "unusable"
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise CheckpointError(f"checkpoint {path} is not a trainer checkpoint "
                              f"(expected keys {', '.join(REQUIRED_KEYS)})")
    if ckpt["version"] > CKPT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {ckpt['version']}, newer "
                              f"than this code ({CKPT_VERSION})")
    return ckpt


def load_latest(run_dir, step: int | None = None) -> tuple[dict, Path]:
    """The newest readable checkpoint (or the one at ``step``).

    An unreadable newest checkpoint gives a warning naming it and the reason, and the previous one
    is tried, and so on; only when none is readable is it an error.
    """
    found = list_checkpoints(run_dir)
    if step is not None:
        found = [(s, p) for s, p in found if s == step]
        if not found:
            steps = ", ".join(str(s) for s, _ in list_checkpoints(run_dir)) or "none"
            raise CheckpointError(f"no checkpoint for step {step} in {ckpt_dir(run_dir)} "
                                  f"(available: {steps})")
    if not found:
        raise CheckpointError(f"no checkpoint in {ckpt_dir(run_dir)} (expected ckpt_<step>.pt files)")
    errors = []
    for i, (s, p) in enumerate(reversed(found)):
        try:
            ckpt = load_checkpoint_file(p)
        except CheckpointError as e:
            errors.append(str(e))
            rest = len(found) - i - 1
            _warn(f"{e}; " + ("falling back to the previous checkpoint" if rest else
                              "no earlier checkpoint to fall back to"))
            continue
        return ckpt, p
    raise CheckpointError("no usable checkpoint: " + "; ".join(errors))
