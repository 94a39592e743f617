"""Training in a QThread: the GUI thread never runs an optimiser step.

The worker owns its own network; the GUI gets copies of the weights (`snapshot`) a few times a
second and loads them into its own network, so nothing is shared between threads except those
immutable copies and the density object (GaussianMixture is never mutated — edits make new ones).

Signals are emitted from the worker thread; connect them to slots of GUI-thread QObjects (the
default AutoConnection then queues them). Never connect a lambda that touches widgets: it would run
in the worker thread.
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
from PySide6 import QtCore

from trainers import densities
from trainers import fitting
from trainers.studies.history import LossByLevel
from trainers.studies.reflow import live_straightness

PROGRESS_EVERY_S = 0.05
SNAPSHOT_EVERY_S = 0.15
N_EVAL = 1024
PLATEAU_GAIN = 0.01      # an improvement counts when it beats the best by 1 % (of its size)
LOSS_EMA = 0.01          # the plateau rule on a fixed dataset watches an EMA of the loss (~100 steps)


class PlateauRule:
    """When to stop a run that no longer improves: the watched value has not beaten its best by
    PLATEAU_GAIN (relative to |best|, so a negative ESM/SSM loss works too) for `patience_steps` steps.

    With fresh data every step it watches the Fisher divergence E‖s_θ − ∇log p‖² to the exact score.
    With a fixed dataset (`fixed_data`, ToyConfig.n_data > 0) it watches the training loss (an EMA over
    ~1/LOSS_EMA steps) instead: fitting N points moves the model towards the empirical optimal score,
    so the Fisher divergence to the true density grows by design, and stopping on it would cut short
    the very effect a fixed dataset is there to show. No Qt here."""

    def __init__(self, patience_steps: int, fixed_data: bool, start_step: int = 0):
        self.patience_steps = patience_steps
        self.fixed_data = fixed_data
        self.best = math.inf
        self.best_step = start_step
        self._ema: float | None = None

    @property
    def watches(self) -> str:
        return "training loss (fixed dataset)" if self.fixed_data else "Fisher divergence"

    def add_loss(self, loss: float) -> None:
        """One training step's loss (kept as an EMA; only read with a fixed dataset)."""
        self._ema = loss if self._ema is None else self._ema + LOSS_EMA * (loss - self._ema)

    def update(self, step: int, fisher: float | None = None, loss: float | None = None) -> None:
        """A check at `step`: the Fisher divergence then, and (tests) a loss value instead of add_loss."""
        if loss is not None:
            self._ema = loss
        value = self._ema if self.fixed_data else fisher
        if value is not None and math.isfinite(value) and (
                not math.isfinite(self.best) or value < self.best - PLATEAU_GAIN * abs(self.best)):
            self.best, self.best_step = value, step

    def stalled(self, step: int) -> bool:
        return bool(self.patience_steps) and step - self.best_step >= self.patience_steps

    def reason(self) -> str:
        return (f"the {self.watches} has not improved by {PLATEAU_GAIN:.0%} for {self.patience_steps:,} steps "
                f"(best {self.best:.4g} at step {self.best_step})")


