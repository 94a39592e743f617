"""Image-runs tab: real tiny training / sampling processes launched from the tab (offscreen).

The child processes run ``python -m trainers.image`` on the digits config shrunk to seconds on a
CPU (a 16-channel U-Net, 100 diffusion steps, batch 32), so their grids are noise; the
screenshot in docs/screenshots/image_runs.png browses two 3600-step digits runs (README).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from explorer import runs
from explorer.workers import process
from trainers.image import progress as events
from trainers.image import run_layout as layout
from trainers.image import runs as run_files

TINY = ("train.log_every=5 train.sample_every=30 train.ckpt_every=15 train.n_grid=16 "
        "train.batch_size=32 model.ch=16 ddpm.T=100 train.warmup=10")
RUN_TIMEOUT_MS = 90_000


@pytest.fixture
def tab(qtbot, tmp_path):
    from explorer.views.image_runs import ImageRunsView

    t = ImageRunsView(runs_root=tmp_path / "runs")
    qtbot.addWidget(t)
    t.resize(1400, 820)
    t.show()
    qtbot.waitExposed(t)
    yield t
    t.shutdown()


def start_run(tab, out: Path, overrides: str, config="ddpm_digits", data_dir="", resume=False):
    tab.config.setCurrentText(config)
    tab.data_dir.setText(data_dir)
    tab.out_edit.setText(str(out))
    tab.overrides.setText(overrides)
    tab.resume.setChecked(resume)
    tab.start_btn.click()
    assert tab.is_running()


def wait_finished(qtbot, tab):
    qtbot.waitUntil(lambda: not tab.is_running() and tab.start_btn.isEnabled(),
                    timeout=RUN_TIMEOUT_MS)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A 15-step run trained in-process (no Qt), for the viewer tests."""
    from trainers.image.__main__ import main

    run = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--config", "ddpm_digits", "--out", str(run), "--quiet",
                 *TINY.split(), "train.n_steps=15"]) == 0
    return run


# ---------------------------------------------------------------------------- training runs
def test_run_started_from_tab_streams_loss_then_viewer_shows_its_grid(qtbot, tab, tmp_path):
    out = tmp_path / "runs" / "tiny"
    start_run(tab, out, TINY + " train.n_steps=30")
    assert not tab.start_btn.isEnabled() and tab.stop_btn.isEnabled()
    wait_finished(qtbot, tab)

    assert tab.steps == [5, 10, 15, 20, 25, 30]
    xs, ys = tab.curve.getData()
    assert list(xs) == tab.steps and len(ys) == 6
    assert tab.progress.value() == tab.progress.maximum() == 30
    assert tab.stats["loss"].text() != "–" and tab.stats["images_per_s"].text() != "–"
    assert "Finished: step 30" in tab.state_label.text()
    assert tab.error.isHidden()
    assert "device cpu" in tab.log.toPlainText()            # the child's stderr reached the log

    assert tab.browser.run_list.currentItem().text() == f"tiny — finished, step 30, loss {tab.losses[-1]:.4g}"
    assert tab.browser.shown_grid().label == "step 30 (EMA weights, ddim 50 NFE)"     # the preview sampler
    at, loss = tab.level_curve.getData()                     # loss per timestep, 20 bins of T = 100
    assert len(at) == len(loss) > 0 and set(at) <= {2.5 + 5 * i for i in range(20)}
    assert tab.browser.image.image.shape[2] == 3 and tab.browser.image.image.shape[0] > 32
    assert [tab.browser.ckpt.itemData(i) for i in range(tab.browser.ckpt.count())] == [15, 30]
    tab.log_y.setChecked(True)
    assert tab.plot.getPlotItem().ctrl.logYCheck.isChecked()

    shot = tmp_path / "trainer.png"
    assert tab.grab().save(str(shot))
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1400, 820)
        assert len(np.unique(np.asarray(im.convert("L").resize((64, 40))))) > 20  # not blank


