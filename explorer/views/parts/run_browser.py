"""The run browser of the Image-runs tab: the run folders under a root (status, last step, last
loss), the selection of runs whose loss curves are overlaid, and one run's checkpoints, sample
grids and recorded chains; for a class-conditional run (its config's ``model.n_classes`` > 0, read
by ``trainers.image.runs.run_classes``) the class and guidance weight w to sample with.

It reads run folders through ``explorer.runs`` and launches nothing: it asks its owner through
signals carrying data (``sampleRequested`` with a ``SampleRequest``; ``runActivated`` with a run
folder; ``selectionChanged`` with the selected run folders; ``viewedRunChanged`` with the run now
viewed, or None), and is told what the owner is doing
through ``set_live_run``, ``show_live_summary``, ``set_sampling`` and ``reload_run``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from trainers.image import run_layout as layout
from trainers.image import runs as run_files

from ... import runs
from . import common

PATH_ROLE = QtCore.Qt.ItemDataRole.UserRole     # a run list item's run folder (str)

TIP = {
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
               f"Default: DDIM with {runs.FAST_NFE} steps, seconds on a CPU.\n"
               "run's own: the full sampler the run was trained for, ancestral DDPM (T network evaluations "
               "per sample, about 20x slower) for DDPM runs, annealed Langevin for NCSN runs.\n"
               "Outside the model's trained noise range the log shows a note.",
    "frames": "Record about this many frames of the chain x_T -> x_0 (0: no chain).",
    "class": "Class to draw, for class-conditional runs (model.n_classes > 0 in the run's config; "
             "otherwise disabled). unconditional: the null class, the model's s(x). Passed as "
             "--class K; the grid's file name carries the class and w.",
    "guidance": "Classifier-free guidance weight w: the sampler follows the guided score "
                "(1+w) s(x|c) − w s(x).\nw = 0: the conditional model s(x|c) itself; w > 0 pushes "
                "towards the class (less diversity); w = −1: the unconditional model.\n"
                "Needs a class (disabled for unconditional). Passed as --guidance W.",
    "weights": "Draw from the checkpoint's EMA weights (the average the training grids use) or "
               "its raw training weights.",
    "side_by_side": "Show the newest grid of every selected run (Ctrl/Shift+click for several) next to "
                    "each other, in list order; click a run to go back to its own grids.",
    "toggle_weights": "Show the same checkpoint, sampler and seed with the other weights "
                      "(EMA ⇄ raw); drawn first if it is not there yet.",
    "sample": "Draw a grid from the chosen checkpoint's EMA (or raw) weights in a separate "
              f"process (saved under <run>/{layout.DRAWN}/) and show it.",
}
SAMPLE_TEXT = "Sample from checkpoint"
UNCONDITIONAL = -1          # the class combo's data for "unconditional" (the null class)


@dataclass(frozen=True)
class SampleRequest:
    """A grid to draw from checkpoint ``step`` of ``run``; sampler "" is the run's default; ``label``
    the class (None: unconditional) and ``guidance`` its CFG weight w ((1+w) s(x|c) − w s(x))."""
    run: Path
    step: int
    n: int
    sampler: str
    frames: int
    weights: str
    nfe: int | None = None        # network evaluations per sample (None: the sampler's default)
    label: int | None = None      # the class (conditional runs), None: unconditional
    guidance: float = 0.0         # CFG weight w (needs a class)

    def args(self) -> list[str]:
        """The trainer CLI's ``sample`` arguments (``runs.sample_args``)."""
        return runs.sample_args(self.run, self.step, self.n, self.sampler, self.frames,
                                self.weights, self.nfe, self.label, self.guidance)


