"""Image-trainer run folders, read without Qt: runs, sample grids, checkpoints, chains, progress, evaluations
— the files the image trainer writes (trainers.image.train, sample, evaluate), read back for the explorer's
Image-runs tab.

The folder layout (progress.jsonl, checkpoints/, samples/, drawn/) is ``run_layout``, shared with the
trainer, and the event names of progress.jsonl are ``progress``'s; no path or event string is spelled out
here. ``eval.jsonl`` (one line per ``evaluate``) is read with progress.jsonl's torn-line-safe reader.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import progress as events
from . import run_layout as layout
from .progress import parse_line, read_records
from .run_layout import drawn_paths, is_run


# ------------------------------------------------------------------------------ run folders
def list_runs(root: Path) -> list[Path]:
    """Run folders directly under ``root``, most recently changed first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and is_run(p)]

    def changed(p: Path) -> float:
        log = layout.progress_path(p)
        return (log if log.exists() else p).stat().st_mtime

    return sorted(runs, key=changed, reverse=True)


def checkpoint_steps(run: Path) -> list[int]:
    """The steps of the run's checkpoints, ascending."""
    from .checkpoints import list_checkpoints

    return [step for step, _ in list_checkpoints(run)]


def run_classes(run: Path) -> list[str]:
    """The class names of a class-conditional run (its config's ``model.n_classes`` > 0; the names
    are ``model.class_names`` where the config has them, else "0" … "n−1"), [] for an unconditional
    run or one whose config.toml cannot be read."""
    from .config import load_config

    try:
        cfg = load_config(layout.config_path(run))
    except (ValueError, OSError):         # ConfigError and TOML errors are ValueErrors
        return []
    n = getattr(cfg.model, "n_classes", 0)
    names = list(getattr(cfg.model, "class_names", None) or [])
    return [str(x) for x in names] if len(names) == n else [str(k) for k in range(n)]


@dataclass(frozen=True)
class Grid:
    path: Path
    step: int
    label: str
    chain: Path | None = None      # the recorded chain x_T -> x_0, for drawn grids
    weights: str = "ema"           # drawn from the EMA or the raw weights
    sampler: str = ""              # registry name ("default": the run's own), "" when unknown
    class_id: int | None = None    # the class drawn (conditional runs), None: unconditional
    guidance: float = 0.0          # its guidance weight w ((1+w)s(x|c) − w s(x))


WEIGHTS = (("ema", "EMA weights"), ("raw", "raw weights"))     # what a drawn grid was drawn from


def _weights_text(weights: str) -> str:
    return dict(WEIGHTS)[weights]


def list_grids(run: Path) -> list[Grid]:
    """Training grids and drawn grids, in step order (a drawn grid after the training grid of
    its step); the last is the latest."""
    run = Path(run)
    grids = []
    drawn_with = {}                 # training grid file name -> its samples event (sampler, nfe)
    if layout.samples_dir(run).is_dir():
        drawn_with = {Path(r["path"]).name: r for r in read_log(run)
                      if r.get("event") == events.SAMPLES and "path" in r}
    n_classes = len(run_classes(run)) if layout.samples_dir(run).is_dir() else 0
    # a class-conditional run's previews draw every class in turn (trainers.image.train), unguided
    classes = f", classes 0–{n_classes - 1} in turn, w = 0" if n_classes else ""
    for p in _pngs(layout.samples_dir(run)):
        if m := layout.SAMPLE_GRID_NAME.match(p.name):
            step, ev = int(m.group(1)), drawn_with.get(p.name, {})
            how = f", {ev['sampler']} {ev['nfe']} NFE" if "sampler" in ev and "nfe" in ev else ""
            how += classes
            grids.append(Grid(p, step, f"step {step} (EMA weights{how})", None, "ema",
                              ev.get("sampler", "")))
    for p in _pngs(layout.drawn_dir(run)):
        if m := layout.DRAWN_GRID_NAME.match(p.name):
            chain = p.with_suffix(".npz")
            step, weights, sampler = int(m["step"]), "raw" if m["raw"] else "ema", m["sampler"]
            class_id = int(m["label"]) if m["label"] is not None else None
            guidance = float(m["guidance"]) if m["guidance"] is not None else 0.0
            grids.append(Grid(p, step, f"checkpoint {step}, {sampler} sampler, "
                                       f"{condition_text(class_id, guidance)}{_weights_text(weights)}",
                              chain if chain.is_file() else None, weights, sampler, class_id, guidance))
    return sorted(grids, key=_grid_order)


def condition_text(class_id: int | None, guidance: float = 0.0) -> str:
    """"class K, w = W, " for a class-conditional grid or evaluation, "" for an unconditional one."""
    return "" if class_id is None else f"class {class_id}, w = {guidance:g}, "


def counterpart(grid: Grid) -> Path:
    """The drawn grid of the same checkpoint, sampler, class and guidance from the other weights
    (EMA <-> raw); it may not exist yet."""
    other = "raw" if grid.weights == "ema" else "ema"
    return drawn_paths(grid.path.parents[1], grid.step, grid.sampler or "default", other,
                       grid.class_id, grid.guidance)[0]