def test_stop_mid_run_then_resume_continues_from_the_checkpoint(qtbot, tab, tmp_path):
    out = tmp_path / "runs" / "long"
    start_run(tab, out, TINY.replace("train.ckpt_every=15", "train.ckpt_every=10")
              + " train.n_steps=5000 train.sample_every=0")
    qtbot.waitUntil(lambda: bool(run_files.checkpoint_steps(out)), timeout=RUN_TIMEOUT_MS)
    tab.stop_btn.click()
    wait_finished(qtbot, tab)
    ckpt = run_files.checkpoint_steps(out)[-1]
    assert "Stopped" in tab.state_label.text() and f"checkpoint {ckpt}" in tab.state_label.text()
    assert tab.resume.isChecked() and tab.error.isHidden()

    # Resume with the run's own config; only the length changes.
    start_run(tab, out, f"train.n_steps={ckpt + 10}", resume=True)
    assert "--config" not in tab.trainer.arguments()
    wait_finished(qtbot, tab)
    assert f"resuming from {out / 'checkpoints'}" in tab.log.toPlainText()
    assert tab.steps[-1] == ckpt + 10 and tab.steps == sorted(set(tab.steps))
    assert any(ckpt < s < ckpt + 10 for s in tab.steps)        # logged after the resume
    # the trainer checkpointed the step it was stopped at, so nothing was lost
    stopped = [json.loads(l) for l in (out / layout.PROGRESS).read_text().splitlines() if '"stopped"' in l]
    assert stopped and stopped[-1]["step"] == ckpt
    starts = [json.loads(l) for l in (out / layout.PROGRESS).read_text().splitlines()
              if '"start"' in l]
    assert starts[-1]["resumed_from"] == ckpt
    assert run_files.checkpoint_steps(out)[-1] == ckpt + 10


def test_closing_the_tab_stops_its_training_process(qtbot, tab, tmp_path):
    start_run(tab, tmp_path / "runs" / "closed", TINY + " train.n_steps=5000")
    tab.close()
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=10_000)


@pytest.mark.parametrize("config, data_dir, overrides, message", [
    ("ddpm_mnist", "no/such/folder", "", "does not exist"),
    ("ddpm_digits", "", "train.lr=abc", "train.lr: expected a number"),
    ("no_such_config", "", "", "unknown config 'no_such_config'"),
], ids=["missing-dataset-folder", "bad-override", "unknown-config"])
def test_bad_input_shows_the_trainers_message(qtbot, tab, tmp_path, config, data_dir, overrides,
                                              message):
    start_run(tab, tmp_path / "runs" / "bad", overrides, config=config,
              data_dir=str(tmp_path / data_dir) if data_dir else "")
    wait_finished(qtbot, tab)
    assert not tab.error.isHidden()
    assert message in tab.error.text() and tab.error.text().startswith("Training failed")
    assert "exit status 2" in tab.state_label.text()
    assert tab.start_btn.isEnabled() and not tab.stop_btn.isEnabled()


def test_a_run_that_fails_mid_training_shows_the_trainers_message(qtbot, tab, tmp_path):
    """An absurd learning rate makes the loss infinite after the first step: the trainer ends
    progress.jsonl with a ``failed`` event and the tab shows its message."""
    out = tmp_path / "runs" / "diverges"
    start_run(tab, out, TINY.replace("train.warmup=10", "train.warmup=0")
              + " train.lr=1e30 train.log_every=1 train.n_steps=50")
    wait_finished(qtbot, tab)
    last = json.loads(layout.progress_path(out).read_text().splitlines()[-1])
    assert last["event"] == events.FAILED and last["error"] == "FloatingPointError"
    assert not tab.error.isHidden()
    assert tab.error.text() == f"Training failed at step {last['step']}: {last['message']}"
    assert "loss became" in tab.error.text() and "train.lr" in tab.error.text()
    assert "exit status 1" in tab.state_label.text()
    assert "Traceback" not in tab.trainer.child.stderr


