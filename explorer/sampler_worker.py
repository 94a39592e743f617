"""Computes sampler chains in a background thread, frame by frame, so the GUI thread only draws.

All chains share one timeline of `n_frames` + 1 frames: frame f shows chain i after
round(f · n_stepsᵢ / n_frames) of its steps, so Langevin (e.g. 300 steps), annealed Langevin (L·T
steps) and DDPM (T steps) start together and end together. Frame 0 is the shared initial particles.
Drawing frame f+1 overlaps with computing frame f+2 (pipelining over the two cores).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from PySide6 import QtCore

from trainers.samplers import DivergenceError


@dataclass
class Chain:
    spec: object                       # core.ChainSpec
    x: torch.Tensor
    k: int = 0                         # steps taken
    frames: list = field(default_factory=list)    # float32 (N, 2) per frame
    labels: list = field(default_factory=list)
    error: str = ""
    diverged_at_frame: int | None = None
    metrics: dict = field(default_factory=dict)   # frame -> text, every `metric_every` frames


class ChainWorker(QtCore.QThread):
    # Step the chains concurrently? Measured on the shared 2-core machine with another process
    # busy: concurrent was ~15% slower than one after another (30-34 vs 35-46 ms per 10k-particle
    # frame), so it is off; `bench_explorer.py --parallel` measures it again.
    PARALLEL = False

    framesReady = QtCore.Signal(int)          # frames now available (for every chain)
    chainFailed = QtCore.Signal(int, str)     # chain index, message
    failed = QtCore.Signal(str)

    def __init__(self, specs, x0: torch.Tensor, n_frames: int, seed: int = 0, metric_fn=None,
                 metric_every: int = 5, parallel: bool | None = None, parent=None):
        super().__init__(parent)
        # Sample metrics (energy distance, mode weights) cost ~10 ms per chain at 10k particles:
        # they are computed here, every few frames, not on the GUI thread at every frame drawn.
        self.metric_fn, self.metric_every = metric_fn, max(1, int(metric_every))
        x0 = x0.float()
        self.n_frames = int(n_frames)
        self.chains = [Chain(s, x0.clone()) for s in specs]
        first = x0.numpy().copy()
        for c in self.chains:
            c.frames.append(first)
            c.labels.append("start")
        self.gens = [torch.Generator().manual_seed(seed + 1000 * i) for i in range(len(specs))]
        parallel = self.PARALLEL if parallel is None else parallel
        self._pool = ThreadPoolExecutor(max_workers=min(len(self.chains), os.cpu_count() or 1)) \
            if parallel and (os.cpu_count() or 1) > 1 else None
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
                self._compute_frame(self.available)
                if self._cancel:
                    return
                self.available += 1
                self.framesReady.emit(self.available)
        except Exception as e:              # a broken model must not take the window down
            self.failed.emit(f"sampling stopped: {type(e).__name__}: {e}")
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def _advance(self, i: int, f: int):
        """Steps of chain i up to frame f; returns (positions, label) or None when cancelled."""
        c = self.chains[i]
        if c.error:
            return c.frames[-1], c.labels[-1]
        sampler = c.spec.sampler
        target = round(f * sampler.n_steps / self.n_frames)
        label = c.labels[-1]
        try:
            while c.k < target:
                if self._cancel:
                    return None
                out = sampler.step(c.x, c.k, self.gens[i])
                c.x, label = out.x, out.label
                c.k += 1
        except DivergenceError as e:
            c.error = str(e)
            c.diverged_at_frame = f
            self.chainFailed.emit(i, c.error)
            return c.frames[-1], f"diverged at step {c.k}"
        return c.x.detach().numpy().astype(np.float32, copy=True), label

    def _compute_frame(self, f: int):
        # The chains are independent: with PARALLEL they are stepped concurrently (torch releases
        # the GIL inside its kernels, so they can use two free cores).
        if self._pool is not None and len(self.chains) > 1:
            results = list(self._pool.map(lambda i: self._advance(i, f), range(len(self.chains))))
        else:
            results = [self._advance(i, f) for i in range(len(self.chains))]
        if any(r is None for r in results):
            return
        for c, (xy, label) in zip(self.chains, results):
            c.frames.append(xy)
            c.labels.append(label)
        if f % self.metric_every == 0 or f == self.n_frames:
            self._metrics(f)

    def _metrics(self, f: int):
        if self.metric_fn is None:
            return
        for c in self.chains:
            if not c.error and len(c.frames) > f:
                c.metrics[f] = self.metric_fn(c.frames[f])

    def metric_at(self, i: int, f: int) -> str:
        """The latest metrics computed at or before frame f of chain i."""
        m = self.chains[i].metrics
        keys = [k for k in list(m) if k <= f]
        return m[max(keys)] if keys else ""
