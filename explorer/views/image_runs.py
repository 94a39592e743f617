"""Image runs tab (``--tab image_runs``, formerly ``trainer``): launch an image run
(``python -m trainers.image train``), follow it live (loss, loss per noise level, ETA), and browse
run folders.

Titled "Image runs" so it is not mistaken for the 2D Training tab. The processes are
``explorer.workers.process``'s (the training run followed through its ``progress.jsonl``, and the
"sample from checkpoint" process); the run list, grids, chains and checkpoints are
``run_browser.RunBrowser``'s; the quality per checkpoint (eval.jsonl) and its "Rate checkpoints"
processes are ``quality_plot.QualityPanel``'s; run-folder reading and the CLI command lines live in
``explorer.runs``. This module is the run panel, the live plots and the wiring. A ``failed``
event (or a process that exits non-zero) puts the trainer's message in the error banner.
"""
from __future__ import annotations

import time
from pathlib import Path

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from trainers.image import progress as events
from trainers.image import run_layout as layout
from trainers.image import runs as run_files
from trainers.image.config import available_configs, resume_refusal, run_config_name

from .. import runs
from ..workers import process
from .parts import axes, common
from .parts.quality_plot import QualityPanel
from .parts.run_browser import RunBrowser, SampleRequest

LOSS_PEN = pg.mkPen(255, 120, 60, width=2)
LEVEL_PEN = pg.mkPen(90, 180, 255, width=2)
# overlaid runs picked in the run list (the live run keeps LOSS_PEN)
OVERLAY_COLOURS = [(90, 180, 255), (120, 220, 120), (230, 90, 200), (240, 220, 80), (170, 170, 170),
                   (80, 220, 220)]
STATS = [("loss", "Loss"), ("images_per_s", "Images/s"), ("lr", "LR"), ("eta_s", "ETA"),
         ("elapsed_s", "Elapsed")]

TIP = {
    "config": "Image-run config: a bundled one (assets/configs; the *_digits ones are tiny CPU "
              "runs, the others need a dataset folder) or a path to your own .toml file.\n"
              "Resuming a run that has checkpoints continues it with its own config: choose that one "
              "(double-clicking the run in the browser does); another config is refused, naming the "
              "fields that differ.",
    "data_dir": "Dataset folder (MNIST IDX files, CIFAR-10 python batches, CelebA images, ...). "
                "Not needed for the digits configs. Passed as --data-dir.",
    "browse_data": "Choose the dataset folder.",
    "out": f"Run folder: {layout.CONFIG}, {layout.PROGRESS}, {layout.SAMPLES}/ and "
           f"{layout.CHECKPOINTS}/ go here.\n"
           "Empty: a new folder <runs root>/<config>-<date-time> is made at Start.",
    "browse_out": "Choose the run folder (pick an existing run to resume it).",
    "overrides": "Config overrides, space-separated section.key=value, e.g.\n"
                 "train.n_steps=500 train.lr=1e-3 model.ch=64 train.sample_every=100\n"
                 "Quote values with spaces: model.ch_mult='[1, 2, 2]'.",
    "resume": "Continue the run folder from its newest checkpoint (exactly: same batches and "
              "noise as an uninterrupted run). Ticked for you after Stop.",
    "start": "Start training in a separate Python process.",
    "device": "Where the run will train: train.device of the config (and overrides) on this machine.",
    "estimate": "Run time estimated from the trainer's own measured speed: the steps per second "
                "between its log lines after the first one (the first includes the warm-up), times "
                "the steps left.",
    "stop": "Stop the training process: it finishes its step, writes a checkpoint and exits; "
            "Start with Resume ticked continues from that checkpoint.",
    "progress": "Training steps done / total.",
    "stats": "Latest logged values: mean loss since the previous log line, throughput, "
             "learning rate (after warm-up), time left and time spent.",
    "state": "What the training process is doing.",
    "loss_plot": "The image run's training loss (mean over each log interval) against the step.\n"
                 "Runs selected in the run list (Ctrl/Shift+click for several) are overlaid.",
    "level_plot": "The latest log interval's mean loss per noise level: against the timestep t "
                  "(DDPM, 20 bins) or σ (NCSN, one point per level, log axis). Updates with each "
                  "log line.",
    "log_y": "Logarithmic loss axis.",
    "log": "Everything the training and sampling processes print (stdout and stderr).",
    "error": "The last failure, in the trainer's own words. Cleared at the next Start.",
}


