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


@pytest.fixture
def restart_with_stale_signals(window, qtbot, queue_stale):
    """restart_with_stale_signals(tab, start) for a JobTab: start a job, post all four of its worker's
    signals so that they arrive only after the job is stopped and `start` ran again, and check that none
    of them touched the tab (no result, progress, status or app message from the retired worker).
    Returns the new worker."""
    def check(tab, start):
        messages = []
        window.state.status.connect(messages.append)
        start()
        old = tab.worker
        queue_stale(old.progress, tab._on_progress, 0.5, "stale progress")
        queue_stale(old.failed, tab._on_failed, "stale: job stopped")
        queue_stale(old.cancelled, tab._on_cancelled)
        queue_stale(old.done, tab._on_done, object())       # not a result: drawing it would raise
        tab.stop_worker()
        start()
        new = tab.worker
        assert new is not old
        qtbot.wait(100)
        assert tab.result is None and tab.progress.value() != 500
        assert "stale" not in tab.status.text() and tab.status.text() != "Cancelled."
        assert not any("stale" in m for m in messages)
        assert tab.is_running() and tab.cancel_btn.isEnabled()
        return new

    return check


@pytest.fixture
def screenshot_window(qtbot):
    """The main window with the default settings (as a person first sees it), 1400×860 like the committed
    screenshots; closed after the test."""
    from explorer.app import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1400, 860)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


@pytest.fixture
def screenshot_dir(tmp_path):
    """Where screenshots go: $EXPLORER_SCREENSHOTS when set (to regenerate the committed ones), else a
    temporary folder, so that a test run does not rewrite tracked files."""
    from pathlib import Path

    return Path(os.environ.get("EXPLORER_SCREENSHOTS") or tmp_path)


@pytest.fixture
def check_screenshots():
    """check_screenshots(paths, size=(1400, 860)): each file is a picture of the window at `size`, and
    not a blank one."""
    from PIL import Image

    def check(paths, size=(1400, 860)):
        assert paths
        for p in paths:
            with Image.open(p) as im:
                assert im.size == tuple(size)
                assert len(im.convert("L").resize((64, 40)).getcolors(4096)) > 20

    return check
