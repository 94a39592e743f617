"""The QThread behind every one-shot study of a tab (views.parts.common.JobTab): one call of a Qt-free function of
trainers.studies that takes `progress(fraction, what)` and `cancelled()` callbacks and returns its result,
or None when it saw the cancel. The outcome arrives by exactly one of three signals: done(result),
cancelled() or failed(message); an exception in the job becomes failed, never a crash of the GUI, and so
does a result that the study's `problem(result)` finds wanting (a non-finite figure).
"""
from __future__ import annotations

import threading
from typing import Callable

from PySide6 import QtCore


class JobWorker(QtCore.QThread):
    progress = QtCore.Signal(float, str)      # fraction done, what is being done
    done = QtCore.Signal(object)              # the job's result
    cancelled = QtCore.Signal()
    failed = QtCore.Signal(str)

    def __init__(self, job: Callable, args: dict, name: str, problem: Callable[[object], str] | None = None,
                 parent=None):
        """job(**args, progress=…, cancelled=…) runs in the thread; `name` starts the failure message;
        problem(result) -> why a finished result is a failure ('' when it is fine)."""
        super().__init__(parent)
        self.job = job
        self.args = args
        self.name = name
        self.check = problem or (lambda result: "")
        self._cancel = threading.Event()

    def cancel(self):
        self._cancel.set()

    def run(self):
        try:
            result = self.job(**self.args, progress=self.progress.emit, cancelled=self._cancel.is_set)
        except Exception as e:              # report, never take the GUI down
            self.failed.emit(f"{self.name} stopped: {type(e).__name__}: {e}")
            return
        if result is None:
            self.cancelled.emit()
        elif problem := self.check(result):
            self.failed.emit(problem)
        else:
            self.done.emit(result)