RESUME_HINT = ("to continue it, choose its own config (double-clicking the run in the browser does) with overrides of "
               "train.n_steps, train.device and the like only; to train this config, untick Resume and "
               "choose another run folder (or leave it empty)")


class ImageRunsView(QtWidgets.QWidget):
    """Run panel and log (left), live loss plots (middle), run browser and quality per checkpoint
    as two sub-tabs (right)."""

    title = "Image runs"
    runningChanged = QtCore.Signal(bool)     # the training process started (True) / ended (False)

    def __init__(self, parent: QtWidgets.QWidget | None = None,
                 runs_root: str | Path | None = None):
        # MainWindow.VIEWS constructs views as cls(state): this tab needs no state, so anything
        # that is not a widget is ignored rather than taken as the parent.
        super().__init__(parent if isinstance(parent, QtWidgets.QWidget) else None)
        self.trainer = process.ImageRun(self)        # the training run and its progress
        self.sampler = process.ChildProcess(self)    # "sample from checkpoint"
        self.steps: list[int] = []                   # the live run's logged steps and losses
        self.losses: list[float] = []
        self.last_step = 0
        self.failure: str | None = None              # the message of the run's failure
        self.speed: list[tuple[int, float]] = []     # (step, elapsed_s) of this process's log lines
        self.running = False
        self.overlays: dict[str, pg.PlotDataItem] = {}     # run folder -> its overlaid loss curve
        self.level_overlays: dict[str, pg.PlotDataItem] = {}   # run folder -> its last loss per level
        self.level_kind = ""                         # "t" or "sigma": the level plot's x axis
        self._auto_folder: str | None = None         # the run folder Start named after the config

        self.error = _error_banner()
        self.config = common.tip(QtWidgets.QComboBox(), TIP["config"])
        self.config.setEditable(True)
        self.config.addItems(available_configs())
        self.config.setCurrentText("ddpm_digits")
        self.data_dir = common.tip(QtWidgets.QLineEdit(), TIP["data_dir"])
        self.data_dir.setPlaceholderText("not needed for digits")
        self.browse_data_btn = _browse_button(TIP["browse_data"])
        self.out_edit = common.tip(QtWidgets.QLineEdit(), TIP["out"])
        self.out_edit.setPlaceholderText("auto: <runs root>/<config>-<time>")
        self.browse_out_btn = _browse_button(TIP["browse_out"])
        self.overrides = common.tip(QtWidgets.QLineEdit(), TIP["overrides"])
        self.overrides.setPlaceholderText("train.n_steps=500 model.ch=64")
        self.resume = common.tip(QtWidgets.QCheckBox("Resume from the newest checkpoint"),
                                 TIP["resume"])
        self.device_label = _wrapping_label("", TIP["device"])
        self.start_btn = common.tip(QtWidgets.QPushButton("Start"), TIP["start"])
        self.stop_btn = common.tip(QtWidgets.QPushButton("Stop"), TIP["stop"])
        self.log = _log_view()
        self.progress = common.tip(QtWidgets.QProgressBar(), TIP["progress"])
        self.progress.setFormat("step %v / %m")
        self.stats = {key: common.tip(QtWidgets.QLabel("–"), TIP["stats"]) for key, _ in STATS}
        self.estimate_label = _wrapping_label("–", TIP["estimate"])
        self.state_label = _wrapping_label("Idle.", TIP["state"])
        self.plot, self.legend, self.curve = _loss_plot()
        self.log_y = common.tip(QtWidgets.QCheckBox("log y"), TIP["log_y"])
        self.level_plot, self.level_curve = _level_plot()
        self.quality = QualityPanel()
        self.browser = RunBrowser(runs_root)

        self._lay_out()
        self._connect()
        self._set_running(False)
        self.update_device_label()
        self.browser.refresh()
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # ------------------------------------------------------------------ building
    def _lay_out(self) -> None:
        run_box, form = common.form_group("Run")
        form.addRow("Config", self.config)
        form.addRow("Data dir", _with_button(self.data_dir, self.browse_data_btn))
        form.addRow("Run folder", _with_button(self.out_edit, self.browse_out_btn))
        form.addRow("Overrides", self.overrides)
        form.addRow(self.resume)
        form.addRow("Device", self.device_label)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.stop_btn)
        form.addRow(buttons)
        progress_box, form = common.form_group("Progress")
        form.addRow(self.progress)
        for key, label in STATS:
            form.addRow(label, self.stats[key])
        form.addRow("Estimate", self.estimate_label)
        form.addRow(self.state_label)

        run_column = QtWidgets.QWidget()
        run_column.setMinimumWidth(280)
        v = QtWidgets.QVBoxLayout(run_column)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(run_box)
        v.addWidget(progress_box)
        v.addWidget(self.log, 1)
        loss_box = QtWidgets.QWidget()
        v = QtWidgets.QVBoxLayout(loss_box)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.plot, 1)
        v.addWidget(self.log_y)
        live_column = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        for w in (loss_box, self.level_plot):
            live_column.addWidget(w)
        live_column.setSizes([420, 360])
        live_column.setChildrenCollapsible(False)
        # the browser and the quality panel share the right column as two sub-tabs, so that every
        # plot has room at 1280×800 (three plots stacked beside the browser were cut on the right)
        self.right_tabs = QtWidgets.QTabWidget()
        self.right_tabs.addTab(self.browser, "Samples")
        self.right_tabs.addTab(self.quality, "Quality per checkpoint")
        self.right_tabs.setTabToolTip(1, self.quality.plot.toolTip())

        columns = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        for column in (run_column, live_column, self.right_tabs):
            columns.addWidget(column)
        columns.setStretchFactor(0, 0)
        columns.setStretchFactor(1, 1)
        columns.setStretchFactor(2, 2)
        columns.setSizes([330, 420, 600])
        columns.setChildrenCollapsible(False)
        self.columns = columns
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.error)
        lay.addWidget(columns, 1)

    def _connect(self) -> None:
        self.config.currentTextChanged.connect(lambda _: self.update_device_label())
        self.config.currentTextChanged.connect(lambda _: self._forget_auto_folder())
        self.overrides.editingFinished.connect(self.update_device_label)
        self.browse_data_btn.clicked.connect(lambda: self._pick_dir(self.data_dir, "Dataset folder"))
        self.browse_out_btn.clicked.connect(lambda: self._pick_dir(self.out_edit, "Run folder"))
        self.start_btn.clicked.connect(self.start)
        self.stop_btn.clicked.connect(self.stop)
        self.log_y.toggled.connect(lambda on: self.plot.setLogMode(y=on))
        self.trainer.output.connect(self._append_log)
        self.trainer.progress.connect(self._on_progress)
        self.trainer.failed.connect(self._on_failed)
        self.trainer.finished.connect(self._on_train_finished)
        self.sampler.output.connect(self._append_log)
        self.sampler.exited.connect(self._on_sample_finished)
        self.browser.selectionChanged.connect(self.update_overlays)
        self.browser.runActivated.connect(self._continue_run)
        self.browser.sampleRequested.connect(self._start_sampling)
        self.browser.viewedRunChanged.connect(self.quality.set_run)
        self.quality.condition = self.browser.chosen_class     # Rate checkpoints: the Samples sub-tab's class and w
        self.quality.output.connect(self._append_log)
        self.quality.failed.connect(self.show_error)
        self.quality.ratingStarted.connect(self.clear_error)

    def _pick_dir(self, edit: QtWidgets.QLineEdit, caption: str) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, caption, edit.text())
        if path:
            edit.setText(path)
            edit.editingFinished.emit()

    # ------------------------------------------------------------------ training process
    def is_running(self) -> bool:
        return self.trainer.is_running()

    def start(self) -> bool:
        """Launch the training process per the run panel; False (with the reason shown) if the
        panel is not usable."""
        if self.is_running():
            return False
        self.clear_error()
        config = self.config.currentText().strip()
        try:
            overrides = runs.parse_overrides(self.overrides.text())
        except ValueError as e:
            self.show_error(f"Overrides: {e}")
            return False
        if not config:
            self.show_error("Choose a config.")
            return False
        run_dir = self._run_folder(config)
        resume = self.resume.isChecked()
        if resume and run_files.checkpoint_steps(run_dir):
            refusal = resume_refusal(run_dir, config, overrides, RESUME_HINT)
            if refusal:                              # the chosen config is not the run's: say so, start nothing
                self.show_error(refusal)
                return False
        args = runs.train_args(config, run_dir, self.data_dir.text().strip(), resume, overrides)
        self._reset_live()
        self.state_label.setText(f"Starting {run_dir.name} …")
        self.browser.set_live_run(run_dir)
        self._set_running(True)
        self.trainer.start(args, run_dir, resume)     # a failure to start reports back at once
        return True

    def _run_folder(self, config: str) -> Path:
        text = self.out_edit.text().strip()
        if not text:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            text = str(self.browser.runs_root() / f"{Path(config).stem}-{stamp}")
            self.out_edit.setText(text)
            self._auto_folder = text
        return Path(text).expanduser().resolve()

    def _forget_auto_folder(self) -> None:
        """Another config: a run folder named automatically after the old one goes (the next Start
        names one after the new config); a folder the user typed or picked stays."""
        if self.out_edit.text() and self.out_edit.text() == self._auto_folder:
            self.out_edit.clear()

    def stop(self) -> None:
        """Stop the training process (SIGTERM, SIGKILL after a grace period)."""
        if self.is_running():
            self.state_label.setText("Stopping …")
            self.trainer.stop()

    def shutdown(self) -> None:
        """Stop following the run and stop the child processes: call before the tab goes away."""
        self.trainer.shutdown()
        self.sampler.stop()
        self.quality.shutdown()

    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(ev)

    def update_device_label(self) -> str:
        """Show (and return) the device the configured run will use."""
        text = runs.run_device_label(self.config.currentText().strip(), self.overrides.text())
        self.device_label.setText(text)
        return text

    def ask_close_choice(self) -> str:
        """Asked when the window closes during a run: "keep" (runs on in the background),
        "stop" (checkpoint, then exit) or "cancel" (the window stays open)."""
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Icon.Question)
        box.setWindowTitle("An image run is active")
        box.setText(self.close_question_text())
        box.setInformativeText("Keep it running in the background (its folder keeps filling; "
                               "resume or browse it later), or stop it with a checkpoint?")
        keep = box.addButton("Keep running", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop with checkpoint", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.exec()
        return {keep: "keep", stop: "stop"}.get(box.clickedButton(), "cancel")

    def close_question_text(self) -> str:
        """The close dialog's question, at the step the progress bar shows (read the log first)."""
        if self.is_running():
            self.trainer.poll()
        run_dir = self.trainer.run_dir
        step, total = self.progress.value(), self.progress.maximum()
        name = run_dir.name if run_dir else ""
        if total > 1 and step >= total:
            return f"The image run {name} has finished its {total} steps and is writing its last files."
        return f"The image run {name} is still training (step {step}" + (f" / {total})." if total > 1 else ").")

    def close_with(self, choice: str) -> bool:
        """Carry out ``ask_close_choice``'s answer; False for "cancel" (do not close)."""
        if choice == "cancel" or not self.is_running():
            return choice != "cancel"
        if choice == "keep":
            self.trainer.leave_running()
        else:
            self.state_label.setText("Stopping: writing a checkpoint …")
            QtWidgets.QApplication.processEvents()
            self.trainer.stop_and_wait()
        self._set_running(False)
        return True

    def _set_running(self, on: bool) -> None:
        if on != self.running:
            self.running = on
            self.runningChanged.emit(on)
        if not on:
            self.browser.set_live_run(None)
        self.start_btn.setEnabled(not on)
        self.stop_btn.setEnabled(on)
        for w in (self.config, self.data_dir, self.out_edit, self.overrides, self.resume):
            w.setEnabled(not on)

    def _on_train_finished(self, end: process.RunExit) -> None:
        self._set_running(False)
        self.stats["eta_s"].setText("–")              # nothing is left to run: no time left to show
        self.estimate_label.setText("–")
        if not self.steps and self.progress.maximum() <= 1:
            self.progress.setFormat("no step run")    # not "step 0 / 1"
        if end.stopped:
            ckpts = run_files.checkpoint_steps(end.run_dir)
            self.resume.setChecked(bool(ckpts))
            self.state_label.setText(
                f"Stopped at step {self.last_step}. " +
                (f"Resume is ticked: Start continues from checkpoint {ckpts[-1]}." if ckpts
                 else "No checkpoint was written yet."))
        elif end.code == 0:
            self.state_label.setText(f"Finished: step {self.last_step}.")
        else:                                # the banner shows the message (``failed``)
            self.state_label.setText(f"Failed (exit status {end.code}).")
        self.browser.refresh(select=end.run_dir)

    def _on_failed(self, message: str, step: int | None) -> None:
        """The trainer's ``failed`` event (``step`` given) or a non-zero exit without one."""
        self.failure = message
        if step is not None:
            self.state_label.setText(f"Failed at step {step}.")
        self.show_error(f"Training failed{f' at step {step}' if step is not None else ''}: "
                        f"{message}")

    # ------------------------------------------------------------------ live progress
    def _on_progress(self, records: list[dict], reset: bool) -> None:
        if reset:
            self._reset_live()
        for rec in records:
            if "event" in rec:
                self._on_event(rec)
            elif "loss" in rec:
                self._on_log_line(rec)
        if records:
            self.curve.setData(self.steps, self.losses)
            self._update_live_item()

    def _on_log_line(self, rec: dict) -> None:
        if rec.get("elapsed_s") is not None:
            self.speed.append((rec["step"], rec["elapsed_s"]))
            self.estimate_label.setText(runs.estimate_text(self.speed, rec.get("total_steps")))
        self.steps.append(rec["step"])
        self.losses.append(rec["loss"])
        self._set_step(rec["step"], rec.get("total_steps"))
        self.stats["loss"].setText(f"{rec['loss']:.4g}")
        self.stats["images_per_s"].setText(f"{rec.get('images_per_s', 0):,.0f}")
        self.stats["lr"].setText(f"{rec.get('lr', 0):.2e}")
        self.stats["eta_s"].setText(runs.format_seconds(rec.get("eta_s")))
        self.stats["elapsed_s"].setText(runs.format_seconds(rec.get("elapsed_s")))
        level = run_files.level_curve(rec)
        if level is not None:
            self.show_level_loss(*level)

    def show_level_loss(self, kind: str, at: list[float], loss: list[float]) -> None:
        """Draw one interval's loss per noise level (t: linear axis, σ: log axis)."""
        if kind != self.level_kind:
            self._set_level_kind(kind)
        self.level_curve.setData(at, loss)

    def _set_level_kind(self, kind: str) -> None:
        self.level_kind = kind
        self.level_plot.setLogMode(x=kind == "sigma")
        self.level_plot.setLabel("bottom", "σ" if kind == "sigma" else "t")

    def _on_event(self, rec: dict) -> None:
        kind, run_dir = rec["event"], self.trainer.run_dir
        self._set_step(rec.get("step", self.last_step), rec.get("total_steps"))
        if kind == events.START:
            self.speed = []                      # elapsed_s restarts with each process
            self.estimate_label.setText("measuring the first steps …")
            if self.failure is not None:          # an earlier attempt's failure, now resumed
                self.failure = None
                self.clear_error()
            resumed = rec.get("resumed_from")
            self.state_label.setText(
                f"Training {run_dir.name}: {rec.get('method', '')} on "
                f"{rec.get('dataset', '')}, "
                f"{rec.get('params', 0) / 1e6:.2f}M params, {rec.get('device', '')}"
                + (f", resumed from step {resumed}" if resumed is not None else "") + ".")
            if run_dir.parent == self.browser.runs_root():
                self.browser.refresh(select=run_dir)      # the viewer follows the live run
        elif kind in (events.SAMPLES, events.CHECKPOINT):
            self.browser.reload_run(run_dir, keep_grid=kind == events.CHECKPOINT)
        elif kind == events.DONE:
            self._set_step(max(rec.get("step", 0), self.progress.maximum()), None)
        # events.FAILED: ``ImageRun.failed`` follows (``_on_failed``)

    def _set_step(self, step: int, total: int | None) -> None:
        self.last_step = step
        if total:
            self.progress.setMaximum(total)
            self.progress.setFormat("step %v / %m")
        self.progress.setValue(min(step, self.progress.maximum()))

    def _reset_live(self) -> None:
        self.steps, self.losses, self.last_step = [], [], 0
        self.failure = None
        self.curve.setData([], [])
        self.level_curve.setData([], [])
        self.progress.setMaximum(1)
        self.progress.setValue(0)
        for label in self.stats.values():
            label.setText("–")
        self.speed = []
        self.estimate_label.setText("–")

    def _update_live_item(self) -> None:
        """The live run's line in the run list: running, its step and last loss."""
        if self.is_running():
            self.browser.show_live_summary(run_files.RunSummary(
                "running", self.last_step, self.losses[-1] if self.losses else None))

    def update_overlays(self, selected: list[Path]) -> None:
        """Overlay the loss curves of the runs ``selected`` in the run list (the live run is the
        main curve already, so it is not drawn twice)."""
        live = self.trainer.run_dir if self.steps else None
        want = [p for p in selected if live is None or p.resolve() != live]
        for key in [k for k in self.overlays if Path(k) not in want]:
            item = self.overlays.pop(key)
            self.plot.removeItem(item)
            self.legend.removeItem(item)
        for path in want:
            steps, losses = run_files.loss_curve(run_files.read_log(path))
            item = self.overlays.get(str(path))
            if item is None:
                colour = OVERLAY_COLOURS[len(self.overlays) % len(OVERLAY_COLOURS)]
                item = self.plot.plot([], [], pen=pg.mkPen(*colour, width=1.5), name=path.name)
                self.overlays[str(path)] = item
            item.setData(steps, losses)
        self._update_level_overlays(want)

    def _update_level_overlays(self, want: list[Path]) -> None:
        """The newest loss per noise level of each run in ``want``, in its loss-overlay colour, on
        the level plot (runs whose levels are of another kind than the plot's are left out)."""
        for key in list(self.level_overlays):
            self.level_plot.removeItem(self.level_overlays.pop(key))
        for path in want:
            level = next((c for c in map(run_files.level_curve, reversed(run_files.read_log(path))) if c), None)
            if level is None:
                continue
            kind, at, loss = level
            if not self.level_kind:
                self._set_level_kind(kind)
            if kind != self.level_kind:
                continue
            pen = self.overlays[str(path)].opts["pen"]
            self.level_overlays[str(path)] = self.level_plot.plot(at, loss, pen=pen)

    def _continue_run(self, run: Path) -> None:
        if not self.is_running():
            own = run_config_name(run)
            if own:                                  # the run's own config, so Start continues it
                self.config.setCurrentText(own)
            self.out_edit.setText(str(run))
            self.resume.setChecked(True)

    # ------------------------------------------------------------------ messages
    def _append_log(self, text: str) -> None:
        cursor = self.log.textCursor()
        cursor.movePosition(QtGui.QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.log.setTextCursor(cursor)
        self.log.ensureCursorVisible()

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()

    def clear_error(self) -> None:
        self.error.clear()
        self.error.hide()

    # ------------------------------------------------------------------ sampling process
    def _start_sampling(self, request: SampleRequest) -> None:
        if self.sampler.is_running():
            return
        self.clear_error()
        self.browser.set_sampling(True)
        self.sampler.start(request.args())    # a failure to start reports back at once

    def _on_sample_finished(self, end: process.ProcessExit) -> None:
        self.browser.set_sampling(False)
        reply = runs.last_json_line(end.stdout) if end.code == 0 else None
        if reply and "grid" in reply:
            self.browser.show_run(select_grid=Path(reply["grid"]).resolve())
        else:
            self.browser.show_run(keep_grid=True)
            if not end.stopped:
                self.show_error(f"Sampling failed: {runs.error_message(end.stderr)}")


# ---------------------------------------------------------------------------- widget factories
def _error_banner() -> QtWidgets.QLabel:
    label = common.tip(QtWidgets.QLabel(), TIP["error"])
    label.setWordWrap(True)
    label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setStyleSheet("QLabel { background: #5c1a1a; color: #ffdede; padding: 6px; "
                        "border-radius: 3px; }")
    label.hide()
    return label


def _wrapping_label(text: str, tip: str) -> QtWidgets.QLabel:
    label = common.tip(QtWidgets.QLabel(text), tip)
    label.setWordWrap(True)
    return label


def _browse_button(tip: str) -> QtWidgets.QToolButton:
    button = common.tip(QtWidgets.QToolButton(), tip)
    button.setText("…")
    return button


def _with_button(edit: QtWidgets.QLineEdit, button: QtWidgets.QToolButton) -> QtWidgets.QWidget:
    row = QtWidgets.QWidget()
    h = QtWidgets.QHBoxLayout(row)
    h.setContentsMargins(0, 0, 0, 0)
    h.addWidget(edit, 1)
    h.addWidget(button)
    return row


def _log_view() -> QtWidgets.QPlainTextEdit:
    log = common.tip(QtWidgets.QPlainTextEdit(), TIP["log"])
    log.setReadOnly(True)
    log.setMaximumBlockCount(5000)
    log.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
    return log


def _styled_plot(title: str, tip: str, bottom: str) -> pg.PlotWidget:
    plot = common.tip(pg.PlotWidget(title=title, axisItems=axes.items()), tip)   # no "(x0.001)" scaling
    plot.setLabel("bottom", bottom)
    plot.setLabel("left", "loss")
    plot.showGrid(x=True, y=True, alpha=0.25)
    return plot


def _loss_plot() -> tuple[pg.PlotWidget, pg.LegendItem, pg.PlotDataItem]:
    """The loss-vs-step plot, its legend (for the overlays) and the live run's curve."""
    plot = _styled_plot("Image-run loss", TIP["loss_plot"], "step")
    legend = plot.addLegend(offset=(-10, 10))
    curve = plot.plot([], [], pen=LOSS_PEN, symbol="o", symbolSize=4,
                      symbolBrush=LOSS_PEN.color(), symbolPen=None, name="live run")
    return plot, legend, curve


def _level_plot() -> tuple[pg.PlotWidget, pg.PlotDataItem]:
    plot = _styled_plot("Loss per noise level", TIP["level_plot"], "t")        # the latest interval
    curve = plot.plot([], [], pen=LEVEL_PEN, symbol="o", symbolSize=5,
                      symbolBrush=LEVEL_PEN.color(), symbolPen=None)
    return plot, curve
