"""Image runs tab (``--tab trainer``): launch ``python -m trainers.image train`` as a child process, follow it live,
and browse the sample grids and checkpoints of run folders.

The run is a separate process (``QProcess`` with ``sys.executable``), never a thread: torch's
thread count is process-wide and a long image run must not share the GUI's interpreter. Nothing
here waits on a process: QProcess signals report output and exit, and a timer tails
``RUN_DIR/progress.jsonl`` (``explorer.runs.ProgressTail`` reads only the new bytes; the event
names are ``trainers.image.progress``'s). A ``failed`` event puts the trainer's message in the error
banner. Run-folder reading and the CLI command lines live in ``explorer.runs``; this module is
widgets only. Titled "Image runs" so it is not mistaken for the 2D Training tab.
"""
from __future__ import annotations

import codecs
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from trainers.image import progress as events
from trainers.image import run_layout as layout
from trainers.image.config import available_configs

from .. import runs
from . import common

POLL_MS = 250            # progress.jsonl poll period
# Stop sends SIGTERM: the trainer finishes its step, writes a checkpoint and exits. A child still
# alive this much later (a stuck process) gets SIGKILL.
KILL_AFTER_MS = 30_000
LOSS_PEN = pg.mkPen(255, 120, 60, width=2)
LEVEL_PEN = pg.mkPen(90, 180, 255, width=2)
# overlaid runs picked in the run list (the live run keeps LOSS_PEN)
OVERLAY_COLOURS = [(90, 180, 255), (120, 220, 120), (230, 90, 200), (240, 220, 80), (170, 170, 170),
                   (80, 220, 220)]

TIP = {
    "config": "Image-run config: a bundled one (assets/configs; the *_digits ones are tiny CPU "
              "runs, the others need a dataset folder) or a path to your own .toml file.\n"
              "Ignored when resuming a run that has checkpoints: it continues with its own config.",
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
    "root": "Folder whose sub-folders are runs (default ./runs).",
    "browse_root": "Choose the runs root folder.",
    "refresh": "Look for new runs, grids and checkpoints.",
    "run_list": "Runs under the root, most recently changed first, with their status (running, "
                "finished, stopped, failed with the trainer's message, interrupted), last step and "
                "last loss.\nSelect several (Ctrl/Shift+click) to overlay their loss curves; the "
                "viewer shows the current one.\n"
                "Double-click: set it as the run folder with Resume ticked, to continue it.",
    "grid_slider": "Sample grids of this run in step order (drawn during training, and drawn "
                   "from checkpoints here); the latest is shown first.",
    "image": "The selected sample grid (or chain frame). Wheel to zoom, drag to pan.",
    "chain_slider": "Scrub the sampling chain from x_T (pure noise, left) to x_0 (right). "
                    "Only for grids drawn here with 'Record chain'.",
    "ckpt": "Checkpoint to sample from (step).",
    "n": "Number of images in the grid.",
    "sampler": "Any sampler works on any run (the network is wrapped as one score model).\n"
               "default: the run's own, ancestral DDPM for DDPM runs, annealed Langevin for NCSN runs.\n"
               "Outside the model's trained noise range the log shows a note.",
    "frames": "Record about this many frames of the chain x_T -> x_0 (0: no chain).",
    "weights": "Draw from the checkpoint's EMA weights (the average the training grids use) or "
               "its raw training weights.",
    "toggle_weights": "Show the same checkpoint, sampler and seed with the other weights "
                      "(EMA ⇄ raw); drawn first if it is not there yet.",
    "sample": "Draw a grid from the chosen checkpoint's EMA (or raw) weights in a separate "
              f"process (saved under <run>/{layout.DRAWN}/) and show it.",
}


# ---------------------------------------------------------------------------- child processes
class _Process(QtCore.QProcess):
    def mark_detached(self) -> None:
        # ~QProcess kills a child it still counts as running; marked not running, the child is left
        # alone. (Its stdout/stderr pipes close with us: the trainer then writes to /dev/null.)
        self.setProcessState(QtCore.QProcess.ProcessState.NotRunning)


