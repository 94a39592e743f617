"""The Image-runs tab's side of the image trainer's command line, without Qt: the command lines it runs
(train, sample, evaluate; ``explorer.workers.process`` launches them), so the CLI contract lives in one
place; the JSON replies and error lines of those processes; the device (CUDA) and time texts. Reading
the run folders the trainer writes is ``trainers.image.runs``. No maths here.
"""
from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import numpy as np

from trainers.image.run_layout import drawn_paths
from trainers.image.runs import checkpoint_steps
from trainers.samplers import SAMPLERS, sampler_class


# ------------------------------------------------------------------------------ command lines
def trainer_argv(*args: str) -> list[str]:
    """Arguments for ``sys.executable``: the image trainer CLI in a child interpreter."""
    return ["-m", "trainers.image", *args]


def parse_overrides(text: str) -> list[str]:
    """``"train.lr=1e-3 model.ch_mult='[1,2]'"`` -> tokens; ValueError on a bad token."""
    tokens = shlex.split(text)          # ValueError on an unbalanced quote
    bad = [t for t in tokens if "=" not in t]
    if bad:
        raise ValueError(f"overrides must be key=value; got {' '.join(bad)!r}")
    return tokens


def train_args(config: str, out: Path, data_dir: str = "", resume: bool = False,
               overrides: list[str] = ()) -> list[str]:
    """``train`` arguments. Resuming a run that has checkpoints leaves ``--config`` out, so the
    run continues with the config stored in its checkpoint (plus the overrides)."""
    args = ["train", "--out", str(out), "--quiet"]
    if not (resume and checkpoint_steps(out)):
        args += ["--config", config]
    if data_dir:
        args += ["--data-dir", data_dir]
    if resume:
        args.append("--resume")
    return trainer_argv(*args, *overrides)


# The GUI's default for drawing from and rating a checkpoint: DDIM with FAST_NFE steps (seconds), not the
# run's own full sampler (DDPM: T = 1000 network evaluations per sample; about 20x slower).
FAST_SAMPLER, FAST_NFE = "ddim", 50


def sampler_nfe(sampler: str) -> int | None:
    """The --nfe the GUI passes with `sampler`: FAST_NFE for the fast sampler, else None (its default)."""
    return FAST_NFE if sampler == FAST_SAMPLER else None


def sampler_choices() -> list[tuple[str, str]]:
    """(name, title) of every sampler the trainer's ``--sampler`` accepts, after the run's default (""),
    each titled with what it costs where that is known."""
    titles = {"": "run's own (full: DDPM T steps / annealed)",
              FAST_SAMPLER: f"{SAMPLERS[FAST_SAMPLER].title} {FAST_NFE} steps (fast)"}
    return [("", titles[""]), *((name, titles.get(name, info.title)) for name, info in SAMPLERS.items())]


def condition_args(label: int | None = None, guidance: float = 0.0) -> list[str]:
    """``--class K --guidance W`` for a class-conditional run (label None: unconditional, no
    arguments; guidance 0: the conditional model, left out). The guided score is
    (1+w) s(x|c) − w s(x). ValueError on guidance without a class or a bad class or weight; the
    CLI checks K < the run's n_classes."""
    if label is not None and (isinstance(label, bool) or not isinstance(label, int) or label < 0):
        raise ValueError(f"class must be an integer >= 0 (or None: unconditional), got {label!r}")
    if not isinstance(guidance, (int, float)) or not math.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")
    if label is None:
        if guidance:
            raise ValueError(f"guidance w={guidance:g} needs a class (--class K): it weighs the "
                             f"class against the unconditional model")
        return []
    return ["--class", str(label)] + (["--guidance", str(float(guidance))] if guidance else [])


def sample_args(run: Path, step: int, n: int, sampler: str = "", frames: int = 0,
                weights: str = "ema", nfe: int | None = None, label: int | None = None,
                guidance: float = 0.0) -> list[str]:
    """``sample`` arguments; sampler "" is the run's default (ddpm / annealed), else any registry
    sampler (``trainers.samplers.SAMPLERS``); frames > 0 also records the chain; weights "ema"
    (the default) or "raw"; ``label``/``guidance``: ``condition_args`` (the grid's file name
    carries them). The seed is the CLI's default, so EMA and raw grids start alike."""
    if sampler:
        sampler_class(sampler)                 # ValueError naming an unknown one and the choices
    cond = condition_args(label, guidance)
    grid, chain = drawn_paths(run, step, sampler or "default", weights, label, guidance)
    args = ["sample", "--run", str(run), "--ckpt", str(step), "--n", str(n), "--out", str(grid)]
    if sampler:
        args += ["--sampler", sampler]
    if nfe:
        args += ["--nfe", str(nfe)]
    if weights != "ema":
        args += ["--weights", weights]
    if frames > 0:
        args += ["--chain", str(chain), "--frames", str(frames)]
    return trainer_argv(*args, *cond)


