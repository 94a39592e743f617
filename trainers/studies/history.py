"""What a training run went through: the loss per noise level, and weight snapshots along the way.

- `LossByLevel` bins the per-example loss terms of each step (`fitting.StepInfo.levels` /
  `level_losses`) by noise level — log-spaced σ bins for NCSN, timestep bins for DDPM — and keeps a
  running mean per bin (exponential, so the curve follows training).
- `SnapshotHistory` keeps the model's weights every `every` steps under a cap: when full, every other
  snapshot of the older half is dropped, so recent training stays dense and the early part thins
  out roughly geometrically, while the first and the newest snapshot always stay. `maybe_add` takes
  steps that are multiples of `every`; `record` takes weights at whatever steps they arrive (the
  explorer gets them a few times a second) and keeps the latest as the newest snapshot.
Both are plain data (tensors, floats), so a session file stores them as they are.
"""
from __future__ import annotations

import math

import torch


class LossByLevel:
    """Running mean of the loss in bins of noise level. `log` bins are log-spaced (σ); otherwise linear
    (timesteps). `decay` weighs the previous mean of a bin at each update (0: the latest batch only)."""

    def __init__(self, lo: float, hi: float, n_bins: int = 20, log: bool = True, decay: float = 0.9):
        if not hi > lo or n_bins < 1 or (log and lo <= 0):
            raise ValueError(f"need hi > lo (> 0 for log bins) and n_bins ≥ 1, got {lo}, {hi}, {n_bins}")
        self.log, self.decay = log, float(decay)
        a, b = (math.log(lo), math.log(hi)) if log else (lo, hi)
        self.edges = torch.linspace(a, b, n_bins + 1, dtype=torch.float64)
        self.inner = self.edges[1:-1]                # on the log scale for log bins
        self._centres: torch.Tensor | None = None
        self.mean = torch.full((n_bins,), float("nan"), dtype=torch.float64)
        self.count = torch.zeros(n_bins, dtype=torch.long)

    def update(self, levels: torch.Tensor, losses: torch.Tensor) -> None:
        v = levels.detach().double().flatten()
        v = v.log() if self.log else v
        idx = torch.bucketize(v, self.inner)                             # 0 … n_bins − 1, clamped at the ends
        sums = torch.zeros_like(self.mean).index_add_(0, idx, losses.detach().double().flatten())
        counts = torch.zeros_like(self.count).index_add_(0, idx, torch.ones_like(idx))
        seen = counts > 0
        batch_mean = sums[seen] / counts[seen]
        old = self.mean[seen]
        self.mean[seen] = torch.where(torch.isnan(old), batch_mean, self.decay * old + (1 - self.decay) * batch_mean)
        self.count += counts

    @classmethod
    def from_bins(cls, bins, decay: float = 0.9) -> "LossByLevel":
        """The bins of a training method's rule (trainers.methods.LossBins: inner edges on the level's
        own scale, and centres)."""
        h = cls(0.0, 1.0, n_bins=len(bins.centres), log=False, decay=decay)
        h.inner, h._centres = bins.edges.double().cpu(), torch.tensor(bins.centres, dtype=torch.float64)
        return h

    def centres(self) -> torch.Tensor:
        if self._centres is not None:
            return self._centres
        c = (self.edges[:-1] + self.edges[1:]) / 2
        return c.exp() if self.log else c

    def curve(self) -> tuple[list[float], list[float]]:
        """(level at each bin centre, running mean loss) for the bins seen so far."""
        seen = self.count > 0
        return self.centres()[seen].tolist(), self.mean[seen].tolist()


class SnapshotHistory:
    """Weight snapshots every `every` steps, at most `max_snapshots` of them (see the module doc)."""

    def __init__(self, every: int = 100, max_snapshots: int = 40):
        if every < 1 or max_snapshots < 2:
            raise ValueError("need every ≥ 1 and max_snapshots ≥ 2")
        self.every, self.max_snapshots = int(every), int(max_snapshots)
        self.steps: list[int] = []
        self.states: list[dict] = []

    def maybe_add(self, step: int, model: torch.nn.Module) -> bool:
        """Snapshot `model` if `step` is a multiple of `every` (or the first call). Returns whether it did."""
        if self.steps and step % self.every:
            return False
        self.add(step, {k: v.detach().clone() for k, v in model.state_dict().items()})
        return True

    def record(self, step: int, state: dict) -> bool:
        """Keep `state` (weights at `step`) as the newest snapshot. It is appended when the newest
        snapshot is at least `every` steps after the one before it (or is the first); otherwise it
        replaces the newest. So all snapshots but the newest are ≥ `every` steps apart, and the newest
        is always the latest weights. Returns whether it was appended. Steps must not go back."""
        if self.steps and step < self.steps[-1]:
            raise ValueError(f"step {step} is before the newest snapshot (step {self.steps[-1]}): "
                             "a new run needs a new history")
        provisional = len(self.steps) >= 2 and self.steps[-1] - self.steps[-2] < self.every
        if provisional or (self.steps and step == self.steps[-1]):
            self.steps[-1], self.states[-1] = int(step), state
            return False
        self.add(step, state)
        return True

    def clear(self) -> None:
        self.steps, self.states = [], []

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, state: dict) -> None:
        self.steps.append(int(step))
        self.states.append(state)
        if len(self.steps) > self.max_snapshots:
            self._thin()

    def _thin(self) -> None:
        """Drop every other snapshot of the older half, keeping the very first."""
        half = len(self.steps) // 2
        keep = [i for i in range(len(self.steps)) if i == 0 or i >= half or i % 2 == 0]
        self.steps = [self.steps[i] for i in keep]
        self.states = [self.states[i] for i in keep]

    def at(self, step: int) -> tuple[int, dict]:
        """The newest snapshot taken at or before `step` (the first one if none)."""
        if not self.steps:
            raise LookupError("no snapshots yet")
        i = max([j for j, s in enumerate(self.steps) if s <= step] or [0])
        return self.steps[i], self.states[i]

    def to_dict(self) -> dict:
        return {"every": self.every, "max_snapshots": self.max_snapshots, "steps": list(self.steps),
                "states": list(self.states)}

    @classmethod
    def from_dict(cls, d: dict) -> "SnapshotHistory":
        h = cls(int(d["every"]), int(d["max_snapshots"]))
        h.steps, h.states = [int(s) for s in d["steps"]], list(d["states"])
        return h
