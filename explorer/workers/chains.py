"""The chain stepper: computes the Samplers tab's chains (set up by trainers.studies.chains) in a
background thread, frame by frame, so the GUI thread only draws.

All chains share one timeline of `n_frames` + 1 frames: frame f shows chain i after
round(f · n_stepsᵢ / n_frames) of its steps, so samplers of different lengths start together and end
together. Frame 0 is each chain's initial particles (the same z for all, mapped to each sampler's start:
trainers.samplers.start_from). Every frame is computed by `trainers.samplers.advance_together`: chains that share one
score model get one batched forward pass per round. Drawing frame f+1 overlaps with computing f+2.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from PySide6 import QtCore

from trainers.samplers import ChainState, advance_together
from trainers.studies.chains import ChainSpec


@dataclass
class Chain:
    spec: ChainSpec
    state: ChainState
    frames: list = field(default_factory=list)    # float32 (N, 2) per frame
    labels: list = field(default_factory=list)
    nfes: list = field(default_factory=list)      # network evaluations spent up to each frame
    error: str = ""
    diverged_at_frame: int | None = None
    metrics: dict = field(default_factory=dict)   # frame -> the chain's metric dict, every `metric_every` frames

    @property
    def k(self) -> int:
        return self.state.k


class ChainWorker(QtCore.QThread):
    framesReady = QtCore.Signal(int)          # frames now available (for every chain)
    chainFailed = QtCore.Signal(int, str)     # chain index, message
    failed = QtCore.Signal(str)

    def __init__(self, specs: list[ChainSpec], starts: list[torch.Tensor], n_frames: int, seed: int = 0,
                 metric_fns=(), metric_every: int = 5, parent=None):
        """starts[i]: chain i's initial particles. Every chain gets a noise generator with the same
        seed, so stochastic samplers see the same noise stream. metric_fns[i]: chain i's figures
        (each panel against its own target: trainers.studies.chains.target_metrics); none: no figures."""
        super().__init__(parent)
        # Sample metrics (energy distance, mode weights) cost ~10 ms per chain at 10k particles:
        # they are computed here, every few frames, not on the GUI thread at every frame drawn.
        self.metric_fns, self.metric_every = list(metric_fns), max(1, int(metric_every))
        self.n_frames = int(n_frames)
        self.chains = []
        for spec, x0 in zip(specs, starts):
            x0 = x0.float().clone()
            c = Chain(spec, ChainState(spec.sampler, x0, torch.Generator().manual_seed(seed + 1)))
            c.frames.append(x0.numpy().copy())
            c.labels.append("start")
            c.nfes.append(0)
            self.chains.append(c)
        self._cv = threading.Condition()
        self._target = 0
        self._cancel = False
        self.available = 1

    def request(self, frame: int):
        """Ask for frames up to `frame` (inclusive); returns at once."""
        with self._cv:
            self._target = max(self._target, min(int(frame), self.n_frames))
            self._cv.notify()

    def cancel(self):
        with self._cv:
            self._cancel = True
            self._cv.notify()

    def run(self):
        try:
            self._metrics(0)
            while True:
                with self._cv:
                    while not self._cancel and self.available > self._target:
                        self._cv.wait()
                    if self._cancel:
                        return
                if not self._compute_frame(self.available):
                    return
                self.available += 1
                self.framesReady.emit(self.available)
        except Exception as e:              # a broken model must not take the window down
            self.failed.emit(f"sampling stopped: {type(e).__name__}: {e}")

    def _compute_frame(self, f: int) -> bool:
        states = [c.state for c in self.chains]
        targets = [round(f * c.state.sampler.n_steps / self.n_frames) for c in self.chains]
        if not advance_together(states, targets, lambda: self._cancel):
            return False
        for i, c in enumerate(self.chains):
            if c.state.error and not c.error:
                c.error, c.diverged_at_frame = c.state.error, f
                self.chainFailed.emit(i, c.error)
            if c.error:
                c.frames.append(c.frames[-1])
                c.labels.append(f"diverged at step {c.state.k + 1}")
            else:
                c.frames.append(c.state.x.detach().numpy().astype(np.float32, copy=True))
                c.labels.append(c.state.label or c.labels[-1])
            c.nfes.append(c.state.nfe)
        if f % self.metric_every == 0 or f == self.n_frames:
            self._metrics(f)
        return True

    def _metrics(self, f: int):
        for c, fn in zip(self.chains, self.metric_fns):
            if not c.error and len(c.frames) > f:
                c.metrics[f] = fn(c.frames[f])

    def metric_at(self, i: int, f: int) -> dict:
        """The latest metrics computed at or before frame f of chain i ({} if none yet)."""
        m = self.chains[i].metrics
        keys = [k for k in list(m) if k <= f]
        return m[max(keys)] if keys else {}