class TrainWorker(QtCore.QThread):
    # {"steps": ndarray, "losses": ndarray, "rate": steps/s, "level_curve": (levels, mean losses) or None}
    progress = QtCore.Signal(object)
    metric = QtCore.Signal(object)     # {"step": int, "fisher": float, "label": str}
    snapshot = QtCore.Signal(object)   # {"step": int, "state": state_dict copy}
    failed = QtCore.Signal(str)

    def __init__(self, settings, density: densities.GaussianMixture, init_state: dict | None = None,
                 start_step: int = 0, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.density = density
        self.init_state = init_state
        self.start_step = start_step
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self.step = start_step
        self.max_steps: int | None = None    # step budget of this run; None = until cancelled
        # stop when the Fisher divergence has not improved on its best by PLATEAU_GAIN for this
        # many steps; None = never
        self.patience_steps: int | None = None
        self.stop_reason = ""                # why the run ended by itself ("" while it has not)
        self.plateau: PlateauRule | None = None      # made when the run starts, from patience_steps
        self.by_level: LossByLevel | None = None     # running loss per noise level (NCSN, DDPM)

    # -- control, callable from the GUI thread
    def cancel(self):
        self._cancel.set()
        self._running.set()

    def set_paused(self, paused: bool):
        (self._running.clear if paused else self._running.set)()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # -- worker thread
    def run(self):
        try:
            self._train()
        except Exception as e:  # report, never take the GUI down
            self.failed.emit(f"training stopped: {type(e).__name__}: {e}")

    def _train(self):
        s = self.settings                       # a trainers.fitting.ToyConfig, as the CLI trains with
        model, method = fitting.build_model_and_method(s, self.density)
        if self.init_state is not None:
            model.load_state_dict(self.init_state)
        # fresh batches of the density, or (s.n_data = N) batches of a fixed set of N points drawn once
        sample_batch, _ = fitting.training_data(s, self.density)
        steps = fitting.training_steps(model, method, sample_batch, lr=s.lr, batch=s.batch, seed=s.seed,
                                       decay_steps=s.steps if s.lr_decay else None)
        fisher_fn = fitting.fisher_metric(s, self.density, N_EVAL)
        bins = method.loss_bins()                           # the method's loss-per-level bins, or None
        self.by_level = LossByLevel.from_bins(bins) if bins is not None else None   # fed every step here
        self.plateau = PlateauRule(self.patience_steps, bool(s.n_data), self.start_step)

        buf_steps, buf_losses = [], []
        t_emit = t_snap = time.perf_counter()
        # the rate window opens at the first finished step: the first step pays torch's warm-up (~1 s)
        t_rate, n_rate, rate = None, 0, 0.0
        while True:
            try:
                info = next(steps)
            except FloatingPointError:          # training_steps: the loss became nan or inf
                self._flush(buf_steps, buf_losses, rate)
                self.failed.emit(diverged_message(s, method, self.step + 1))
                return
            if self._cancel.is_set():
                break
            if not self._running.is_set():
                self._flush(buf_steps, buf_losses, rate)
                self._emit_snapshot(model, fisher_fn)
                self._running.wait()
                if self._cancel.is_set():
                    break
                t_rate, n_rate = time.perf_counter(), 0
            self.step = self.start_step + info.step
            if self.by_level is not None and info.levels is not None:
                self.by_level.update(info.levels, info.level_losses)
            loss = float(info.loss)             # finite: training_steps raises FloatingPointError first
            self.plateau.add_loss(loss)
            buf_steps.append(self.step)
            buf_losses.append(loss)
            now = time.perf_counter()
            if t_rate is None:
                t_rate, n_rate = now, 0
            else:
                n_rate += 1
            if now - t_emit > PROGRESS_EVERY_S:
                if now - t_rate > 0.5:
                    rate, t_rate, n_rate = n_rate / (now - t_rate), now, 0
                self._flush(buf_steps, buf_losses, rate)
                t_emit = now
            if now - t_snap > SNAPSHOT_EVERY_S:
                self._emit_snapshot(model, fisher_fn)
                t_snap = time.perf_counter()
                if self.plateau.stalled(self.step):
                    self.stop_reason = self.plateau.reason()
                    break
            if self.max_steps is not None and info.step >= self.max_steps:
                self.stop_reason = f"the step budget of {self.max_steps:,} steps is used up"
                break
        if t_rate is not None and n_rate and time.perf_counter() > t_rate:
            rate = rate or n_rate / (time.perf_counter() - t_rate)
        self._flush(buf_steps, buf_losses, rate)
        self._emit_snapshot(model, fisher_fn)

    def _flush(self, buf_steps, buf_losses, rate):
        if buf_steps:
            curve = self.by_level.curve() if self.by_level is not None else None
            self.progress.emit({"steps": np.array(buf_steps), "losses": np.array(buf_losses), "rate": rate,
                                "level_curve": curve})
            buf_steps.clear()
            buf_losses.clear()

    def _emit_snapshot(self, model, fisher_fn):
        model.eval()
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        fisher, label = fisher_fn(model)
        extra = live_straightness(model, self.settings, self.density)     # flow models: {"straightness": …}
        model.train()
        if self.plateau is not None:
            self.plateau.update(self.step, fisher=fisher)
        self.snapshot.emit({"step": self.step, "state": state})
        self.metric.emit({"step": self.step, "fisher": fisher, "label": label, **extra})


def diverged_message(s, method, step: int) -> str:
    """What to do when the loss became nan or inf, in the words of the Training tab's fields (the
    method's own advice, Method.divergence_advice, after the learning rate's)."""
    advice = f"lower the Learning rate (now {s.lr:g})"
    if method.divergence_advice():
        advice += f" or {method.divergence_advice()}"
    return f"Training diverged at step {step} (the loss became nan or inf): {advice}, then press Start."
