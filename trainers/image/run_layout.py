"""The run folder's layout, in one place: the trainer writes it, the explorer reads it.

::

    RUN_DIR/config.toml                         the resolved config (overrides applied)
    RUN_DIR/progress.jsonl                      the event log (``trainers.image.progress``)
    RUN_DIR/checkpoints/ckpt_<step:08d>.pt      the newest ``train.keep_ckpts`` kept
    RUN_DIR/samples/step_<step:08d>.png         grids drawn with the EMA weights while training
                                                (their ``samples`` event names sampler and nfe)
    RUN_DIR/drawn/ckpt_<step:08d>-<sampler>[.class<K>.w<W>][.raw].png
                                                grids drawn later from a checkpoint (the explorer's
                                                "sample from checkpoint"), from the EMA weights, or
                                                the raw ones (``.raw``), of class K with guidance
                                                weight W (conditional runs), with the chain
                                                x_T -> x_0 beside each (same stem, ``.npz``)
    RUN_DIR/tb/                                 TensorBoard events (only when tensorboard is installed)
    RUN_DIR/eval.jsonl                          one line per ``evaluate`` (``trainers.image.evaluate``)
    RUN_DIR/judge_mnist.pt                      the MNIST judge's cached fit (``trainers.image.judge``)

Only ``math``, ``pathlib`` and ``re`` here, so the GUI can import it without torch.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

CONFIG = "config.toml"
PROGRESS = "progress.jsonl"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
DRAWN = "drawn"
TENSORBOARD = "tb"
EVAL = "eval.jsonl"
# the judge-figure groups of an eval.jsonl line: generated samples, held-out real data, uniform noise
EVAL_SAMPLES, EVAL_REFERENCE, EVAL_NOISE = "samples", "reference", "noise"

CKPT_NAME = re.compile(r"^ckpt_(\d+)\.pt$")
SAMPLE_GRID_NAME = re.compile(r"^step_(\d+)\.png$")
# samplers such as pf-ode have a hyphen; ".class<K>.w<W>": class K, guidance weight W (``f"{W:g}"``);
# ".raw": drawn from the raw (not EMA) weights. Groups: step, sampler, label, guidance, raw.
DRAWN_GRID_NAME = re.compile(r"^ckpt_(?P<step>\d+)-(?P<sampler>[\w-]+?)"
                             r"(?:\.class(?P<label>\d+)\.w(?P<guidance>-?[\d.]+(?:e[-+]\d+)?))?"
                             r"(?P<raw>\.raw)?\.png$")


def config_path(run) -> Path:
    return Path(run) / CONFIG


def progress_path(run) -> Path:
    return Path(run) / PROGRESS


def ckpt_dir(run) -> Path:
    return Path(run) / CHECKPOINTS


def ckpt_path(run, step: int) -> Path:
    return ckpt_dir(run) / f"ckpt_{step:08d}.pt"


def samples_dir(run) -> Path:
    return Path(run) / SAMPLES


def sample_grid_path(run, step: int) -> Path:
    return samples_dir(run) / f"step_{step:08d}.png"


def drawn_dir(run) -> Path:
    return Path(run) / DRAWN


def drawn_paths(run, step: int, sampler: str, weights: str = "ema", label: int | None = None,
                guidance: float = 0.0) -> tuple[Path, Path]:
    """(grid PNG, chain NPZ) for a grid drawn from checkpoint ``step`` with ``sampler`` and the
    EMA (``weights="ema"``) or raw (``"raw"``) weights; of class ``label`` with guidance weight
    ``guidance`` (None: unconditional, the name has no class part)."""
    if not re.fullmatch(r"[\w-]+", sampler):
        raise ValueError(f"sampler name {sampler!r} must be letters, digits, '_' or '-'")
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if not math.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")
    if label is None and guidance:
        raise ValueError(f"guidance w={guidance:g} needs a class (--class K): it weighs the class "
                         f"against the unconditional model")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int) or label < 0):
        raise ValueError(f"class must be an integer >= 0, got {label!r}")
    cond = f".class{label}.w{float(guidance):g}" if label is not None else ""
    name = f"ckpt_{step:08d}-{sampler}{cond}" + (".raw" if weights == "raw" else "")
    return drawn_dir(run) / f"{name}.png", drawn_dir(run) / f"{name}.npz"


def tensorboard_dir(run) -> Path:
    return Path(run) / TENSORBOARD


def eval_path(run) -> Path:
    return Path(run) / EVAL


def is_run(path) -> bool:
    """A folder the trainer has written to: it has a progress log or a checkpoints folder."""
    return progress_path(path).is_file() or ckpt_dir(path).is_dir()
