"""Runs `trainers.memorisation.measure` in a QThread: sampling a model for the memorisation meter never
blocks the GUI thread. The worker gets its own copy of the network, so training may go on meanwhile."""
from __future__ import annotations

import copy
import threading

from PySide6 import QtCore

from trainers import memorisation


class MemorisationWorker(QtCore.QThread):
    progress = QtCore.Signal(float, str)      # fraction done, what was just finished
    done = QtCore.Signal(object)              # trainers.memorisation.Measurement
    cancelled = QtCore.Signal()
    failed = QtCore.Signal(str)

    def __init__(self, model, cfg, density, points, n: int = 1000, seed: int = 0, parent=None):
        super().__init__(parent)
        self.args = dict(model=copy.deepcopy(model), cfg=copy.deepcopy(cfg), density=density, points=points.clone(),
                         n=n, seed=seed)
        self._cancel = threading.Event()

    def cancel(self):
        self._cancel.set()

    def run(self):
        try:
            result = memorisation.measure(**self.args, progress=self.progress.emit, cancelled=self._cancel.is_set)
        except Exception as e:              # report, never take the GUI down
            self.failed.emit(f"memorisation meter stopped: {type(e).__name__}: {e}")
            return
        if result is None:
            self.cancelled.emit()
        else:
            self.done.emit(result)