def _grid_order(g: Grid) -> tuple:
    """Step order; at one step the training grid first, then the drawn ones, oldest first."""
    return g.step, g.path.parent.name == layout.DRAWN, g.path.stat().st_mtime


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8, row 0 at the top."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@dataclass
class ChainFrames:
    grids: list[np.ndarray]        # one (H, W, 3) uint8 grid per frame, x_T first
    labels: list[str]


def load_chain(path: Path) -> ChainFrames:
    """A chain saved by ``sample --chain X.npz`` (uint8 frames (F, N, C, H, W)), as grids."""
    import torch

    from .imageio import grid_array

    with np.load(path) as d:
        frames, labels = d["frames"], [str(s) for s in d["labels"]]
    grids = [grid_array(torch.from_numpy(f).float() / 255.0) for f in frames]
    return ChainFrames(grids, labels)


# ------------------------------------------------------------------------------ progress.jsonl
class ProgressTail:
    """Reads ``progress.jsonl`` incrementally: each ``poll()`` returns the records appended
    since the last one, never a partial last line (it waits for the newline).

    The trainer rewrites the file when a run starts afresh (truncates it) or resumes (replaces
    it with the lines up to the checkpoint). A new file identity, a file shorter than what was
    read, or a different byte just before the read position means "start over", which ``poll()``
    reports as ``reset=True`` with the records of the new file.

    ``skip_existing``: ignore what the file holds now (a fresh run's stale log from an earlier
    attempt; if the trainer refuses to start, it stays unread).
    """

    def __init__(self, path: Path, skip_existing: bool = False):
        self.path = Path(path)
        self._offset = 0
        self._ino = None
        self._last = b""           # the last byte read: must still be at _offset - 1
        self._partial = b""
        if skip_existing and self.path.exists():
            st = self.path.stat()
            self._ino, self._offset = st.st_ino, st.st_size
            self._last = self._read_from(st.st_size - 1)[:1] if st.st_size else b""

    def poll(self) -> tuple[list[dict], bool]:
        """(new records, reset): reset means earlier records are void (the file was rewritten)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return [], False
        reset = self._ino is not None and (st.st_ino != self._ino or st.st_size < self._offset)
        self._ino = st.st_ino
        if reset:
            self._rewind()
        if st.st_size == self._offset:
            return [], reset
        data = self._read_from(self._offset - len(self._last))
        if data.startswith(self._last):
            data = data[len(self._last):]
        else:                                   # rewritten, to at least the old size
            self._rewind()
            data, reset = self._read_from(0), True
        self._offset += len(data)
        self._last = data[-1:] or self._last
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [r for r in map(_record, lines) if r is not None], reset

    def _read_from(self, pos: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(pos)
            return f.read()

    def _rewind(self) -> None:
        self._offset, self._last, self._partial = 0, b"", b""


def _record(line: bytes) -> dict | None:
    return parse_line(line)      # None for a blank line, or one cut by a kill


def read_log(run: Path) -> list[dict]:
    """Every whole record of a run's progress.jsonl ([] when there is none)."""
    return read_records(layout.progress_path(run))


def read_evals(run: Path) -> list[dict]:
    """Every whole record of a run's eval.jsonl ([] when there is none), with the same
    torn-line-safe reader as progress.jsonl."""
    return read_records(layout.eval_path(run))


def file_key(path: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of a file, None when it is missing: changes when the file does."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def unrated_steps(run: Path, sampler: str = "", nfe: int | None = None, label: int | None = None,
                  guidance: float = 0.0) -> list[int]:
    """The run's checkpoints (steps, ascending) that no eval.jsonl line covers yet; with ``sampler``
    (and ``nfe``), no line drawn with that sampler (and that many network evaluations); only lines
    of class ``label`` with weight ``guidance`` count (label None: unconditional lines, those
    without a class)."""
    rated = {r.get("step") for r in read_evals(run)
             if (not sampler or r.get("sampler") == sampler) and (not nfe or r.get("nfe") == nfe)
             and _condition(r) == (label, float(guidance) if label is not None else 0.0)}
    return [step for step in checkpoint_steps(run) if step not in rated]


def _condition(rec: dict) -> tuple[int | None, float]:
    """(class, w) of an eval.jsonl line; (None, 0.0) for an unconditional one."""
    if not isinstance(rec.get("class"), int):
        return None, 0.0
    w = rec.get("guidance")
    return rec["class"], float(w) if isinstance(w, (int, float)) else 0.0


def eval_kind(rec: dict) -> str:
    """How an evaluation drew its samples, in words: sampler, NFE, class and w (class-conditional
    evaluations) and weights."""
    sampler = rec.get("sampler") or "no samples"
    nfe = f" {rec['nfe']} NFE" if rec.get("nfe") else ""
    return (f"{sampler}{nfe}, {condition_text(*_condition(rec))}"
            f"{'raw' if rec.get('weights') == 'raw' else 'EMA'} weights")