def test_a_failed_event_in_the_progress_file_is_shown(tab, tmp_path):
    run = tmp_path / "runs" / "failed"
    log = events.ProgressLog(layout.progress_path(run), truncate_after=-1)
    log.event(events.START, 0, total_steps=10, method="ddpm", dataset="digits", params=1e6,
              device="cpu", resumed_from=None)
    for step in (1, 2):
        log.write(step=step, loss=1.0 / step, total_steps=10)
    log.failed(RuntimeError("boom in the loss at step 3"), 2)
    log.close()
    tab.trainer.follow(run)
    tab.trainer.poll()
    assert tab.steps == [1, 2]
    assert not tab.error.isHidden()
    assert tab.error.text() == "Training failed at step 2: boom in the loss at step 3"
    assert "Failed at step 2" in tab.state_label.text()
    stderr = "Traceback (most recent call last):\n  ...\nRuntimeError: other\n"
    # the process's exit: the event's message stays
    tab.trainer.child.exited.emit(process.ProcessExit(1, False, "", stderr))
    assert tab.error.text() == "Training failed at step 2: boom in the loss at step 3"


def test_the_tab_is_titled_and_registered_as_image_runs():
    from explorer.app import MainWindow
    from explorer.views.image_runs import ImageRunsView

    assert ("image_runs", ImageRunsView) in MainWindow.VIEWS
    assert ImageRunsView.title == "Image runs"


def test_malformed_overrides_are_refused_before_launching(tab, tmp_path):
    tab.out_edit.setText(str(tmp_path / "runs" / "x"))
    tab.overrides.setText("train.lr")
    tab.start_btn.click()
    assert not tab.is_running()
    assert "key=value" in tab.error.text() and not tab.error.isHidden()


# ---------------------------------------------------------------------------- sample viewer
def test_viewer_lists_runs_and_shows_the_latest_grid(qtbot, tab, finished_run):
    tab.browser.root_edit.setText(str(finished_run.parent))
    tab.browser.refresh_btn.click()
    assert tab.browser.run_names() == ["tiny"]
    assert tab.browser.shown_grid().step == 15
    assert tab.browser.ckpt.currentData() == 15
    assert not tab.browser.chain_slider.isEnabled()                   # training grids have no chain


def test_sample_from_checkpoint_shows_the_new_grid_and_scrubs_its_chain(qtbot, tab, finished_run):
    tab.browser.root_edit.setText(str(finished_run.parent))
    tab.browser.refresh_btn.click()
    tab.browser.n_samples.setValue(9)
    tab.browser.frames.setValue(10)
    tab.browser.sample_btn.click()
    assert not tab.browser.sample_btn.isEnabled()
    qtbot.waitUntil(lambda: tab.browser.sample_btn.isEnabled(), timeout=RUN_TIMEOUT_MS)

    assert tab.error.isHidden(), tab.error.text()
    grid = tab.browser.shown_grid()
    assert grid.path == finished_run / "drawn" / f"ckpt_00000015-{runs.FAST_SAMPLER}.png"   # the fast default
    assert grid.chain is not None and tab.browser.chain_slider.isEnabled()
    last = tab.browser.image.image.copy()
    tab.browser.chain_slider.setValue(0)
    assert "initial noise" in tab.browser.chain_label.text()
    assert tab.browser.image.image.shape == last.shape and (tab.browser.image.image != last).any()
    tab.browser.chain_slider.setValue(tab.browser.chain_slider.maximum())
    assert (tab.browser.image.image == last).all()                    # x_0 of the chain is the grid


def test_sampler_combo_lists_every_registry_sampler(tab, tmp_path):
    from trainers.samplers import SAMPLERS

    items = [tab.browser.sampler_kind.itemData(i) for i in range(tab.browser.sampler_kind.count())]
    assert items == ["", *SAMPLERS] and tab.browser.sampler_kind.currentData() == runs.FAST_SAMPLER
    assert f"{runs.FAST_NFE} steps (fast)" in tab.browser.sampler_kind.currentText()
    args = runs.sample_args(tmp_path, 15, 9, "pf-ode")
    assert args[args.index("--sampler") + 1] == "pf-ode"
    assert "--sampler" not in runs.sample_args(tmp_path, 15, 9)        # the run's default
    with pytest.raises(ValueError, match="unknown sampler"):
        runs.sample_args(tmp_path, 15, 9, "euler")


