"""Main window: one tab per view, menus, shortcuts, status bar, export and sessions.

Tabs are registered in `MainWindow.VIEWS` (key, a class that takes the AppState): Density, Training,
Score field, Samplers, Sampler lab, Image runs, Experiments, Learned density and History; adding a tab
is one entry there. A view draws and hands its computations to trainers (trainers.studies, the method
and sampler registries) through the threads in explorer.workers. A view may define `export_target()`
(the widget an export grabs) and `title`; every view has `shutdown()`, which ends its threads, timers
and processes when the window closes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from PySide6 import QtCore, QtGui, QtWidgets

from trainers.atomic import atomic_torch_save
from trainers.studies.experiments import EXPERIMENTS

from .state import AppState
from .views.density import DensityView
from .views.experiments import ExperimentsView
from .views.history import HistoryView
from .views.lab import LabView
from .views.learned_density import LearnedDensityView
from .views.sampler import SamplerView
from .views.score_field import ScoreFieldView
from .views.image_runs import ImageRunsView
from .views.training import TrainingView


class MainWindow(QtWidgets.QMainWindow):
    VIEWS = [("density", DensityView), ("training", TrainingView), ("score", ScoreFieldView),
             ("sampler", SamplerView), ("lab", LabView), ("image_runs", ImageRunsView),
             ("experiments", ExperimentsView), ("learned", LearnedDensityView), ("history", HistoryView)]

    def __init__(self, state: AppState | None = None):
        super().__init__()
        # The GUI thread and the training thread each get one core: torch's thread count is
        # process-wide, and intra-op parallelism on tiny 2D batches only adds contention.
        torch.set_num_threads(1)
        # A worker thread re-takes Python's GIL after each torch call; while the GUI thread runs
        # Python (drawing) it waits up to the switch interval each time: 1 ms instead of 5 ms
        # (benchmarks/bench_explorer.py --switch-interval compares the two).
        sys.setswitchinterval(0.001)
        self.state = state or AppState()
        self.setWindowTitle("Score Explorer")
        self.resize(1400, 860)
        self.tabs = QtWidgets.QTabWidget()
        self.setCentralWidget(self.tabs)
        self.views: dict[str, QtWidgets.QWidget] = {}
        self.experiments_menu: QtWidgets.QMenu | None = None     # made by _build_menus
        for key, cls in self.VIEWS:
            self.add_view(key, cls(self.state))

        sb = self.statusBar()
        self.train_status = QtWidgets.QLabel("training: idle")
        self.sampler_status = QtWidgets.QLabel("sampler: idle")
        sb.addPermanentWidget(self.sampler_status)
        sb.addPermanentWidget(self.train_status)
        self.state.status.connect(self._on_status)
        self.views["training"].runningChanged.connect(self._on_training_running)
        self.views["training"].progressed.connect(self._on_training_progress)
        # an image run started from the app pauses live training unless the Training tab says not
        self.views["image_runs"].runningChanged.connect(self.views["training"].set_image_run_active)
        self.views["sampler"].playingChanged.connect(
            lambda on: self.sampler_status.setText("sampler: playing" if on else "sampler: paused"))
        self._build_menus()
        self.state.retrainRequested.connect(self.retrain)
        # bare-key shortcuts (Space, ←, →) yield to a focused input; the wheel changes only focused ones
        self.installEventFilter(FocusedInputKeys(self))
        guard_wheel(self)
        self._saved_model = None          # the model last written to or read from a session file
        sb.showMessage(f"Density: {self.state.density.name} — paint on the Density tab, train on the "
                       "Training tab, compare fields and run the samplers.", 8000)

    def add_view(self, key: str, view: QtWidgets.QWidget):
        self.views[key] = view
        self.tabs.addTab(view, getattr(view, "title", key))

    # ------------------------------------------------------------------ menus and shortcuts
    def _action(self, menu, text, slot, shortcut=None, tip=""):
        a = QtGui.QAction(text, self)
        if shortcut:
            a.setShortcut(QtGui.QKeySequence(shortcut))
            a.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        a.setStatusTip(tip)
        a.setToolTip(tip)
        a.triggered.connect(slot)
        menu.addAction(a)
        self.addAction(a)
        return a

    def _build_menus(self):
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._action(f, "Open session…", lambda: self.load_session(), "Ctrl+O",
                     "Restore density, settings and model weights from a .pt session file")
        self._action(f, "Save session…", lambda: self.save_session(), "Ctrl+S",
                     "Save density, settings and model weights to one file")
        f.addSeparator()
        self._action(f, "Export view as PNG…", lambda: self.export_view(fmt="png"), "Ctrl+E",
                     "Save the current tab's plot as a PNG image")
        self._action(f, "Export view as SVG…", lambda: self.export_view(fmt="svg"), None,
                     "Save the current tab's plot as an SVG drawing")
        self._action(f, "Export chains as GIF…", lambda: self.export_gif(), "Ctrl+G",
                     "Animate the recorded sampler chains into a GIF")
        f.addSeparator()
        self._action(f, "Quit", self.close, "Ctrl+Q")
        e = mb.addMenu("&Edit")
        d = self.views["density"]
        self._action(e, "Undo density change", self.state.undo, "Ctrl+Z")
        self._action(e, "Redo density change", self.state.redo, "Ctrl+Shift+Z")
        r = mb.addMenu("&Run")
        self._action(r, "Start / pause training", self.views["training"].toggle, "Ctrl+Return")
        self._action(r, "Play / pause sampler", self.play_pause, "Space")
        self._action(r, "Step sampler forward", lambda: self.views["sampler"].step(1), "Right")
        self._action(r, "Step sampler back", lambda: self.views["sampler"].step(-1), "Left")
        self._action(r, "New sampler chains", lambda: self.views["sampler"].restart(), "Ctrl+R")
        self._action(r, "Run the sampler lab", self.run_lab, "Ctrl+L",
                     "Quality vs steps: run the chosen samplers at every NFE on the model and the exact score")
        x = self.experiments_menu = mb.addMenu("E&xperiments")
        for e in EXPERIMENTS.values():
            self._action(x, e.title, lambda _=False, name=e.name: self.open_experiment(name), None,
                         f"{e.name}: {e.claim}")
        v = mb.addMenu("&View")
        for i, (key, _) in enumerate(self.VIEWS):
            self._action(v, self.views[key].title, lambda _=False, i=i: self.tabs.setCurrentIndex(i), f"Ctrl+{i + 1}")
        del d

    def play_pause(self):
        sv = self.views["sampler"]
        if self.tabs.currentWidget() is not sv:
            self.tabs.setCurrentWidget(sv)
        sv.toggle_play()

    def retrain(self):
        """Train a fresh model on the current density with the Training tab's settings (a view's
        Retrain button under a stale-model banner); the current tab stays shown."""
        self.views["training"].start(fresh=True)

    def open_experiment(self, name: str):
        """Show the Experiments tab with experiment `name` selected (Run starts it)."""
        self.views["experiments"].select(name)
        self.tabs.setCurrentWidget(self.views["experiments"])

    def run_lab(self):
        self.tabs.setCurrentWidget(self.views["lab"])
        self.views["lab"].run()

    # ------------------------------------------------------------------ status
    @QtCore.Slot(str)
    def _on_status(self, msg: str):
        from .views.parts.common import fit_status        # elided beside the permanent texts, in full as a tooltip

        self.statusBar().showMessage(fit_status(self.statusBar(), msg, (self.sampler_status, self.train_status)),
                                     10000)

    def _on_training_progress(self, d: dict):
        self.train_status.setText(f"Training {d['objective']}: step {d['step']}, loss {d['loss']:.4g}")

    def _on_training_running(self, on: bool):
        if not on:
            why = getattr(self.views["training"], "stop_reason", "")
            self.train_status.setText(f"training: stopped at step {self.state.model_step}"
                                      + (f" ({why})" if why else ""))

    # ------------------------------------------------------------------ export
    def current_export_target(self) -> QtWidgets.QWidget:
        view = self.tabs.currentWidget()
        return view.export_target() if hasattr(view, "export_target") else view

    def export_view(self, path: str | None = None, fmt: str = "png") -> str | None:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export view", f"view.{fmt}",
                                                            "PNG image (*.png);;SVG drawing (*.svg)")
            if not path:
                return None
        target = self.current_export_target()
        try:
            if path.lower().endswith(".svg"):
                save_svg(target, path)
            elif not target.grab().save(path):
                raise OSError(f"could not write {path}")
        except Exception as e:
            QtWidgets.QMessageBox.critical(self, "Export failed", str(e))
            return None
        self.statusBar().showMessage(f"Exported {path}", 5000)
        return path

    def export_gif(self, path: str | None = None, max_frames: int = 60) -> str | None:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export chains as GIF", "chains.gif", "GIF (*.gif)")
            if not path:
                return None
        self.statusBar().showMessage("Rendering GIF…")
        try:
            n = self.views["sampler"].export_gif(path, max_frames=max_frames)
        except Exception as e:
            QtWidgets.QMessageBox.critical(self, "GIF export failed", str(e))
            return None
        self.statusBar().showMessage(f"Saved {n} frames to {path}", 5000)
        return path

    # ------------------------------------------------------------------ sessions
    def save_session(self, path: str | None = None) -> str | None:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save session", "session.pt", "Session (*.pt)")
            if not path:
                return None
        try:
            atomic_torch_save(self.state.to_session(), path)
        except OSError as e:
            QtWidgets.QMessageBox.critical(self, "Could not save session", str(e))
            return None
        self._saved_model = self.state.model
        self.statusBar().showMessage(f"Session saved to {path}", 5000)
        return path

    def load_session(self, path: str | None = None) -> bool:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open session", "", "Session (*.pt)")
            if not path:
                return False
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            QtWidgets.QMessageBox.critical(self, "Could not open session", f"{path}:\n{e}")
            return False
        training = self.views["training"]
        training.stop()
        try:
            self.state.restore_session(d)
        except Exception as e:
            QtWidgets.QMessageBox.critical(self, "Could not open session",
                                           f"{path}:\n{e}\nThe current session is unchanged.")
            return False
        training.session_restored()
        self._saved_model = self.state.model
        self.views["sampler"].sync_widgets()
        self.statusBar().showMessage(f"Session restored from {Path(path).name}", 5000)
        return True

    # ------------------------------------------------------------------ demo / screenshots
    def run_demo(self, train_steps: int = 400, timeout_s: float = 120.0, lab: bool = False,
                 experiment: str | None = None, learned: bool = False):
        """Train a few hundred steps (in the worker), then compute all sampler chains (and, with
        `lab`, a small quality-vs-steps lab; with `experiment`, run that guided experiment; with
        `learned`, the learned density of the trained model)."""
        training = self.views["training"]
        training.start(max_steps=train_steps, fresh=True)
        app = QtWidgets.QApplication.instance()
        loop = QtCore.QEventLoop()
        training.worker.finished.connect(loop.quit)
        QtCore.QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        if training.is_running():
            loop.exec()
        app.processEvents()
        sampler = self.views["sampler"]
        sampler.restart()
        sampler.wait_for(sampler.n_frames, timeout_s)
        sampler.show_frame(sampler.n_frames)
        self.views["score"].recompute()
        if lab:
            self.views["lab"].run_demo(timeout_s)
        if experiment:
            self.views["experiments"].run_demo(experiment, timeout_s)
        if learned:
            self.views["learned"].run_demo(timeout_s)

    def save_screenshot(self, path: str, tab: str | None = None) -> str:
        if tab is not None:
            self.tabs.setCurrentWidget(self.views[tab])
            if hasattr(self.views[tab], "settle"):          # a tab that computes its pictures when shown
                self.views[tab].settle()
        app = QtWidgets.QApplication.instance()
        for _ in range(3):
            app.processEvents()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if not self.grab().save(str(path)):
            raise OSError(f"could not save screenshot to {path}")
        return str(path)

    def unsaved_model(self) -> bool:
        """Would closing lose a trained model (one not written to, nor read from, a session file)?"""
        return self.state.model is not None and self.state.model is not self._saved_model

    def ask_save_choice(self) -> str:
        """Asked on quit with an unsaved trained model: "save", "discard" or "cancel". On the offscreen
        platform nobody can answer a dialog: "discard" (tests inject their answer by replacing this)."""
        if QtGui.QGuiApplication.platformName() == "offscreen":
            return "discard"
        box = self.save_question()
        box.exec()
        return box.property("choice") or "cancel"

    def save_question(self) -> QtWidgets.QMessageBox:
        """The "Save session?" box; after exec its property "choice" is save, discard or cancel."""
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Icon.Question)
        box.setWindowTitle("Save session?")
        box.setText(f"The trained model (step {self.state.model_step}) is not saved.")
        box.setInformativeText("Save the session (density, settings and weights) before quitting?")
        buttons = {box.addButton(QtWidgets.QMessageBox.StandardButton.Save): "save",
                   box.addButton(QtWidgets.QMessageBox.StandardButton.Discard): "discard",
                   box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel): "cancel"}
        box.setDefaultButton(QtWidgets.QMessageBox.StandardButton.Save)
        box.buttonClicked.connect(lambda b: box.setProperty("choice", buttons.get(b, "cancel")))
        return box

    def closeEvent(self, ev):
        if self.unsaved_model():
            choice = self.ask_save_choice()
            if choice == "cancel" or (choice == "save" and self.save_session() is None):
                ev.ignore()
                return
        runs_tab = self.views.get("image_runs")
        if runs_tab is not None and runs_tab.is_running():
            # keep the image run going in the background, or stop it with a checkpoint
            if not runs_tab.close_with(runs_tab.ask_close_choice()):
                ev.ignore()
                return
        for view in self.views.values():
            view.shutdown()
        super().closeEvent(ev)


# Inputs that keep the bare keys bound to window shortcuts while they have the focus (an editable combo
# box counts as a text input; a plain one and the tab bar leave ← → to the sampler).
_TEXT_INPUTS = (QtWidgets.QLineEdit, QtWidgets.QTextEdit, QtWidgets.QPlainTextEdit, QtWidgets.QAbstractSpinBox)
_ARROW_INPUTS = (*_TEXT_INPUTS, QtWidgets.QAbstractSlider, QtWidgets.QAbstractItemView)
# Space toggles a focused checkbox; a focused push button (Play, New chains…) leaves it to play / pause.
_SPACE_INPUTS = (*_TEXT_INPUTS, QtWidgets.QCheckBox, QtWidgets.QRadioButton, QtWidgets.QComboBox,
                 QtWidgets.QAbstractItemView)
_BARE_KEYS = {QtCore.Qt.Key.Key_Left: _ARROW_INPUTS, QtCore.Qt.Key.Key_Right: _ARROW_INPUTS,
              QtCore.Qt.Key.Key_Space: _SPACE_INPUTS}


class FocusedInputKeys(QtCore.QObject):
    """Event filter on the main window: a bare key that is also a window shortcut (Space plays the
    sampler, ← → step it) goes to the focused input that uses it instead (a slider moves with →, Space
    toggles a checkbox). The window sees the key's ShortcutOverride when the focused
    widget left it unclaimed; claiming it here sends the key to that widget instead of the shortcut."""

    def eventFilter(self, obj, ev):
        bare = (QtCore.Qt.KeyboardModifier.NoModifier, QtCore.Qt.KeyboardModifier.KeypadModifier)
        if ev.type() == QtCore.QEvent.Type.ShortcutOverride and ev.modifiers() in bare:
            kinds = _BARE_KEYS.get(QtCore.Qt.Key(ev.key()))
            focus = QtWidgets.QApplication.focusWidget()
            editable = isinstance(focus, QtWidgets.QComboBox) and focus.isEditable()
            if kinds and (isinstance(focus, kinds) or editable) and focus.isEnabled():
                ev.accept()
                return True
        return False


_WHEEL_INPUTS = (QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox, QtWidgets.QAbstractSlider)


def _wheel_input(w) -> bool:
    return isinstance(w, _WHEEL_INPUTS) and not isinstance(w, QtWidgets.QScrollBar)


class WheelNeedsFocus(QtCore.QObject):
    """Application event filter: a spin box, combo box or slider (not a scroll bar) ignores the wheel
    unless it has the focus, so scrolling a side panel never changes a setting under the pointer: the
    wheel goes to the scroll area around it (sent there, as Qt does not pass a synthetic wheel event on
    to the parents). Each such widget also gets StrongFocus when it is polished (Qt's WheelFocus would
    let the wheel itself give it the focus), so widgets a view makes later are covered too."""

    def eventFilter(self, obj, ev):
        t = ev.type()
        if t == QtCore.QEvent.Type.Polish:
            if _wheel_input(obj) and obj.focusPolicy() == QtCore.Qt.FocusPolicy.WheelFocus:
                obj.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
            return False
        if t != QtCore.QEvent.Type.Wheel or not _wheel_input(obj) or obj.hasFocus():
            return False
        area = obj.parentWidget()
        while area is not None and not isinstance(area, QtWidgets.QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            QtWidgets.QApplication.sendEvent(area.viewport(), ev)
            ev.accept()
        else:
            ev.ignore()                  # a real wheel event goes on to the parents
        return True


def guard_wheel(root: QtWidgets.QWidget) -> None:
    """Install the one WheelNeedsFocus filter of the application (once, whatever the number of windows)
    and give the spin boxes, combo boxes and sliders already under `root` a focus policy that a wheel
    turn does not take (StrongFocus: click or Tab)."""
    app = QtWidgets.QApplication.instance()
    if app.findChild(WheelNeedsFocus, "explorer-wheel-guard") is None:
        guard = WheelNeedsFocus(app)
        guard.setObjectName("explorer-wheel-guard")
        app.installEventFilter(guard)
    for w in root.findChildren(QtWidgets.QWidget):
        if _wheel_input(w):
            w.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)


def save_svg(widget: QtWidgets.QWidget, path: str) -> None:
    """Vector export through Qt's SVG paint device. (pyqtgraph 0.14's SVGExporter fails on
    Qt 6.12's path output with "not enough values to unpack", so it is not used.)"""
    from PySide6.QtSvg import QSvgGenerator

    gen = QSvgGenerator()
    gen.setFileName(str(path))
    gen.setSize(widget.size())
    gen.setViewBox(QtCore.QRect(0, 0, widget.width(), widget.height()))
    gen.setTitle("Score Explorer")
    painter = QtGui.QPainter(gen)
    try:
        widget.render(painter)
    finally:
        painter.end()
    if not Path(path).exists():
        raise OSError(f"could not write {path}")


def offscreen_if_headless(force: bool = False):
    """Select Qt's offscreen platform when there is no display (must run before QApplication)."""
    if force or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
