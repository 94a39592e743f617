"""Runs one guided experiment (`trainers.experiments.Experiment.run`) in a QThread.

Cancel sets a flag that the experiment's progress callback checks: the next progress report raises
`Cancelled` inside `run`, which unwinds it (its `finally` restores torch's thread count). Experiments
report progress between their phases (every 5 % of a training run, before each sampler), so a
cancelled run stops at the end of the phase it is in — a few seconds at most with the default sizes.
"""
from __future__ import annotations

import threading

from PySide6 import QtCore


class Cancelled(Exception):
    """Raised from the progress callback to stop an experiment."""


class ExperimentWorker(QtCore.QThread):
    progress = QtCore.Signal(float, str)      # fraction done, what the experiment is doing
    done = QtCore.Signal(object)              # trainers.experiments.ExperimentResult
    cancelled = QtCore.Signal()
    failed = QtCore.Signal(str)

    def __init__(self, experiment, params: dict, parent=None):
        super().__init__(parent)
        self.experiment = experiment
        self.params = dict(params)
        self._cancel = threading.Event()

    def cancel(self):
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def _report(self, frac: float, text: str):
        if self._cancel.is_set():
            raise Cancelled
        self.progress.emit(float(frac), str(text))

    def run(self):
        try:
            result = self.experiment.run(self.params, self._report)
        except Cancelled:
            self.cancelled.emit()
            return
        except Exception as e:              # report, never take the GUI down
            self.failed.emit(f"{self.experiment.name} stopped: {type(e).__name__}: {e}")
            return
        self.done.emit(result)