def test_drawn_grids_of_hyphenated_samplers_are_listed(tmp_path):
    grid, _ = layout.drawn_paths(tmp_path, 15, "pf-ode")
    grid.parent.mkdir()
    grid.write_bytes(b"")
    [g] = run_files.list_grids(tmp_path)
    assert g.label == "checkpoint 15, pf-ode sampler, EMA weights"
    raw, _ = layout.drawn_paths(tmp_path, 15, "pf-ode", "raw")
    raw.write_bytes(b"")
    assert raw.name == "ckpt_00000015-pf-ode.raw.png" and run_files.counterpart(g) == raw
    assert [(g.weights, g.sampler, g.label) for g in run_files.list_grids(tmp_path)][1] == \
        ("raw", "pf-ode", "checkpoint 15, pf-ode sampler, raw weights")
    args = runs.sample_args(tmp_path, 15, 9, "pf-ode", weights="raw")
    assert args[args.index("--weights") + 1] == "raw" and args[args.index("--out") + 1] == str(raw)


# ---------------------------------------------------------------------------- progress tail
def test_progress_tail_reads_only_whole_new_lines(tmp_path):
    path = tmp_path / layout.PROGRESS
    tail = run_files.ProgressTail(path)
    assert tail.poll() == ([], False)                         # no file yet
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert tail.poll() == ([{"step": 1, "loss": 2.0}], False)
    with open(path, "a") as f:
        f.write('ss": 1.5}\n')
    assert tail.poll() == ([{"step": 2, "loss": 1.5}], False)
    assert tail.poll() == ([], False)


def test_progress_tail_starts_over_when_the_trainer_rewrites_the_file(tmp_path):
    path = tmp_path / layout.PROGRESS
    tail = run_files.ProgressTail(path)
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (5, 10, 15)))
    assert len(tail.poll()[0]) == 3
    tmp = tmp_path / "rewrite.tmp"                            # resume: atomic rewrite
    tmp.write_text(json.dumps({"step": 5, "loss": 1.0}) + "\n")
    tmp.replace(path)
    assert tail.poll() == ([{"step": 5, "loss": 1.0}], True)


def test_every_control_has_a_tooltip(tab):
    from PySide6 import QtWidgets

    kinds = (QtWidgets.QAbstractButton, QtWidgets.QComboBox, QtWidgets.QLineEdit, QtWidgets.QAbstractSlider, QtWidgets.QAbstractSpinBox,
             QtWidgets.QListWidget, QtWidgets.QPlainTextEdit, QtWidgets.QProgressBar)
    inner = (QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox, QtWidgets.QAbstractScrollArea,
             QtWidgets.QTabBar)                                           # their own sub-widgets
    controls = [w for kind in kinds for w in tab.findChildren(kind)
                if not isinstance(w.parent(), inner) and not isinstance(w, QtWidgets.QScrollBar)]
    assert len(controls) >= 20
    assert [w for w in controls if not w.toolTip()] == []


def test_a_process_that_cannot_start_is_reported(qtbot, tab, tmp_path):
    tab.trainer.child.proc.setProgram(str(tmp_path / "no-such-python"))
    tab.out_edit.setText(str(tmp_path / "runs" / "x"))
    tab.start_btn.click()
    wait_finished(qtbot, tab)
    assert "could not start" in tab.error.text()