class RunBrowser(QtWidgets.QGroupBox):
    """Runs root and run list (top), the viewed run's grid viewer, checkpoint and sampling row."""

    selectionChanged = QtCore.Signal(list)      # the selected run folders (Path), list order
    runActivated = QtCore.Signal(object)        # a double-clicked run folder (Path)
    sampleRequested = QtCore.Signal(object)     # SampleRequest
    viewedRunChanged = QtCore.Signal(object)    # the viewed run folder (Path) or None

    def __init__(self, runs_root: str | Path | None = None,
                 parent: QtWidgets.QWidget | None = None):
        super().__init__("Samples", parent)
        self.grids: list[run_files.Grid] = []
        self.chain: run_files.ChainFrames | None = None
        self.chain_key: tuple | None = None       # (path, mtime) of the loaded chain
        self.live_run: Path | None = None         # the run the owner is training now
        self.sampling = False                     # the owner is drawing a grid
        self.shown_run: Path | None = None        # the run whose grids are loaded
        self.root_edit = common.tip(QtWidgets.QLineEdit(), TIP["root"])
        self.root_edit.setText(str(Path(runs_root) if runs_root else Path.cwd() / "runs"))
        self.browse_root_btn = common.tip(QtWidgets.QToolButton(), TIP["browse_root"])
        self.browse_root_btn.setText("…")
        self.refresh_btn = common.tip(QtWidgets.QPushButton("Refresh"), TIP["refresh"])
        self.run_list = common.tip(QtWidgets.QListWidget(), TIP["run_list"])
        self.run_list.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.run_list.setMaximumHeight(110)
        self.grid_slider, self.grid_label = _slider_with_label(TIP["grid_slider"])
        self.grid_label.setWordWrap(True)           # a conditional grid's label (class, w) takes two lines
        self.image_view = common.tip(pg.GraphicsLayoutWidget(), TIP["image"])
        self.view_box = self.image_view.addViewBox(lockAspect=True, invertY=True)
        self.image = pg.ImageItem()
        self.view_box.addItem(self.image)
        self.chain_slider, self.chain_label = _slider_with_label(TIP["chain_slider"])
        self.ckpt = common.tip(QtWidgets.QComboBox(), TIP["ckpt"])
        self.n_samples = common.spin(1, 1024, 64, tooltip=TIP["n"])
        self.sampler_kind = common.combo(runs.sampler_choices(), runs.FAST_SAMPLER, TIP["sampler"])
        self.frames = common.spin(0, 500, 50, tooltip=TIP["frames"])
        self.weights = common.combo([("ema", "EMA"), ("raw", "raw")], "ema", TIP["weights"])
        self.class_choice = common.combo([(UNCONDITIONAL, "unconditional")], UNCONDITIONAL, TIP["class"])
        self.guidance = common.spin(-1.0, 20.0, 0.0, step=0.5, decimals=2, tooltip=TIP["guidance"])
        self.run_classes: list[str] = []          # the viewed run's class names ([]: unconditional)
        self.sample_btn = common.tip(QtWidgets.QPushButton(SAMPLE_TEXT), TIP["sample"])
        self.toggle_weights_btn = common.tip(QtWidgets.QPushButton("EMA ⇄ raw"),
                                             TIP["toggle_weights"])
        self.side_by_side_btn = common.tip(QtWidgets.QPushButton("Newest grids side by side"),
                                           TIP["side_by_side"])
        self.side_by_side_btn.setEnabled(False)
        self.compared: list[tuple[Path, run_files.Grid]] = []    # (run, its newest grid) shown side by side
        self._lay_out()
        self._connect()

    def _lay_out(self) -> None:
        v = QtWidgets.QVBoxLayout(self)
        root_row = QtWidgets.QHBoxLayout()
        root_row.setContentsMargins(0, 0, 0, 0)
        for w, stretch in ((self.root_edit, 1), (self.browse_root_btn, 0), (self.refresh_btn, 0)):
            root_row.addWidget(w, stretch)
        v.addLayout(root_row)
        v.addWidget(self.run_list)
        v.addLayout(_row(self.grid_slider, self.grid_label, self.side_by_side_btn))
        v.addWidget(self.image_view, 1)
        v.addLayout(_row(self.chain_slider, self.chain_label))
        # short rows, so that the column fits beside the run panel and the plots at 1280 px
        for row_items in ([("ckpt", self.ckpt), ("n", self.n_samples), ("", self.sampler_kind)],
                          [("class", self.class_choice), ("w", self.guidance)],
                          [("", self.weights), ("chain frames", self.frames), ("", self.sample_btn),
                           ("", self.toggle_weights_btn)]):
            sample_row = QtWidgets.QHBoxLayout()
            for label, w in row_items:
                if label:
                    sample_row.addWidget(common.tip(QtWidgets.QLabel(label), w.toolTip()))
                sample_row.addWidget(w, 1 if w is self.sampler_kind else 0)
            if self.class_choice in [w for _, w in row_items]:
                sample_row.addStretch(1)
            v.addLayout(sample_row)

    def _connect(self) -> None:
        self.browse_root_btn.clicked.connect(self._pick_root)
        self.refresh_btn.clicked.connect(lambda: self.refresh())
        self.root_edit.editingFinished.connect(lambda: self.refresh())
        self.run_list.currentItemChanged.connect(lambda *_: self.show_run())
        self.run_list.itemSelectionChanged.connect(
            lambda: self.selectionChanged.emit(self.selected_runs()))
        self.run_list.itemSelectionChanged.connect(
            lambda: self.side_by_side_btn.setEnabled(len(self.selected_runs()) > 1))
        self.side_by_side_btn.clicked.connect(self.show_side_by_side)
        self.run_list.itemDoubleClicked.connect(
            lambda item: self.runActivated.emit(Path(item.data(PATH_ROLE))))
        self.grid_slider.valueChanged.connect(self._show_grid)
        self.chain_slider.valueChanged.connect(self._show_chain_frame)
        self.sample_btn.clicked.connect(self.sample_from_checkpoint)
        self.toggle_weights_btn.clicked.connect(self.toggle_weights)
        self.class_choice.currentIndexChanged.connect(lambda _: self._enable_condition())

    def _pick_root(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Runs root folder",
                                                          self.root_edit.text())
        if path:
            self.root_edit.setText(path)
            self.refresh()

    # ------------------------------------------------------------------ runs
    def runs_root(self) -> Path:
        return Path(self.root_edit.text().strip() or "runs").expanduser().resolve()

    def refresh(self, select: Path | None = None) -> None:
        """Re-list the runs under the root; keep (or move to) the viewed run. Emits
        ``selectionChanged`` with the (kept) selection."""
        keep = select or self.viewed_run()
        selected = {p.resolve() for p in self.selected_runs()}
        self.run_list.blockSignals(True)
        self.run_list.clear()
        for path in run_files.list_runs(self.runs_root()):
            live = self.live_run is not None and path.resolve() == self.live_run.resolve()
            summary = run_files.run_summary(path, live=live)
            item = QtWidgets.QListWidgetItem(f"{path.name} — {summary.text()}")
            item.setData(PATH_ROLE, str(path))
            item.setToolTip(f"{path}\n{summary.text()}")
            self.run_list.addItem(item)
            if keep is not None and path.resolve() == Path(keep).resolve():
                self.run_list.setCurrentItem(item)
            elif path.resolve() in selected:
                item.setSelected(True)
        if self.run_list.currentRow() < 0 and self.run_list.count():
            self.run_list.setCurrentRow(0)
        self.run_list.blockSignals(False)
        self.show_run()
        self.selectionChanged.emit(self.selected_runs())

    def run_names(self) -> list[str]:
        """The run folders' names, in list order."""
        return [Path(self.run_list.item(i).data(PATH_ROLE)).name
                for i in range(self.run_list.count())]

    def selected_runs(self) -> list[Path]:
        return [Path(item.data(PATH_ROLE)) for item in self.run_list.selectedItems()]

    def viewed_run(self) -> Path | None:
        item = self.run_list.currentItem()
        return Path(item.data(PATH_ROLE)) if item else None

    def set_live_run(self, run: Path | None) -> None:
        """The run being trained now (listed as running), or None."""
        self.live_run = Path(run) if run is not None else None

    def show_live_summary(self, summary: run_files.RunSummary) -> None:
        """Update the live run's line in the list (no re-reading of its folder)."""
        if self.live_run is None:
            return
        for i in range(self.run_list.count()):
            item = self.run_list.item(i)
            if Path(item.data(PATH_ROLE)).resolve() == self.live_run.resolve():
                item.setText(f"{self.live_run.name} — {summary.text()}")

    def reload_run(self, run: Path, keep_grid: bool = False) -> None:
        """``run`` has new grids or checkpoints: reload them if it is the viewed run."""
        viewed = self.viewed_run()
        if viewed is not None and viewed.resolve() == Path(run).resolve():
            self.show_run(keep_grid=keep_grid)

    # ------------------------------------------------------------------ grids and chains
    def show_run(self, keep_grid: bool = False, select_grid: Path | None = None) -> None:
        """Load the viewed run's grids (showing the latest, ``select_grid``, or with
        ``keep_grid`` the one shown now) and checkpoints."""
        run = self.viewed_run()
        if run != self.shown_run:
            self.shown_run = run
            self.viewedRunChanged.emit(run)
        current = self.grids[self.grid_slider.value()].path if keep_grid and self.grids else None
        self.grids = run_files.list_grids(run) if run else []
        self._fill_checkpoints(run)
        self._fill_classes(run)
        paths = [g.path.resolve() for g in self.grids]
        want = select_grid or current
        index = paths.index(want) if want in paths else len(paths) - 1
        self.grid_slider.blockSignals(True)
        self.grid_slider.setRange(0, max(0, len(paths) - 1))
        self.grid_slider.setValue(max(0, index))
        self.grid_slider.setEnabled(len(paths) > 1)
        self.grid_slider.blockSignals(False)
        self._show_grid(max(0, index))
        self._enable_sampling()

    def show_side_by_side(self) -> list[tuple[Path, run_files.Grid]]:
        """Show the newest grid of each selected run that has one, next to each other (list order)."""
        order = {p: i for i, p in enumerate(Path(self.run_list.item(i).data(PATH_ROLE))
                                            for i in range(self.run_list.count()))}
        self.compared = []
        for run in sorted(self.selected_runs(), key=lambda p: order.get(p, 0)):
            grids = run_files.list_grids(run)
            if grids:
                self.compared.append((run, grids[-1]))
        if not self.compared:
            self.grid_label.setText("no sample grids in the selected runs")
            return []
        self._set_chain(None)
        self.grid_label.setText("newest grids: " + " | ".join(f"{run.name} ({g.label})"
                                                               for run, g in self.compared))
        self._show_image(runs.side_by_side([run_files.read_image(g.path) for _, g in self.compared]))
        return self.compared

    def shown_grid(self) -> run_files.Grid | None:
        return self.grids[self.grid_slider.value()] if self.grids else None

    def _fill_checkpoints(self, run: Path | None) -> None:
        self.ckpt.clear()
        for step in run_files.checkpoint_steps(run) if run else []:
            self.ckpt.addItem(str(step), step)
        self.ckpt.setCurrentIndex(self.ckpt.count() - 1)

    def _fill_classes(self, run: Path | None) -> None:
        """The class choices of the viewed run (its config's model.n_classes); the choice is kept
        while the run's classes stay the same."""
        names = run_files.run_classes(run) if run else []
        if names != self.run_classes:
            self.run_classes = names
            self.class_choice.blockSignals(True)
            self.class_choice.clear()
            self.class_choice.addItem("unconditional", UNCONDITIONAL)
            for k, name in enumerate(names):
                self.class_choice.addItem(name if name == str(k) else f"{k}: {name}", k)
            self.class_choice.blockSignals(False)
        self._enable_condition()

    def chosen_class(self) -> tuple[int | None, float]:
        """(class, w) as set up: (None, 0.0) for an unconditional choice or run."""
        k = self.class_choice.currentData()
        if not self.run_classes or k is None or k == UNCONDITIONAL:
            return None, 0.0
        return int(k), float(self.guidance.value())

    def _enable_condition(self) -> None:
        """Class and w only for a conditional run; w only with a class chosen."""
        self.class_choice.setEnabled(bool(self.run_classes))
        self.guidance.setEnabled(self.chosen_class()[0] is not None)

    def _show_grid(self, index: int) -> None:
        if not self.grids:
            self.grid_label.setText("no sample grids yet")
            self.image.clear()
            self._set_chain(None)
            return
        grid = self.grids[index]
        self.grid_label.setText(f"{grid.label}  ({index + 1}/{len(self.grids)})")
        self._set_chain(grid.chain)
        self._show_image(run_files.read_image(grid.path))

    def _set_chain(self, path: Path | None) -> None:
        key = (path, path.stat().st_mtime_ns) if path else None    # re-sampling rewrites it
        if key != self.chain_key:
            self.chain = run_files.load_chain(path) if path else None
            self.chain_key = key
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

    # ------------------------------------------------------------------ sampling requests
    def set_sampling(self, on: bool) -> None:
        """The owner started (True) or ended (False) drawing a grid."""
        self.sampling = on
        self.sample_btn.setText("Sampling …" if on else SAMPLE_TEXT)
        self._enable_sampling()

    def _enable_sampling(self) -> None:
        usable = self.ckpt.count() > 0 and not self.sampling
        self.sample_btn.setEnabled(usable)
        self.toggle_weights_btn.setEnabled(usable)

    def sample_from_checkpoint(self) -> bool:
        """Ask for a grid from the chosen checkpoint as set up; False if there is nothing to
        sample from or a grid is being drawn."""
        run, step = self.viewed_run(), self.ckpt.currentData()
        if run is None or step is None or self.sampling:
            return False
        sampler = self.sampler_kind.currentData()
        label, guidance = self.chosen_class()
        self.sampleRequested.emit(SampleRequest(run, step, self.n_samples.value(), sampler,
                                                self.frames.value(), self.weights.currentData(),
                                                runs.sampler_nfe(sampler), label, guidance))
        return True

    def toggle_weights(self) -> bool:
        """Show the shown grid's counterpart with the other weights (EMA <-> raw) for the same
        checkpoint, sampler and seed; ask for it first when it is not there. False if nothing to
        do."""
        grid = self.shown_grid()
        if grid is None or grid.path.parent.name != layout.DRAWN:
            # a training grid (EMA): draw the raw counterpart at the nearest checkpoint as set up
            self.weights.setCurrentIndex(self.weights.findData("raw"))
            return self.sample_from_checkpoint()
        other = run_files.counterpart(grid)
        if other.is_file():
            self.show_run(select_grid=other.resolve())
            return True
        self.ckpt.setCurrentIndex(self.ckpt.findData(grid.step))
        self.sampler_kind.setCurrentIndex(
            max(0, self.sampler_kind.findData("" if grid.sampler == "default" else grid.sampler)))
        self.weights.setCurrentIndex(self.weights.findData("raw" if grid.weights == "ema" else "ema"))
        self.class_choice.setCurrentIndex(max(0, self.class_choice.findData(
            UNCONDITIONAL if grid.class_id is None else grid.class_id)))
        self.guidance.setValue(grid.guidance)
        return self.sample_from_checkpoint()


def _slider_with_label(tip: str) -> tuple[QtWidgets.QSlider, QtWidgets.QLabel]:
    slider = common.tip(QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal), tip)
    label = common.tip(QtWidgets.QLabel("–"), tip)
    label.setMinimumWidth(190)
    return slider, label


def _row(*widgets: QtWidgets.QWidget) -> QtWidgets.QHBoxLayout:
    row = QtWidgets.QHBoxLayout()
    for i, w in enumerate(widgets):
        row.addWidget(w, 1 if i == 0 else 0)
    return row
