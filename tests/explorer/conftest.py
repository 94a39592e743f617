"""pytest-qt fixtures: a main window with small, fast settings (the defaults are sized for people)."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture
def state():
    from explorer.state import AppState

    from explorer.state import panel

    s = AppState()
    s.train.width = 64
    s.train.n_timesteps = 50
    ss = s.sampler
    ss.n_particles, ss.frames = 400, 20
    ss.panels = [panel("annealed", steps=4, n_levels=5), panel("ddpm", steps=50, n_timesteps=50),
                 panel("ddim", steps=20, n_timesteps=50), panel("pf-ode", steps=20)]
    return s


@pytest.fixture
def window(qtbot, state):
    from explorer.app import MainWindow

    win = MainWindow(state)
    win.views["sampler"].sync_widgets()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


@pytest.fixture(autouse=True)
def no_modal_dialogs(monkeypatch):
    """A modal dialog would block an offscreen test forever: any unexpected one fails the test
    (tests that expect a dialog monkeypatch QMessageBox.critical themselves, which wins)."""
    from PySide6 import QtWidgets

    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected modal dialog: {args[1:3]}")

    for name in ("critical", "warning", "information", "question"):
        monkeypatch.setattr(QtWidgets.QMessageBox, name, refuse)
    for name in ("getOpenFileName", "getSaveFileName"):
        monkeypatch.setattr(QtWidgets.QFileDialog, name, refuse)


@pytest.fixture
def queue_stale():
    """queue_stale(signal, slot, *args): post signal(*args) to slot as a worker thread does (a queued
    call), so that Qt delivers it only at the next event processing, after the test retires the worker."""
    from PySide6 import QtCore

    def post(signal, slot, *args):
        signal.disconnect(slot)                     # the view's own connection would call it right now
        signal.connect(slot, QtCore.Qt.ConnectionType.QueuedConnection)
        signal.emit(*args)

    return post