def test_progress_tail_notices_a_rewrite_to_the_same_size(tmp_path):
    path = tmp_path / layout.PROGRESS
    path.write_text('{"step": 5, "loss": 1.0}\n')
    tail = run_files.ProgressTail(path, skip_existing=True)          # a fresh run's stale log
    assert tail.poll() == ([], False)
    with open(path, "r+") as f:                                 # truncated and rewritten in place
        f.write('{"event": "start", "step": 0}\n{"step": 5, "loss": 2.0}\n')
    assert tail.poll() == ([{"event": "start", "step": 0}, {"step": 5, "loss": 2.0}], True)


# ---------------------------------------------------------------------------- watching runs (#12)
def _fake_run(root: Path, name: str, losses: list[float], end: str | None, message: str = "") -> Path:
    """A run folder whose progress.jsonl holds a loss line every 10 steps and the closing event."""
    run = root / name
    run.mkdir(parents=True)
    log = events.ProgressLog(layout.progress_path(run), truncate_after=-1)
    log.event(events.START, 0, total_steps=100)
    for i, loss in enumerate(losses):
        log.write(step=10 * (i + 1), loss=loss, total_steps=100,
                  level_loss={"level": "t", "at": [25.0, 75.0], "loss": [2 * loss, None]})
    if end == events.FAILED:
        log.event(events.FAILED, 10 * len(losses), message=message, error="RuntimeError")
    elif end:
        log.event(end, 10 * len(losses))
    log.close()
    return run


def test_two_runs_are_overlaid_and_the_list_shows_status_step_and_loss(qtbot, tab, tmp_path):
    root = tmp_path / "runs"
    a = _fake_run(root, "a", [1.0, 0.8, 0.6], events.DONE)
    b = _fake_run(root, "b", [1.2, 0.9], events.FAILED, "loss became nan at step 20")
    _fake_run(root, "c", [1.1], events.STOPPED)
    tab.browser.refresh_btn.click()
    texts = {tab.browser.run_list.item(i).text() for i in range(tab.browser.run_list.count())}
    assert texts == {"a — finished, step 30, loss 0.6",
                     "b — failed: loss became nan at step 20, step 20, loss 0.9",
                     "c — stopped, step 10, loss 1.1"}
    items = {Path(tab.browser.run_list.item(i).data(0x0100)).name: tab.browser.run_list.item(i)
             for i in range(tab.browser.run_list.count())}
    tab.browser.run_list.setCurrentItem(items["a"])
    items["b"].setSelected(True)                           # Ctrl+click a second run
    assert sorted(p.name for p in tab.browser.selected_runs()) == ["a", "b"]
    curves = {Path(k).name: c.getData() for k, c in tab.overlays.items()}
    assert sorted(curves) == ["a", "b"]
    assert list(curves["a"][0]) == [10, 20, 30] and list(curves["a"][1]) == [1.0, 0.8, 0.6]
    assert list(curves["b"][1]) == [1.2, 0.9]
    items["b"].setSelected(False)                          # deselected: its overlay goes
    assert [Path(k).name for k in tab.overlays] == ["a"]
    assert a.name in tab.browser.run_names() and b.name in tab.browser.run_names()


def test_a_run_without_a_closing_event_is_running_or_interrupted(tmp_path):
    run = _fake_run(tmp_path, "r", [1.0], None)
    assert run_files.run_summary(run).status == "running"                  # written just now
    import time
    assert run_files.run_summary(run, now=time.time() + 3600).status == "interrupted"
    assert run_files.run_summary(run, now=time.time() + 3600, live=True).status == "running"


def test_the_loss_per_level_plot_follows_the_log_lines(tab):
    tab._reset_live()
    tab._on_log_line({"step": 10, "loss": 1.0, "total_steps": 100,
                      "level_loss": {"level": "sigma", "at": [0.01, 0.1, 1.0], "loss": [3.0, None, 1.0]}})
    at, loss = tab.level_curve.getData()
    assert list(loss) == [3.0, 1.0] and tab.level_kind == "sigma"       # the empty bin left out
    assert tab.level_plot.getPlotItem().getAxis("bottom").logMode


