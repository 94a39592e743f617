"""Runs `trainers.lab.run_lab` in a QThread: the quality-vs-steps lab never blocks the GUI thread."""
from __future__ import annotations

import threading

from PySide6 import QtCore

from trainers.lab import run_lab


class LabWorker(QtCore.QThread):
    progress = QtCore.Signal(float, str)      # fraction done, what was just finished
    done = QtCore.Signal(object)              # trainers.lab.LabResult
    cancelled = QtCore.Signal()
    failed = QtCore.Signal(str)

    def __init__(self, density, model_sm, exact_sm, samplers, nfes, options=None, n: int = 1000, seed: int = 0,
                 parent=None):
        super().__init__(parent)
        self.args = dict(density=density, model=model_sm, exact=exact_sm, samplers=list(samplers),
                         nfes=list(nfes), options=options, n=n, seed=seed)
        self._cancel = threading.Event()

    def cancel(self):
        self._cancel.set()

    def run(self):
        try:
            result = run_lab(**self.args, progress=self.progress.emit, cancelled=self._cancel.is_set)
        except Exception as e:              # report, never take the GUI down
            self.failed.emit(f"lab stopped: {type(e).__name__}: {e}")
            return
        if result is None:
            self.cancelled.emit()
        else:
            self.done.emit(result)
