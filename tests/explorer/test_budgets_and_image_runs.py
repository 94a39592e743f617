"""Long runs: the Training tab's step budget and plateau stop (the status bar says why), live training
pausing while an image run is active, the Image-runs tab's device label and run-time estimate, and
the choice offered when the window closes during an image run."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
from PySide6 import QtWidgets

from explorer import runs
from trainers.image import run_layout as layout
from trainers.image import runs as run_files

TINY = ("train.log_every=5 train.sample_every=0 train.ckpt_every=10 train.n_grid=16 "
        "train.batch_size=32 model.ch=16 ddpm.T=100 train.warmup=10 train.n_steps=100000")


# ---------------------------------------------------------------------------- Training tab
def test_the_step_budget_stops_training_and_the_status_bar_says_so(window, qtbot):
    tv = window.views["training"]
    assert tv.budget.value() == 20_000 and tv.plateau_on.isChecked()       # the defaults
    window.state.update_train(objective="dsm", sigma=0.5)
    tv.budget.setValue(300)
    messages = []
    window.state.status.connect(messages.append)
    tv.start_btn.click()
    qtbot.waitUntil(lambda: not tv.is_running() and tv.start_btn.text() == "Start", timeout=60_000)
    assert tv.loss_history()[0][-1] == 300
    assert messages[-1] == "Training stopped at step 300: the step budget of 300 steps is used up"
    assert "step budget of 300 steps" in window.train_status.text()
    assert "step budget" in tv.info.text()


def test_a_fisher_plateau_stops_training(window, qtbot):
    tv = window.views["training"]
    window.state.update_train(objective="dsm", sigma=0.5, lr=1e-5)      # too small to make progress
    tv.patience.setValue(100)
    tv.start()
    # the thread ends before its queued `finished` is handled: wait for the tab to have handled it
    qtbot.waitUntil(lambda: not tv.is_running() and tv.start_btn.text() == "Start", timeout=60_000)
    assert "has not improved by 1% for 100 steps" in tv.stop_reason
    assert "has not improved" in window.train_status.text()


def test_training_pauses_while_an_image_run_is_active_unless_asked_not_to(window, qtbot):
    tv, runs_tab = window.views["training"], window.views["image_runs"]
    window.state.update_train(objective="dsm")
    tv.start()
    qtbot.waitUntil(lambda: len(tv.loss_history()[0]) >= 5, timeout=20_000)
    runs_tab.runningChanged.emit(True)                   # what Start on the Image-runs tab emits
    assert tv.worker.paused and tv.held_for_image_run() and tv.start_btn.text() == "Resume"
    assert "paused while the image run is active" in window.statusBar().currentMessage()
    qtbot.wait(300)
    n = len(tv.loss_history()[0])
    qtbot.wait(300)
    assert len(tv.loss_history()[0]) == n                # no steps while held
    runs_tab.runningChanged.emit(False)                  # the image run ended
    assert not tv.worker.paused and tv.start_btn.text() == "Pause"
    tv.keep_during_image.setChecked(True)                # the user wants both
    runs_tab.runningChanged.emit(True)
    assert not tv.worker.paused
    tv.keep_during_image.setChecked(False)               # changed their mind mid-run
    assert tv.worker.paused
    tv.keep_during_image.setChecked(True)
    assert not tv.worker.paused
    tv.stop()


# ---------------------------------------------------------------------------- Image-runs tab
@pytest.mark.parametrize("config, cuda, expected", [
    ("ddpm_cifar10", ("NVIDIA H100 80GB HBM3", 80 * 2**30), "CUDA: NVIDIA H100 80GB HBM3, 80 GiB"),
    ("ddpm_cifar10", None, "CPU only: image configs other than digits will be very slow"),
    ("ddpm_digits", None, "CPU (the digits configs are sized for it)"),
])
def test_the_tab_shows_the_device_a_run_will_use(window, monkeypatch, config, cuda, expected):
    tab = window.views["image_runs"]
    monkeypatch.setattr(runs, "cuda_device", lambda: cuda)
    tab.config.setCurrentText(config)
    assert tab.device_label.text() == expected


def test_the_run_time_estimate_comes_from_the_measured_speed_after_warm_up(window):
    tab = window.views["image_runs"]
    tab._reset_live()
    tab._on_log_line({"step": 50, "loss": 1.0, "elapsed_s": 30.0, "total_steps": 1050})   # warm-up inside
    assert "measuring" in tab.estimate_label.text()
    tab._on_log_line({"step": 100, "loss": 0.9, "elapsed_s": 40.0, "total_steps": 1050})
    assert tab.estimate_label.text() == "3m 10s left, 3m 50s for this process (measured 5 steps/s)"


def _start_long_run(tab, out):
    tab.config.setCurrentText("ddpm_digits")
    tab.out_edit.setText(str(out))
    tab.overrides.setText(TINY)
    tab.start_btn.click()
    assert tab.is_running()


def _records(out):
    from trainers.image.progress import read_records

    return read_records(out / layout.PROGRESS)


def test_the_close_dialog_offers_keep_running_and_stop_with_checkpoint(window, monkeypatch):
    tab = window.views["image_runs"]
    tab.trainer.run_dir = None
    for text, choice in (("Keep running", "keep"), ("Stop with checkpoint", "stop"), ("Cancel", "cancel")):
        def click(box, text=text):
            next(b for b in box.buttons() if b.text().replace("&", "") == text).click()
        monkeypatch.setattr(QtWidgets.QMessageBox, "exec", click)
        assert tab.ask_close_choice() == choice


def test_closing_the_window_stops_the_image_run_with_a_checkpoint(window, qtbot, tmp_path, monkeypatch):
    tab, out = window.views["image_runs"], tmp_path / "stop"
    _start_long_run(tab, out)
    qtbot.waitUntil(lambda: bool(run_files.checkpoint_steps(out)), timeout=90_000)
    monkeypatch.setattr(tab, "ask_close_choice", lambda: "cancel")
    assert not window.close() and window.isVisible() and tab.is_running()      # Cancel keeps all open
    monkeypatch.setattr(tab, "ask_close_choice", lambda: "stop")
    assert window.close()
    assert not tab.is_running()
    recs = _records(out)
    assert recs[-1]["event"] == "stopped"
    assert run_files.checkpoint_steps(out)[-1] == recs[-1]["step"]          # nothing lost


def test_closing_the_window_can_leave_the_image_run_training(window, qtbot, tmp_path, monkeypatch):
    tab, out = window.views["image_runs"], tmp_path / "keep"
    _start_long_run(tab, out)
    qtbot.waitUntil(lambda: any("loss" in r for r in _records(out)), timeout=90_000)
    pid = tab.trainer.pid()
    monkeypatch.setattr(tab, "ask_close_choice", lambda: "keep")
    assert window.close()
    tab.deleteLater()                                   # even destroying the QProcess leaves it alone
    qtbot.wait(200)
    step = max(r["step"] for r in _records(out) if "loss" in r)
    qtbot.waitUntil(lambda: max(r["step"] for r in _records(out) if "loss" in r) > step + 10, timeout=60_000)
    os.kill(pid, signal.SIGTERM)                        # the user stops it later: it checkpoints
    qtbot.waitUntil(lambda: _records(out)[-1].get("event") == "stopped", timeout=60_000)
    assert run_files.checkpoint_steps(out)[-1] == _records(out)[-1]["step"]
    try:
        os.waitpid(pid, 0)                              # reap it (it was forked by this process)
    except ChildProcessError:
        pass
