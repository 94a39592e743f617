"""The QThread behind every one-shot job of a tab (views.common.JobTab): one call of a Qt-free function that
takes `progress(fraction, what)` and `cancelled()` callbacks and returns its result, or None when it saw
the cancel. The outcome arrives by exactly one of three signals: done(result), cancelled() or failed(message);
an exception in the job becomes failed, never a crash of the GUI.
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

    def __init__(self, job: Callable, args: dict, name: str, parent=None):
        """job(**args, progress=…, cancelled=…) runs in the thread; `name` starts the failure message."""
        super().__init__(parent)
        self.job = job
        self.args = args
        self.name = name
        self._cancel = threading.Event()

    def cancel(self):
        self._cancel.set()

    def problem(self, result) -> str:
        """Why a finished result is reported as failed instead of done ('' when it is fine)."""
        return ""

    def run(self):
        try:
            result = self.job(**self.args, progress=self.progress.emit, cancelled=self._cancel.is_set)
        except Exception as e:              # report, never take the GUI down
            self.failed.emit(f"{self.name} stopped: {type(e).__name__}: {e}")
            return
        if result is None:
            self.cancelled.emit()
        elif problem := self.problem(result):
            self.failed.emit(problem)
        else:
            self.done.emit(result)