class ProcessRunner(QtCore.QObject):
    """One child process of the trainer CLI, driven by QProcess signals (never waited on).

    ``output`` carries stdout and stderr text as it arrives; ``finished`` gives the exit code
    (-1 when it crashed, was killed or could not start) and whether ``stop()`` asked for it.
    The full stdout and stderr texts stay readable after the exit.
    """

    output = QtCore.Signal(str)
    finished = QtCore.Signal(int, bool)

    def __init__(self, parent: QtCore.QObject):
        super().__init__(parent)
        # A child QObject: if the tab is destroyed with the child still running, ~QProcess
        # kills it.
        self.proc = _Process(self)
        self.proc.setProgram(sys.executable)
        if hasattr(QtCore.QProcess, "setUnixProcessParameters"):     # Qt >= 6.6
            # its own session: closing the terminal the explorer was started from (SIGHUP) or
            # Ctrl+C there does not reach a run left running in the background
            self.proc.setUnixProcessParameters(QtCore.QProcess.UnixProcessFlag.CreateNewSession)
        env = QtCore.QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")          # live log lines
        self.proc.setProcessEnvironment(env)
        self.proc.readyReadStandardOutput.connect(self._read_stdout)
        self.proc.readyReadStandardError.connect(self._read_stderr)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)
        self._kill_timer = QtCore.QTimer(self, singleShot=True, interval=KILL_AFTER_MS)
        self._kill_timer.timeout.connect(self.proc.kill)
        self.stdout = self.stderr = ""
        self._stopping = False

    def start(self, args: list[str]) -> None:
        self.stdout = self.stderr = ""
        self._decoders = [codecs.getincrementaldecoder("utf-8")("replace") for _ in range(2)]
        self._stopping = False
        self.proc.setArguments(args)
        self.output.emit(f"$ {self.command_line()}\n")
        self.proc.start()

    def is_running(self) -> bool:
        return self.proc.state() != QtCore.QProcess.ProcessState.NotRunning

    def stop(self) -> None:
        if self.is_running():
            self._stopping = True
            self.proc.terminate()
            self._kill_timer.start()

    def stop_and_wait(self, timeout_ms: int = KILL_AFTER_MS) -> bool:
        """SIGTERM, then wait (blocking) until the child has checkpointed and exited; True if it
        did. One that takes longer is left to finish on its own (never killed: it is writing its
        checkpoint)."""
        if not self.is_running():
            return True
        self._stopping = True
        self.proc.terminate()
        if self.proc.waitForFinished(timeout_ms):
            return True
        self.detach()
        return False

    def detach(self) -> None:
        """Let the child outlive this object (and the explorer): no more signals from it, and no
        kill when the QProcess is destroyed."""
        if self.is_running():
            self._kill_timer.stop()
            for sig in (self.proc.readyReadStandardOutput, self.proc.readyReadStandardError,
                        self.proc.finished, self.proc.errorOccurred):
                sig.disconnect()
            self.proc.mark_detached()

    def command_line(self) -> str:
        return shlex.join([Path(self.proc.program()).name, *self.proc.arguments()])

    def _read_stdout(self) -> None:
        text = self._decoders[0].decode(self.proc.readAllStandardOutput().data())
        self.stdout += text
        self._emit(text)

    def _read_stderr(self) -> None:
        text = self._decoders[1].decode(self.proc.readAllStandardError().data())
        self.stderr += text
        self._emit(text)

    def _emit(self, text: str) -> None:
        if text:
            self.output.emit(text)

    def _on_finished(self, code: int, status: QtCore.QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        self._read_stdout()
        self._read_stderr()
        crashed = status == QtCore.QProcess.ExitStatus.CrashExit
        self.finished.emit(-1 if crashed else code, self._stopping)

    def _on_error(self, error: QtCore.QProcess.ProcessError) -> None:
        if error == QtCore.QProcess.ProcessError.FailedToStart:   # no finished signal follows
            self.stderr += (f"error: could not start {self.proc.program()}: "
                            f"{self.proc.errorString()}\n")
            self.finished.emit(-1, False)


# ---------------------------------------------------------------------------- the tab
class TrainerTab(QtWidgets.QWidget):
    """Run panel (left), live progress and log (middle), sample viewer (right)."""

    title = "Image runs"
    runningChanged = QtCore.Signal(bool)     # the training process started (True) / ended (False)

    def __init__(self, parent: QtWidgets.QWidget | None = None,
                 runs_root: str | Path | None = None):
        # MainWindow.VIEWS constructs views as cls(state): this tab needs no state, so anything
        # that is not a widget is ignored rather than taken as the parent.
        super().__init__(parent if isinstance(parent, QtWidgets.QWidget) else None)
        self.trainer = ProcessRunner(self)
        self.sampler = ProcessRunner(self)
        self.run_dir: Path | None = None       # the run being trained (or last trained)
        self.tail: runs.ProgressTail | None = None
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.last_step = 0
        self.failure: str | None = None        # the message of the run's ``failed`` event
        self.grids: list[runs.Grid] = []
        self.overlays: dict[str, pg.PlotDataItem] = {}     # run folder -> its overlaid loss curve
        self.chain: runs.ChainFrames | None = None
        self._chain_key = None
        self.poll_timer = QtCore.QTimer(self, interval=POLL_MS)
        self.poll_timer.timeout.connect(self.poll_progress)

        self.error = self._error_banner()
        columns = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        columns.addWidget(self._build_run_column())
        columns.addWidget(self._build_live_column())
        columns.addWidget(self._build_viewer_column())
        columns.setSizes([360, 480, 560])
        columns.setChildrenCollapsible(False)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.error)
        lay.addWidget(columns, 1)

        self._running = False
        self._speed: list[tuple[int, float]] = []      # (step, elapsed_s) of this process's log lines
        self.root_edit.setText(str(Path(runs_root) if runs_root else Path.cwd() / "runs"))
        self._connect()
        self._set_running(False)
        self.update_device_label()
        self.refresh_runs()
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # ------------------------------------------------------------------ building
    def _error_banner(self) -> QtWidgets.QLabel:
        label = common.tip(QtWidgets.QLabel(), TIP["error"])
        label.setWordWrap(True)
        label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setStyleSheet("QLabel { background: #5c1a1a; color: #ffdede; padding: 6px; "
                            "border-radius: 3px; }")
        label.hide()
        return label

    def _build_run_column(self) -> QtWidgets.QWidget:
        box, form = common.form_group("Run")
        self.config = common.tip(QtWidgets.QComboBox(), TIP["config"])
        self.config.setEditable(True)
        self.config.addItems(available_configs())
        self.config.setCurrentText("ddpm_digits")
        self.data_dir = common.tip(QtWidgets.QLineEdit(), TIP["data_dir"])
        self.data_dir.setPlaceholderText("not needed for digits")
        self.out_edit = common.tip(QtWidgets.QLineEdit(), TIP["out"])
        self.out_edit.setPlaceholderText("auto: <runs root>/<config>-<time>")
        self.overrides = common.tip(QtWidgets.QLineEdit(), TIP["overrides"])
        self.overrides.setPlaceholderText("train.n_steps=500 model.ch=64")
        self.resume = common.tip(QtWidgets.QCheckBox("Resume from the newest checkpoint"), TIP["resume"])
        form.addRow("Config", self.config)
        form.addRow("Data dir",
                    self._with_browse(self.data_dir, "browse_data", self._pick_data_dir))
        form.addRow("Run folder", self._with_browse(self.out_edit, "browse_out", self._pick_out))
        form.addRow("Overrides", self.overrides)
        form.addRow(self.resume)
        self.device_label = common.tip(QtWidgets.QLabel(), TIP["device"])
        self.device_label.setWordWrap(True)
        form.addRow("Device", self.device_label)
        self.start_btn = common.tip(QtWidgets.QPushButton("Start"), TIP["start"])
        self.stop_btn = common.tip(QtWidgets.QPushButton("Stop"), TIP["stop"])
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.stop_btn)
        form.addRow(buttons)
        self.log = common.tip(QtWidgets.QPlainTextEdit(), TIP["log"])
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        column = QtWidgets.QWidget()
        column.setMinimumWidth(300)
        v = QtWidgets.QVBoxLayout(column)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(box)
        v.addWidget(self._build_progress_box())
        v.addWidget(self.log, 1)
        return column

    def _build_progress_box(self) -> QtWidgets.QGroupBox:
        box, form = common.form_group("Progress")
        self.progress = common.tip(QtWidgets.QProgressBar(), TIP["progress"])
        self.progress.setFormat("step %v / %m")
        form.addRow(self.progress)
        self.stats = {}
        for key, label in [("loss", "Loss"), ("images_per_s", "Images/s"), ("lr", "LR"),
                           ("eta_s", "ETA"), ("elapsed_s", "Elapsed")]:
            self.stats[key] = common.tip(QtWidgets.QLabel("–"), TIP["stats"])
            form.addRow(label, self.stats[key])
        self.estimate_label = common.tip(QtWidgets.QLabel("–"), TIP["estimate"])
        self.estimate_label.setWordWrap(True)
        form.addRow("Estimate", self.estimate_label)
        self.state_label = common.tip(QtWidgets.QLabel("Idle."), TIP["state"])
        self.state_label.setWordWrap(True)
        form.addRow(self.state_label)
        return box

    def _build_live_column(self) -> QtWidgets.QWidget:
        self.plot = common.tip(pg.PlotWidget(title="Image-run loss"), TIP["loss_plot"])
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.legend = self.plot.addLegend(offset=(-10, 10))
        self.curve = self.plot.plot([], [], pen=LOSS_PEN, symbol="o", symbolSize=4,
                                    symbolBrush=LOSS_PEN.color(), symbolPen=None, name="live run")
        self.log_y = common.tip(QtWidgets.QCheckBox("log y"), TIP["log_y"])
        self.level_plot = common.tip(pg.PlotWidget(title="Loss per noise level (latest interval)"),
                                TIP["level_plot"])
        self.level_plot.setLabel("bottom", "t")
        self.level_plot.setLabel("left", "loss")
        self.level_plot.getAxis("left").enableAutoSIPrefix(False)
        self.level_plot.showGrid(x=True, y=True, alpha=0.25)
        self.level_curve = self.level_plot.plot([], [], pen=LEVEL_PEN, symbol="o", symbolSize=5,
                                                symbolBrush=LEVEL_PEN.color(), symbolPen=None)
        self.level_kind = ""
        column = QtWidgets.QWidget()
        v = QtWidgets.QVBoxLayout(column)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.plot, 3)
        v.addWidget(self.log_y)
        v.addWidget(self.level_plot, 2)
        return column

    def _build_viewer_column(self) -> QtWidgets.QWidget:
        box = QtWidgets.QGroupBox("Samples")
        v = QtWidgets.QVBoxLayout(box)
        self.root_edit = common.tip(QtWidgets.QLineEdit(), TIP["root"])
        self.refresh_btn = common.tip(QtWidgets.QPushButton("Refresh"), TIP["refresh"])
        root_row = self._with_browse(self.root_edit, "browse_root", self._pick_root)
        root_row.layout().addWidget(self.refresh_btn)
        v.addWidget(root_row)
        self.run_list = common.tip(QtWidgets.QListWidget(), TIP["run_list"])
        self.run_list.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.run_list.setMaximumHeight(110)
        v.addWidget(self.run_list)
        self.grid_slider, self.grid_label = self._slider_row(v, "grid_slider")
        self.image_view = common.tip(pg.GraphicsLayoutWidget(), TIP["image"])
        self.view_box = self.image_view.addViewBox(lockAspect=True, invertY=True)
        self.image = pg.ImageItem()
        self.view_box.addItem(self.image)
        v.addWidget(self.image_view, 1)
        self.chain_slider, self.chain_label = self._slider_row(v, "chain_slider")
        v.addLayout(self._sample_row())
        return box

    def _sample_row(self) -> QtWidgets.QHBoxLayout:
        self.ckpt = common.tip(QtWidgets.QComboBox(), TIP["ckpt"])
        self.n_samples = common.spin(1, 1024, 64, tooltip=TIP["n"])
        self.sampler_kind = common.combo(runs.sampler_choices(), "", TIP["sampler"])
        self.frames = common.spin(0, 500, 50, tooltip=TIP["frames"])
        self.weights = common.combo([("ema", "EMA"), ("raw", "raw")], "ema", TIP["weights"])
        self.sample_btn = common.tip(QtWidgets.QPushButton("Sample from checkpoint"), TIP["sample"])
        self.toggle_weights_btn = common.tip(QtWidgets.QPushButton("EMA ⇄ raw"), TIP["toggle_weights"])
        row = QtWidgets.QHBoxLayout()
        for label, w in [("ckpt", self.ckpt), ("n", self.n_samples), ("", self.sampler_kind),
                         ("", self.weights), ("chain frames", self.frames)]:
            if label:
                row.addWidget(common.tip(QtWidgets.QLabel(label), w.toolTip()))
            row.addWidget(w)
        row.addWidget(self.sample_btn)
        row.addWidget(self.toggle_weights_btn)
        return row

    def _slider_row(self, layout: QtWidgets.QVBoxLayout, tip_key: str):
        slider = common.tip(QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal), TIP[tip_key])
        label = common.tip(QtWidgets.QLabel("–"), TIP[tip_key])
        label.setMinimumWidth(190)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(slider, 1)
        row.addWidget(label)
        layout.addLayout(row)
        return slider, label

    def _with_browse(self, edit: QtWidgets.QLineEdit, tip_key: str, slot) -> QtWidgets.QWidget:
        button = common.tip(QtWidgets.QToolButton(), TIP[tip_key])
        button.setText("…")
        button.clicked.connect(slot)
        row = QtWidgets.QWidget()
        h = QtWidgets.QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(edit, 1)
        h.addWidget(button)
        return row

    def _connect(self) -> None:
        self.config.currentTextChanged.connect(lambda _: self.update_device_label())
        self.overrides.editingFinished.connect(self.update_device_label)
        self.start_btn.clicked.connect(self.start)
        self.stop_btn.clicked.connect(self.stop)
        self.log_y.toggled.connect(lambda on: self.plot.setLogMode(y=on))
        self.trainer.output.connect(self._append_log)
        self.sampler.output.connect(self._append_log)
        self.trainer.finished.connect(self._on_train_finished)
        self.sampler.finished.connect(self._on_sample_finished)
        self.refresh_btn.clicked.connect(lambda: self.refresh_runs())
        self.root_edit.editingFinished.connect(lambda: self.refresh_runs())
        self.run_list.currentItemChanged.connect(lambda *_: self._show_run())
        self.run_list.itemSelectionChanged.connect(self.update_overlays)
        self.toggle_weights_btn.clicked.connect(self.toggle_weights)
        self.run_list.itemDoubleClicked.connect(self._continue_run)
        self.grid_slider.valueChanged.connect(self._show_grid)
        self.chain_slider.valueChanged.connect(self._show_chain_frame)
        self.sample_btn.clicked.connect(self.sample_from_checkpoint)

    # ------------------------------------------------------------------ folder pickers
    def _pick_dir(self, edit: QtWidgets.QLineEdit, caption: str) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, caption, edit.text())
        if path:
            edit.setText(path)
            edit.editingFinished.emit()

    def _pick_data_dir(self):
        self._pick_dir(self.data_dir, "Dataset folder")

    def _pick_out(self):
        self._pick_dir(self.out_edit, "Run folder")

    def _pick_root(self):
        self._pick_dir(self.root_edit, "Runs root folder")

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
        self.run_dir = self._run_folder(config)
        resume = self.resume.isChecked()
        args = runs.train_args(config, self.run_dir, self.data_dir.text().strip(), resume,
                               overrides)
        self._reset_live()
        # A resumed run's curve starts with its history; a fresh run's with its own first line.
        self.tail = runs.ProgressTail(layout.progress_path(self.run_dir), skip_existing=not resume)
        self.state_label.setText(f"Starting {self.run_dir.name} …")
        self._set_running(True)
        self.poll_timer.start()
        self.trainer.start(args)           # a failure to start reports back at once, in here
        return True

    def _run_folder(self, config: str) -> Path:
        text = self.out_edit.text().strip()
        if not text:
            text = str(self.runs_root() / f"{Path(config).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
            self.out_edit.setText(text)
        return Path(text).expanduser().resolve()

    def stop(self) -> None:
        """Stop the training process (SIGTERM, SIGKILL after a grace period)."""
        if self.is_running():
            self.state_label.setText("Stopping …")
            self.trainer.stop()

    def shutdown(self) -> None:
        """Stop every child process and timer: call before the tab goes away."""
        self.poll_timer.stop()
        self.trainer.stop()
        self.sampler.stop()

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
        box.setText(f"The image run {self.run_dir.name if self.run_dir else ''} is still training "
                    f"(step {self.last_step}).")
        box.setInformativeText("Keep it running in the background (its folder keeps filling; "
                               "resume or browse it later), or stop it with a checkpoint?")
        keep = box.addButton("Keep running", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop with checkpoint", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.exec()
        return {keep: "keep", stop: "stop"}.get(box.clickedButton(), "cancel")

    def close_with(self, choice: str) -> bool:
        """Carry out ``ask_close_choice``'s answer; False for "cancel" (do not close)."""
        if choice == "cancel" or not self.is_running():
            return choice != "cancel"
        pid = self.trainer.proc.processId()
        if choice == "keep":
            self.poll_timer.stop()
            self.trainer.detach()
            print(f"image run {self.run_dir} keeps training in the background (pid {pid}); "
                  "its progress is in progress.jsonl", file=sys.stderr)
        else:
            self.state_label.setText("Stopping: writing a checkpoint …")
            QtWidgets.QApplication.processEvents()
            if not self.trainer.stop_and_wait():
                print(f"image run {self.run_dir} (pid {pid}) is still writing its checkpoint; "
                      "it exits by itself", file=sys.stderr)
        self._set_running(False)
        return True

    def _set_running(self, on: bool) -> None:
        if on != self._running:
            self._running = on
            self.runningChanged.emit(on)
        self.start_btn.setEnabled(not on)
        self.stop_btn.setEnabled(on)
        for w in (self.config, self.data_dir, self.out_edit, self.overrides, self.resume):
            w.setEnabled(not on)

    def _on_train_finished(self, code: int, stopped: bool) -> None:
        self.poll_timer.stop()
        self.poll_progress()
        self._set_running(False)
        if stopped:
            ckpts = runs.checkpoint_steps(self.run_dir)
            self.resume.setChecked(bool(ckpts))
            self.state_label.setText(
                f"Stopped at step {self.last_step}. " +
                (f"Resume is ticked: Start continues from checkpoint {ckpts[-1]}." if ckpts
                 else "No checkpoint was written yet."))
        elif code == 0:
            self.state_label.setText(f"Finished: step {self.last_step}.")
        else:
            self.state_label.setText(f"Failed (exit status {code}).")
            self.show_error(self._failure_text(self.failure or
                                               runs.error_message(self.trainer.stderr)))
        self.refresh_runs(select=self.run_dir)

    # ------------------------------------------------------------------ live progress
    def poll_progress(self) -> None:
        """Read the new lines of the run's progress.jsonl and show them."""
        if self.tail is None:
            return
        records, reset = self.tail.poll()
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
            self._speed.append((rec["step"], rec["elapsed_s"]))
            self.estimate_label.setText(runs.estimate_text(self._speed, rec.get("total_steps")))
        self.steps.append(rec["step"])
        self.losses.append(rec["loss"])
        self._set_step(rec["step"], rec.get("total_steps"))
        self.stats["loss"].setText(f"{rec['loss']:.4g}")
        self.stats["images_per_s"].setText(f"{rec.get('images_per_s', 0):,.0f}")
        self.stats["lr"].setText(f"{rec.get('lr', 0):.2e}")
        self.stats["eta_s"].setText(runs.format_seconds(rec.get("eta_s")))
        self.stats["elapsed_s"].setText(runs.format_seconds(rec.get("elapsed_s")))
        level = runs.level_curve(rec)
        if level is not None:
            self.show_level_loss(*level)

    def show_level_loss(self, kind: str, at: list[float], loss: list[float]) -> None:
        """Draw one interval's loss per noise level (t: linear axis, σ: log axis)."""
        if kind != self.level_kind:
            self.level_kind = kind
            self.level_plot.setLogMode(x=kind == "sigma")
            self.level_plot.setLabel("bottom", "σ" if kind == "sigma" else "t")
        self.level_curve.setData(at, loss)
    def _on_event(self, rec: dict) -> None:
        kind = rec["event"]
        self._set_step(rec.get("step", self.last_step), rec.get("total_steps"))
        if kind == events.START:
            self._speed = []                      # elapsed_s restarts with each process
            self.estimate_label.setText("measuring the first steps …")
            if self.failure is not None:          # an earlier attempt's failure, now resumed
                self.failure = None
                self.clear_error()
            resumed = rec.get("resumed_from")
            self.state_label.setText(
                f"Training {self.run_dir.name}: {rec.get('method', '')} on "
                f"{rec.get('dataset', '')}, "
                f"{rec.get('params', 0) / 1e6:.2f}M params, {rec.get('device', '')}"
                + (f", resumed from step {resumed}" if resumed is not None else "") + ".")
            if self.run_dir.parent == self.runs_root():
                self.refresh_runs(select=self.run_dir)      # the viewer follows the live run
        elif kind in (events.SAMPLES, events.CHECKPOINT) and self._viewed_run() == self.run_dir:
            self._show_run(keep_grid=kind == events.CHECKPOINT)
        elif kind == events.DONE:
            self.progress.setValue(self.progress.maximum())
        elif kind == events.FAILED:
            self.failure = str(rec.get("message") or rec.get("error") or "no message")
            self.state_label.setText(f"Failed at step {self.last_step}.")
            self.show_error(self._failure_text(self.failure))

    def _failure_text(self, message: str) -> str:
        step = f" at step {self.last_step}" if self.failure is not None else ""
        return f"Training failed{step}: {message}"

    def _set_step(self, step: int, total: int | None) -> None:
        self.last_step = step
        if total:
            self.progress.setMaximum(total)
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
        self._speed = []
        self.estimate_label.setText("–")

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

    # ------------------------------------------------------------------ sample viewer
    def runs_root(self) -> Path:
        return Path(self.root_edit.text().strip() or "runs").expanduser().resolve()

    def refresh_runs(self, select: Path | None = None) -> None:
        """Re-list the runs under the root; keep (or move to) the selected run."""
        keep = select or self._viewed_run()
        self.run_list.blockSignals(True)
        self.run_list.clear()
        selected = {Path(p).resolve() for p in self.selected_runs()}
        for path in runs.list_runs(self.runs_root()):
            live = self.is_running() and self.run_dir is not None and path.resolve() == self.run_dir
            summary = runs.run_summary(path, live=live)
            item = QtWidgets.QListWidgetItem(f"{path.name} — {summary.text()}")
            item.setData(QtCore.Qt.ItemDataRole.UserRole, str(path))
            item.setToolTip(f"{path}\n{summary.text()}")
            self.run_list.addItem(item)
            if keep is not None and path.resolve() == Path(keep).resolve():
                self.run_list.setCurrentItem(item)
            elif path.resolve() in selected:
                item.setSelected(True)
        if self.run_list.currentRow() < 0 and self.run_list.count():
            self.run_list.setCurrentRow(0)
        self.run_list.blockSignals(False)
        self._show_run()
        self.update_overlays()

    def run_names(self) -> list[str]:
        """The run folders' names, in list order."""
        return [Path(self.run_list.item(i).data(QtCore.Qt.ItemDataRole.UserRole)).name
                for i in range(self.run_list.count())]

    def selected_runs(self) -> list[Path]:
        return [Path(item.data(QtCore.Qt.ItemDataRole.UserRole))
                for item in self.run_list.selectedItems()]

    def update_overlays(self) -> None:
        """Overlay the loss curves of the runs selected in the list (the live run is the main
        curve already, so it is not drawn twice)."""
        live = self.run_dir if self.steps else None
        want = [p for p in self.selected_runs() if live is None or p.resolve() != live]
        for key in [k for k in self.overlays if Path(k) not in want]:
            item = self.overlays.pop(key)
            self.plot.removeItem(item)
            self.legend.removeItem(item)
        for i, path in enumerate(want):
            steps, losses = runs.loss_curve(runs.read_log(path))
            item = self.overlays.get(str(path))
            if item is None:
                colour = OVERLAY_COLOURS[len(self.overlays) % len(OVERLAY_COLOURS)]
                item = self.plot.plot([], [], pen=pg.mkPen(*colour, width=1.5), name=path.name)
                self.overlays[str(path)] = item
            item.setData(steps, losses)

    def _update_live_item(self) -> None:
        """The live run's line in the run list: running, its step and last loss."""
        if self.run_dir is None or not self.is_running():
            return
        summary = runs.RunSummary("running", self.last_step, self.losses[-1] if self.losses else None)
        for i in range(self.run_list.count()):
            item = self.run_list.item(i)
            if Path(item.data(QtCore.Qt.ItemDataRole.UserRole)).resolve() == self.run_dir:
                item.setText(f"{self.run_dir.name} — {summary.text()}")

    def _viewed_run(self) -> Path | None:
        item = self.run_list.currentItem()
        return Path(item.data(QtCore.Qt.ItemDataRole.UserRole)) if item else None

    def _continue_run(self, item: QtWidgets.QListWidgetItem) -> None:
        if not self.is_running():
            self.out_edit.setText(item.data(QtCore.Qt.ItemDataRole.UserRole))
            self.resume.setChecked(True)

    def _show_run(self, keep_grid: bool = False, select_grid: Path | None = None) -> None:
        """Load the viewed run's grids (showing the latest, or ``select_grid``) and checkpoints."""
        run = self._viewed_run()
        current = self.grids[self.grid_slider.value()].path if keep_grid and self.grids else None
        self.grids = runs.list_grids(run) if run else []
        self._fill_checkpoints(run)
        paths = [g.path.resolve() for g in self.grids]
        want = select_grid or current
        index = paths.index(want) if want in paths else len(paths) - 1
        self.grid_slider.blockSignals(True)
        self.grid_slider.setRange(0, max(0, len(paths) - 1))
        self.grid_slider.setValue(max(0, index))
        self.grid_slider.setEnabled(len(paths) > 1)
        self.grid_slider.blockSignals(False)
        self._show_grid(max(0, index))
        self.sample_btn.setEnabled(self.ckpt.count() > 0 and not self.sampler.is_running())
        self.toggle_weights_btn.setEnabled(self.sample_btn.isEnabled())

    def _fill_checkpoints(self, run: Path | None) -> None:
        self.ckpt.clear()
        for step in runs.checkpoint_steps(run) if run else []:
            self.ckpt.addItem(str(step), step)
        self.ckpt.setCurrentIndex(self.ckpt.count() - 1)

    def _show_grid(self, index: int) -> None:
        if not self.grids:
            self.grid_label.setText("no sample grids yet")
            self.image.clear()
            self._set_chain(None)
            return
        grid = self.grids[index]
        self.grid_label.setText(f"{grid.label}  ({index + 1}/{len(self.grids)})")
        self._set_chain(grid.chain)
        self._show_image(runs.read_image(grid.path))

    def _set_chain(self, path: Path | None) -> None:
        key = (path, path.stat().st_mtime_ns) if path else None    # re-sampling rewrites it
        if key != self._chain_key:
            self.chain = runs.load_chain(path) if path else None
            self._chain_key = key
        n = len(self.chain.grids) if self.chain else 0
        self.chain_slider.blockSignals(True)
        self.chain_slider.setRange(0, max(0, n - 1))
        self.chain_slider.setValue(max(0, n - 1))       # x_0: the grid itself
        self.chain_slider.blockSignals(False)
        self.chain_slider.setEnabled(n > 1)
        self.chain_label.setText(f"chain: {self.chain.labels[-1]}" if n else "no chain recorded")

    def _show_chain_frame(self, index: int) -> None:
        if self.chain is not None:
            self.chain_label.setText(f"chain: {self.chain.labels[index]}  ({index + 1}/"
                                     f"{len(self.chain.grids)})")
            self._show_image(self.chain.grids[index])

    def _show_image(self, rgb: np.ndarray) -> None:
        new_shape = self.image.image is None or self.image.image.shape != rgb.shape
        self.image.setImage(rgb, autoLevels=False, levels=(0, 255))
        if new_shape:
            self.view_box.autoRange(padding=0.01)

    def shown_grid(self) -> runs.Grid | None:
        return self.grids[self.grid_slider.value()] if self.grids else None

    # ------------------------------------------------------------------ sampling process
    def sample_from_checkpoint(self) -> bool:
        run, step = self._viewed_run(), self.ckpt.currentData()
        if run is None or step is None or self.sampler.is_running():
            return False
        self.clear_error()
        self.sampler.start(runs.sample_args(run, step, self.n_samples.value(),
                                            self.sampler_kind.currentData(), self.frames.value(),
                                            self.weights.currentData()))
        self.sample_btn.setEnabled(False)
        self.toggle_weights_btn.setEnabled(False)
        self.sample_btn.setText("Sampling …")
        return True

    def toggle_weights(self) -> bool:
        """Show the shown grid's counterpart with the other weights (EMA <-> raw) for the same
        checkpoint, sampler and seed; draw it first when it is not there. False if nothing to do."""
        grid = self.shown_grid()
        if grid is None or grid.path.parent.name != layout.DRAWN:
            # a training grid (EMA): draw the raw counterpart at the nearest checkpoint as set up
            self.weights.setCurrentIndex(self.weights.findData("raw"))
            return self.sample_from_checkpoint()
        other = runs.counterpart(grid)
        if other.is_file():
            self._show_run(select_grid=other.resolve())
            return True
        self.ckpt.setCurrentIndex(self.ckpt.findData(grid.step))
        self.sampler_kind.setCurrentIndex(
            max(0, self.sampler_kind.findData("" if grid.sampler == "default" else grid.sampler)))
        self.weights.setCurrentIndex(self.weights.findData("raw" if grid.weights == "ema" else "ema"))
        return self.sample_from_checkpoint()

    def _on_sample_finished(self, code: int, stopped: bool) -> None:
        self.sample_btn.setText("Sample from checkpoint")
        reply = runs.last_json_line(self.sampler.stdout) if code == 0 else None
        if reply and "grid" in reply:
            self._show_run(select_grid=Path(reply["grid"]).resolve())
        else:
            self._show_run(keep_grid=True)
            if not stopped:
                self.show_error(f"Sampling failed: {runs.error_message(self.sampler.stderr)}")