def rate_args(run: Path, step: int, n: int, bpd_n: int, sampler: str = "",
              nfe: int | None = None, label: int | None = None, guidance: float = 0.0) -> list[str]:
    """``evaluate`` arguments rating checkpoint ``step`` with ``sampler`` ("": the run's default)
    and ``nfe`` (None: the sampler's default) and EMA weights on ``n`` samples (``bpd_n`` held-out
    images for bits/dim, 0: none), of class ``label`` with guidance ``guidance``
    (``condition_args``); the CLI appends the figures to ``eval.jsonl`` and prints its report as
    one JSON document."""
    cond = condition_args(label, guidance)
    args = ["evaluate", "--run", str(run), "--ckpt", str(step), "--n", str(n), "--bpd-n", str(bpd_n)]
    if sampler:
        args += ["--sampler", sampler]
    if nfe:
        args += ["--nfe", str(nfe)]
    return trainer_argv(*args, *cond, "--json")


def last_json_line(text: str) -> dict | None:
    """The sample command prints one JSON line; find it among whatever else was printed."""
    for line in reversed(text.splitlines()):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def json_reply(text: str) -> dict | None:
    """A command's JSON reply: its whole stdout as one (possibly indented) document, as
    ``evaluate --json`` prints it, else its last JSON line (``last_json_line``)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return last_json_line(text)
    return obj if isinstance(obj, dict) else None


def error_message(stderr: str) -> str:
    """The trainer's own explanation: its last ``error: ...`` line, else the last line (the
    exception line of a traceback)."""
    lines = [l.strip() for l in stderr.splitlines() if l.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    return lines[-1] if lines else "no message on stderr"


def side_by_side(images: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """(H, W, 3) uint8 images in a row, top-aligned on a black background, ``gap`` pixels apart."""
    h = max(im.shape[0] for im in images)
    w = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    out = np.zeros((h, w, 3), np.uint8)
    x = 0
    for im in images:
        out[:im.shape[0], x:x + im.shape[1]] = im
        x += im.shape[1] + gap
    return out


# ------------------------------------------------------------------------------ device and time
CPU_SLOW = "CPU only: image configs other than digits will be very slow"


def cuda_device() -> tuple[str, int] | None:
    """(name, total memory in bytes) of CUDA device 0, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    p = torch.cuda.get_device_properties(0)
    return p.name, int(p.total_memory)


def device_label(device_pref: str, dataset: str, cuda: tuple[str, int] | None) -> str:
    """The device a run with ``train.device=device_pref`` will train on, in words."""
    if device_pref != "cpu" and cuda is not None:
        name, mem = cuda
        return f"CUDA: {name}, {mem / 2**30:.0f} GiB"
    if device_pref.startswith("cuda"):
        return f"train.device={device_pref}, but this machine has no CUDA device: the run will fail"
    if dataset == "digits":
        return "CPU (the digits configs are sized for it)" + (
            "; a CUDA device is present, but this config asks for train.device=cpu" if cuda else "")
    return CPU_SLOW


def run_device_label(config: str, overrides_text: str = "") -> str:
    """``device_label`` for a config name or path plus override tokens, or why it cannot be read."""
    from trainers.image.config import load_config

    try:
        cfg = load_config(config, parse_overrides(overrides_text))
    except Exception as e:          # noqa: BLE001  (a bad config is reported at Start, in full)
        return f"– (config: {str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return device_label(cfg.train.device, cfg.data.dataset, cuda_device())


def estimate_text(points: list[tuple[int, float]], total_steps: int | None) -> str:
    """The run's time from its measured speed: ``points`` are (step, elapsed_s) of one process's
    log lines; the speed is taken after the first line, which carries the warm-up."""
    if not total_steps or len(points) < 2:
        return "measuring the first steps …"
    (s0, e0), (s1, e1) = points[0], points[-1]
    if s1 <= s0 or e1 <= e0:
        return "measuring the first steps …"
    rate = (s1 - s0) / (e1 - e0)
    left = max(total_steps - s1, 0) / rate
    return (f"{format_seconds(left)} left, {format_seconds(e1 + left)} for this process "
            f"(measured {rate:.3g} steps/s)")


def format_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")