def test_toggle_shows_the_same_checkpoint_with_raw_then_ema_weights(qtbot, tab, finished_run):
    tab.browser.root_edit.setText(str(finished_run.parent))
    tab.browser.refresh_btn.click()
    tab.browser.frames.setValue(0)
    tab.browser.n_samples.setValue(4)
    tab.browser.sampler_kind.setCurrentIndex(tab.browser.sampler_kind.findData("ddim"))
    tab.browser.sample_btn.click()                                            # EMA, the default
    qtbot.waitUntil(lambda: tab.browser.sample_btn.isEnabled(), timeout=RUN_TIMEOUT_MS)
    ema = tab.browser.shown_grid()
    assert ema.weights == "ema" and ema.label.endswith("EMA weights")
    assert tab.browser.toggle_weights()                                       # not drawn yet: draws it
    qtbot.waitUntil(lambda: tab.browser.sample_btn.isEnabled(), timeout=RUN_TIMEOUT_MS)
    raw = tab.browser.shown_grid()
    assert tab.error.isHidden(), tab.error.text()
    assert (raw.step, raw.sampler, raw.weights) == (15, "ddim", "raw")
    assert "--weights raw" in tab.log.toPlainText()
    assert tab.browser.toggle_weights() and tab.browser.shown_grid().path == ema.path  # back, no new process


def test_tab_trainer_is_still_accepted_as_the_image_runs_tab(tmp_path):
    """``--tab trainer`` (the key before the rename) shows the same tab as ``--tab image_runs``."""
    import os
    import subprocess
    import sys

    from PIL import Image

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    shots = {}
    for key in ("trainer", "image_runs"):
        out = tmp_path / f"{key}.png"
        r = subprocess.run([sys.executable, "-m", "explorer", "--tab", key, "--screenshot", str(out)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr[-2000:]
        with Image.open(out) as im:
            shots[key] = np.asarray(im.convert("RGB"))
    assert (shots["trainer"] == shots["image_runs"]).all()
    sampler = tmp_path / "sampler.png"                    # and it is not the default tab
    r = subprocess.run([sys.executable, "-m", "explorer", "--screenshot", str(sampler)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(sampler) as im:
        assert (np.asarray(im.convert("RGB")) != shots["image_runs"]).any()


def test_selected_runs_also_overlay_their_newest_loss_per_noise_level(qtbot, tab, tmp_path):
    root = tmp_path / "runs"
    runs_made = {n: _fake_run(root, n, [1.0, 0.8], events.DONE) for n in ("a", "b", "c")}
    for name, (old, new) in {"a": ([0.5, 0.4], [0.9, 0.2]), "b": ([0.7, 0.6], [0.8, 0.1])}.items():
        with open(runs_made[name] / "progress.jsonl", "a") as f:          # two lines with per-level loss
            for step, loss in ((40, old), (50, new)):
                f.write(json.dumps({"step": step, "loss": 0.5,
                                    "level_loss": {"level": "t", "at": [2.5, 7.5], "loss": loss}}) + "\n")
    tab.browser.refresh_btn.click()
    items = {Path(tab.browser.run_list.item(i).data(0x0100)).name: tab.browser.run_list.item(i)
             for i in range(tab.browser.run_list.count())}
    tab.browser.run_list.setCurrentItem(items["a"])
    items["b"].setSelected(True)
    items["c"].setSelected(True)                           # its newest: _fake_run's last line (bin 2 empty)
    curves = {Path(k).name: [list(v) for v in c.getData()] for k, c in tab.level_overlays.items()}
    assert curves == {"a": [[2.5, 7.5], [0.9, 0.2]], "b": [[2.5, 7.5], [0.8, 0.1]], "c": [[25.0], [1.6]]}
    assert tab.level_kind == "t"
    assert tab.level_overlays[str(runs_made["a"])].opts["pen"] == tab.overlays[str(runs_made["a"])].opts["pen"]
    items["b"].setSelected(False)
    assert sorted(Path(k).name for k in tab.level_overlays) == ["a", "c"]