QUALITY_FIGURES = ("mean_confidence", "frac_confident")


@dataclass
class QualityCurves:
    """The judge's figures per checkpoint for one kind of evaluation (``eval_kind``): lines at
    the same step (other seeds) are averaged. ``samples[fig]`` is aligned with ``steps``;
    ``reference`` / ``noise`` hold each figure's mean over the lines (held-out real digits,
    uniform noise); ``bpd_steps``/``bpd`` the steps that have bits/dim."""
    kind: str
    steps: list[int]
    samples: dict[str, list[float]]
    reference: dict[str, float]
    noise: dict[str, float]
    bpd_steps: list[int]
    bpd: list[float]


def eval_kinds(records: list[dict]) -> list[str]:
    """The kinds of evaluation present, the one covering the most checkpoints first."""
    steps: dict[str, set] = {}
    for rec in records:
        steps.setdefault(eval_kind(rec), set()).add(rec.get("step"))
    return sorted(steps, key=lambda k: -len(steps[k]))


def quality_curves(records: list[dict], kind: str) -> QualityCurves:
    """``QualityCurves`` of the eval.jsonl ``records`` of ``kind``."""
    mine = [r for r in records if eval_kind(r) == kind and isinstance(r.get("step"), int)]
    judged = [r for r in mine if isinstance(r.get(layout.EVAL_SAMPLES), dict)]
    steps = sorted({r["step"] for r in judged})
    samples = {fig: [_mean(r[layout.EVAL_SAMPLES].get(fig) for r in judged if r["step"] == s)
                     for s in steps] for fig in QUALITY_FIGURES}
    reference = {fig: _mean(r.get(layout.EVAL_REFERENCE, {}).get(fig) for r in judged)
                 for fig in QUALITY_FIGURES}
    noise = {fig: _mean(r.get(layout.EVAL_NOISE, {}).get(fig) for r in judged) for fig in QUALITY_FIGURES}
    with_bpd = [r for r in mine if isinstance(r.get("bits_per_dim"), (int, float))]
    bpd_steps = sorted({r["step"] for r in with_bpd})
    bpd = [_mean(r["bits_per_dim"] for r in with_bpd if r["step"] == s) for s in bpd_steps]
    return QualityCurves(kind, steps, samples, reference, noise, bpd_steps, bpd)


def _mean(values) -> float:
    """Mean of the numbers among ``values`` (NaN when there are none)."""
    nums = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(nums) / len(nums) if nums else math.nan


def loss_curve(records: list[dict]) -> tuple[list[int], list[float]]:
    """(steps, losses) of a log's training lines."""
    lines = [r for r in records if "loss" in r and "event" not in r]
    return [r["step"] for r in lines], [r["loss"] for r in lines]


def level_curve(rec: dict) -> tuple[str, list[float], list[float]] | None:
    """(level kind "t" or "sigma", bin centres, mean loss) of a training line's ``level_loss``,
    bins without examples left out; None when the line has none."""
    ll = rec.get("level_loss")
    if not isinstance(ll, dict) or "at" not in ll or "loss" not in ll:
        return None
    pts = [(a, v) for a, v in zip(ll["at"], ll["loss"]) if v is not None]
    return ll.get("level", "t"), [a for a, _ in pts], [v for _, v in pts]


@dataclass(frozen=True)
class RunSummary:
    status: str                    # running, finished, stopped, failed, interrupted, new
    step: int | None               # the last step in the log
    loss: float | None             # the last logged loss
    message: str = ""              # a failed run's message

    def text(self) -> str:
        parts = [self.status + (f": {self.message}" if self.message else "")]
        if self.step is not None:
            parts.append(f"step {self.step}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        return ", ".join(parts)


RECENT_S = 120.0     # a log without a closing event, written this recently: still running


def run_summary(run: Path, records: list[dict] | None = None, live: bool = False,
                now: float | None = None) -> RunSummary:
    """How a run's log ends: finished (``done``), stopped, failed (with the trainer's message),
    running (``live``, i.e. this tab's process, or a log written in the last ``RECENT_S``), else
    interrupted (killed, or left running elsewhere and silent)."""
    import time as _time

    recs = read_log(run) if records is None else records
    steps = [r["step"] for r in recs if isinstance(r.get("step"), int)]
    step = max(steps) if steps else None
    losses = loss_curve(recs)[1]
    loss = losses[-1] if losses else None
    last = next((r for r in reversed(recs) if "event" in r), None)
    kind = last["event"] if last else None
    if kind == events.DONE:
        return RunSummary("finished", step, loss)
    if kind == events.STOPPED:
        return RunSummary("stopped", step, loss)
    if kind == events.FAILED:
        return RunSummary("failed", step, loss, str(last.get("message") or last.get("error") or ""))
    if not recs:
        return RunSummary("new", step, loss)
    log = layout.progress_path(run)
    recent = log.exists() and (now or _time.time()) - log.stat().st_mtime < RECENT_S
    return RunSummary("running" if live or recent else "interrupted", step, loss)
