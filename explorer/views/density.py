"""Density tab: paint a 2D density with a brush; presets, image and JSON import/export.

Each finished stroke becomes Gaussian components (trainers.densities.from_strokes, added to the
current mixture by trainers.grid.paint); the canvas shows p(x) as a heat map with contours of the
highest-density regions holding 20/40/60/80 % of the mass.

Redraws are incremental: a stroke, an erasure, or undo/redo of one updates the cached grids with
only the changed components (trainers.grid.updated_image). Any other change of a large mixture is
recomputed on a background thread while the old picture stays up.
"""
from __future__ import annotations

import threading
import weakref
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6 import QtCore, QtWidgets

from trainers import densities
from trainers import fitting
from trainers import grid

from .parts import common

CLASS_COLOURS = ((235, 70, 70), (70, 130, 255), (70, 205, 95), (255, 165, 40))   # densities.BRUSH_CLASSES
HEAT_N = 160        # the heat map's grid; the contours are traced on it too (trainers.grid.contour_lines)
SYNC_PAIRS = 3_000_000   # full recomputations up to this many (pixel, component) pairs run inline (~10 ms)
CONTOUR_PEN = pg.mkPen(255, 255, 255, 150, width=1)
CONTOUR_SMOOTH_CELLS = 1.0   # the contours are traced on the heat grid blurred by this many cells (grid.smoothed)


class _Relay(QtCore.QObject):
    """Lives in the GUI thread for the whole session: the background recomputation posts its result
    through it (a queued call), never through a canvas that may have been closed meanwhile."""
    delivered = QtCore.Signal(object)


_RELAY: _Relay | None = None


def _relay() -> _Relay:
    global _RELAY
    if _RELAY is None:
        _RELAY = _Relay()
        _RELAY.delivered.connect(lambda deliver: deliver())
    return _RELAY


class DensityCanvas(pg.PlotWidget):
    """Plot of the density that turns left-button drags on its viewport into strokes."""

    strokeFinished = QtCore.Signal(object)   # (M, 2) array in data coordinates

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plotItem.vb.setMouseEnabled(False, False)
        self.plotItem.setMenuEnabled(False)
        self.plotItem.hideButtons()
        self.heat = common.heat_image()
        self.addItem(self.heat)
        self.contours = pg.PlotDataItem(pen=CONTOUR_PEN, connect="finite")    # all levels, NaN-separated
        self.contours.setZValue(5)
        self.addItem(self.contours)
        self.preview = pg.PlotDataItem(pen=pg.mkPen(255, 255, 255, 200, width=2))
        self.preview.setZValue(10)
        self.addItem(self.preview)
        self._points: list[tuple[float, float]] | None = None
        self.viewport().installEventFilter(self)
        self.viewport().setCursor(QtCore.Qt.CursorShape.CrossCursor)
        # what the picture shows: (density, bounds, heat grid); `_gen` numbers requests
        self._shown: tuple | None = None
        self._gen = 0
        self._thread: threading.Thread | None = None
        self.last_update = ""                  # "incremental" | "full" | "background" (for tests, benchmarks)

    def _to_data(self, pos) -> tuple[float, float]:
        p = self.plotItem.vb.mapSceneToView(self.mapToScene(pos.toPoint() if hasattr(pos, "toPoint") else pos))
        return float(p.x()), float(p.y())

    def eventFilter(self, obj, ev):
        t = ev.type()
        E = QtCore.QEvent.Type
        if t == E.MouseButtonPress and ev.button() == QtCore.Qt.MouseButton.LeftButton:
            self._points = [self._to_data(ev.position())]
            self._show_preview()
            return True
        if t == E.MouseMove and self._points is not None:
            self._points.append(self._to_data(ev.position()))
            self._show_preview()
            return True
        if t == E.MouseButtonRelease and self._points is not None and ev.button() == QtCore.Qt.MouseButton.LeftButton:
            self._points.append(self._to_data(ev.position()))
            pts = np.array(self._points)
            self._points = None
            self.preview.setData([], [])
            self.strokeFinished.emit(pts)
            return True
        return super().eventFilter(obj, ev)

    def _show_preview(self):
        pts = np.array(self._points)
        self.preview.setData(pts[:, 0], pts[:, 1])

    def clear_contours(self):
        self.contours.setData([], [])

    @property
    def busy(self) -> bool:
        """A background recomputation is under way (the picture shows the previous density)."""
        return self._thread is not None and self._thread.is_alive()

    def show_density(self, density: densities.GaussianMixture, bounds):
        self._gen += 1
        bounds = tuple(bounds)
        if self._shown is not None and self._shown[1] == bounds:
            old, _, heat = self._shown
            if old is density:
                return
            new_heat = grid.updated_image(old, heat, density, bounds, HEAT_N)
            if new_heat is not None:
                self.last_update = "incremental"
                self._draw(density, bounds, new_heat)
                return
        if density.n_components * HEAT_N ** 2 <= SYNC_PAIRS:
            self.last_update = "full"
            self._draw(density, bounds, grid.density_image(density, bounds, HEAT_N))
            return
        self.last_update = "background"
        gen = self._gen

        canvas = weakref.ref(self)
        relay = _relay()                      # made here, in the GUI thread

        def work():
            heat = grid.density_image(density, bounds, HEAT_N)

            def deliver():                    # runs in the GUI thread; a closed canvas drops the result
                c = canvas()
                if c is not None and shiboken6.isValid(c):
                    c._on_computed(gen, (density, bounds), heat)
            relay.delivered.emit(deliver)
        self._thread = threading.Thread(target=work, name="density-canvas", daemon=True)
        self._thread.start()

    def _on_computed(self, gen, what, heat):
        if gen == self._gen:                  # else a newer request superseded it
            self._draw(*what, heat)

    def _draw(self, density, bounds, heat):
        self._shown = (density, bounds, heat)
        common.set_heat(self.heat, heat, bounds)
        smooth = grid.smoothed(heat, CONTOUR_SMOOTH_CELLS)   # a plateau or a rippled slope: no tiny loops
        self.contours.setData(*grid.contour_lines(smooth, bounds, grid.contour_levels(smooth, 4)))
        common.square_plot(self.plotItem, bounds)

    def forget(self):
        """Drop the cached picture (the next show_density recomputes)."""
        self._gen += 1
        self._shown = None

    def shutdown(self, timeout_s: float = 5.0):
        """Drop a background recomputation's result and wait up to `timeout_s` for its thread (a numpy
        computation cannot be interrupted; one still running then is a daemon that only posts to the
        session-long relay; its result is dropped)."""
        self._gen += 1
        if self._thread is not None:
            self._thread.join(timeout_s)


IMAGE_HALF = 4.0     # a loaded image's longer side spans [−IMAGE_HALF, IMAGE_HALF], centred at the origin


def image_bounds(shape) -> tuple[float, float, float, float]:
    """Where an image of `shape` (rows, cols) lands: centred at the origin, its longer side spanning
    [−IMAGE_HALF, IMAGE_HALF], square pixels; the same wherever the previous density was."""
    h, w = shape
    hx, hy = IMAGE_HALF * w / max(h, w), IMAGE_HALF * h / max(h, w)
    return (-hx, hx, -hy, hy)


def image_density(gray: np.ndarray, name: str) -> densities.GaussianMixture:
    """The density of a grayscale image (1 = mass) placed by image_bounds, viewed in the square
    [−IMAGE_HALF, IMAGE_HALF]²."""
    gray = np.asarray(gray, dtype=np.float64)
    placed = densities.from_image(gray, bounds=image_bounds(gray.shape[:2]), name=name)
    square = (-IMAGE_HALF, IMAGE_HALF, -IMAGE_HALF, IMAGE_HALF)
    return densities.GaussianMixture(placed.weights.numpy(), placed.means.numpy(), placed.covs.numpy(),
                                     name=name, bounds=square)


def _components(n: int) -> str:
    return f"{n} component{'s' * (n != 1)}"


class DensityView(QtWidgets.QWidget):
    title = "Density"
    CUSTOM = ""          # the preset box's entry for a density that is not a preset

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        lay = QtWidgets.QHBoxLayout(self)
        panel, side = common.side_panel()
        lay.addWidget(panel)
        self.canvas = DensityCanvas()
        lay.addWidget(self.canvas, 1)

        box, form = common.form_group("Brush")
        self.paint_btn = QtWidgets.QRadioButton("Paint")
        self.erase_btn = QtWidgets.QRadioButton("Erase")
        self.paint_btn.setChecked(True)
        self.paint_btn.setToolTip("Drag with the left button: the stroke becomes Gaussian components of std "
                                  "size/4, spaced size/4 along its path, each of mass 'strength'.")
        self.erase_btn.setToolTip("Drag to remove every component whose centre is closer than size/2 to the stroke.")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.paint_btn)
        row.addWidget(self.erase_btn)
        form.addRow(row)
        self.size = common.spin(0.05, 5.0, 0.8, 0.05, 2, "Brush diameter in data units (the view spans the density's bounds).")
        self.strength = common.spin(0.05, 10.0, 1.0, 0.1, 2,
                               "Mass of each painted component. One preset component counts as mass 1, so "
                               "strength 2 paints twice as dense as a preset mode.")
        form.addRow("Size", self.size)
        form.addRow("Strength", self.strength)
        self.brush_class = common.combo([(-1, "none (unlabelled)")] + [(i, name) for i, name in
                                        enumerate(densities.BRUSH_CLASSES)], -1,
                                        "The class of what the brush paints (issue #22): its components carry that "
                                        "label, so the density becomes a labelled mixture p(x) = Σ_c p(c) p(x|c) for "
                                        "conditional training and guidance. none: unlabelled strokes (class 0 once "
                                        "another class is painted).")
        form.addRow("Class", self.brush_class)
        side.addWidget(box)

        box, form = common.form_group("Edit")
        self.undo_btn = QtWidgets.QPushButton("Undo")
        self.redo_btn = QtWidgets.QPushButton("Redo")
        self.undo_btn.setToolTip("Undo the last change to the density (Ctrl+Z)")
        self.redo_btn.setToolTip("Redo (Ctrl+Shift+Z)")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.undo_btn)
        row.addWidget(self.redo_btn)
        form.addRow(row)
        self.clear_btn = QtWidgets.QPushButton("Clear (start a drawing)")
        self.clear_btn.setToolTip("Start from an empty canvas: the next stroke becomes the whole density "
                                  "(the old one stays in the undo history).")
        form.addRow(self.clear_btn)
        side.addWidget(box)

        box, form = common.form_group("Presets and files")
        self.preset = common.combo([(n, n.replace("_", " ")) for n in densities.PRESET_NAMES], densities.DEFAULT_DENSITY,
                              "Built-in Gaussian mixtures; choosing one replaces the density (undo brings it back).")
        form.addRow("Preset", self.preset)
        self.load_img_btn = QtWidgets.QPushButton("Load image…")
        self.load_img_btn.setToolTip("Grayscale image → one component per lit pixel, weighted by brightness; "
                                     "its longer side spans −4 … 4, centred at the origin (whatever was "
                                     "shown before), its aspect kept.")
        self.dark_is_mass = QtWidgets.QCheckBox("Dark pixels are mass")
        self.dark_is_mass.setChecked(True)
        self.dark_is_mass.setToolTip("On: ink on white paper (dark = probability mass). Off: bright = mass.")
        self.load_json_btn = QtWidgets.QPushButton("Load density JSON…")
        self.save_json_btn = QtWidgets.QPushButton("Save density JSON…")
        self.load_json_btn.setToolTip('A {"kind": "gmm", "components": [{"weight", "mean", "cov"}…]} file; a '
                                      'malformed file is reported and the current density kept.')
        self.save_json_btn.setToolTip("Write the current mixture (normalised weights, means, covariances, view "
                                      "bounds) as density JSON, atomically; `python -m trainers.toy` reads it too.")
        for w in (self.load_img_btn, self.dark_is_mass, self.load_json_btn, self.save_json_btn):
            form.addRow(w)
        side.addWidget(box)
        self.info = QtWidgets.QLabel()
        self.info.setWordWrap(True)
        side.addWidget(self.info)
        side.addStretch(1)

        self._cleared = False
        self.canvas.strokeFinished.connect(self._on_stroke)
        self.undo_btn.clicked.connect(state.undo)
        self.redo_btn.clicked.connect(state.redo)
        self.clear_btn.clicked.connect(self.clear)
        self.preset.activated.connect(lambda i: self.preset.itemData(i) != self.CUSTOM
                                      and self.load_preset(self.preset.itemData(i)))
        self.load_img_btn.clicked.connect(lambda: self.load_image())
        self.load_json_btn.clicked.connect(lambda: self.load_json())
        self.save_json_btn.clicked.connect(lambda: self.save_json())
        state.densityChanged.connect(self.refresh)
        self.refresh()

        # the Training tab's fixed dataset (its "Fixed dataset of N points"), hidden for fresh data
        self.training_points = pg.ScatterPlotItem(size=7, pen=pg.mkPen(20, 20, 20, 220, width=1),
                                                  brush=pg.mkBrush(90, 230, 120, 230))
        self.training_points.setZValue(8)
        self.canvas.addItem(self.training_points)
        state.trainSettingsChanged.connect(self.show_training_points)
        state.densityChanged.connect(self.show_training_points)
        self.show_training_points()
        # a labelled density's components as dots in their class colours (issue #22)
        self.class_dots = pg.ScatterPlotItem(size=5, pen=None)
        self.class_dots.setZValue(7)
        self.canvas.addItem(self.class_dots)
        state.densityChanged.connect(self.show_classes)
        self.show_classes()

    # ------------------------------------------------------------------ actions
    def _on_stroke(self, pts: np.ndarray):
        label = self.brush_class.currentData()
        stroke = densities.Stroke(points=pts, width=self.size.value(), strength=self.strength.value(),
                          erase=self.erase_btn.isChecked(), label=None if label is None or label < 0 else label)
        if self._cleared and not stroke.erase:
            # first stroke after Clear: it *is* the density
            try:
                dens = densities.from_strokes([stroke], bounds=self.state.bounds)
            except densities.DensityError as e:
                self.state.status.emit(f"Stroke ignored: {e}")
                return
            self._cleared = False
            self.state.set_density(dens, reset_view=False, mass=stroke.strength * dens.n_components)
        else:
            self.state.apply_stroke(stroke)

    def clear(self):
        """Empty the canvas; the density stays valid (the old one) until the first stroke replaces it."""
        self._cleared = True
        self.canvas.forget()
        self.canvas.heat.setImage(np.zeros((4, 4)), levels=(0, 1))
        self.canvas.clear_contours()
        self.info.setText("Canvas cleared: paint a stroke to create the new density.")
        self.state.status.emit("Canvas cleared — paint to create a new density")

    def load_preset(self, name: str):
        self._cleared = False
        dens = densities.preset(name)
        self.state.set_density(dens)
        self.state.status.emit(f"Preset {name.replace('_', ' ')}: {_components(dens.n_components)}")

    def _error(self, title: str, msg: str):
        QtWidgets.QMessageBox.critical(self, title, msg)
        self.state.status.emit(f"{title}: {msg}")

    def load_json(self, path: str | None = None) -> bool:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load density", "", "Density JSON (*.json)")
            if not path:
                return False
        try:
            dens = densities.GaussianMixture.load(path)
        except (densities.DensityError, OSError) as e:
            self._error("Could not load density", f"{path}:\n{e}\nThe current density is unchanged.")
            return False
        self._cleared = False
        self.state.set_density(dens)
        self.state.status.emit(f"Loaded {Path(path).name}: {_components(dens.n_components)}")
        return True

    def save_json(self, path: str | None = None) -> bool:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save density", "density.json", "Density JSON (*.json)")
            if not path:
                return False
        try:
            self.state.density.save(path)
        except OSError as e:
            self._error("Could not save density", str(e))
            return False
        self.state.status.emit(f"Saved density to {path}")
        return True

    def load_image(self, path: str | None = None) -> bool:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load image as density", "",
                                                            "Images (*.png *.jpg *.jpeg *.bmp *.gif)")
            if not path:
                return False
        try:
            from PIL import Image

            with Image.open(path) as im:
                im = im.convert("L")
                im.thumbnail((128, 128))
                gray = np.asarray(im, dtype=np.float64) / 255.0
            if self.dark_is_mass.isChecked():
                gray = 1.0 - gray
            dens = image_density(gray, Path(path).stem)
        except (OSError, ValueError) as e:          # DensityError is a ValueError
            self._error("Could not load image", f"{path}:\n{e}\nThe current density is unchanged.")
            return False
        self._cleared = False
        self.state.set_density(dens)
        self.state.status.emit(f"Loaded image {Path(path).name}: {_components(dens.n_components)}")
        return True

    # ------------------------------------------------------------------ view
    def refresh(self):
        s = self.state
        self.canvas.show_density(s.density, s.bounds)
        self.undo_btn.setEnabled(s.can_undo())
        self.redo_btn.setEnabled(s.can_redo())
        self.info.setText(f"<b>{s.density.name or 'density'}</b>: {_components(s.density.n_components)}")
        i = self.preset.findData(s.density.name)
        if i < 0:                      # a drawing, an image or a JSON file: say so, not the last preset
            i = self.preset.findData(self.CUSTOM)
            label = "drawing" if s.density.name == "drawn" else f"loaded: {s.density.name or 'density'}"
            if i < 0:
                self.preset.addItem(label, self.CUSTOM)
                i = self.preset.count() - 1
            self.preset.setItemText(i, label)
        self.preset.setCurrentIndex(i)

    def show_classes(self):
        """Dots at the components' means in their class colours (the brush's), for a labelled density."""
        d = self.state.density
        if not d.labelled:
            self.class_dots.setData(pos=np.zeros((0, 2)))
            self.class_dots.setVisible(False)
            return
        brushes = [pg.mkBrush(*CLASS_COLOURS[int(k) % len(CLASS_COLOURS)], 220) for k in d.labels.tolist()]
        self.class_dots.setData(pos=d.means.numpy(), brush=brushes)
        self.class_dots.setVisible(True)

    def show_training_points(self):
        """Draw the fixed training set of the Training tab's settings (fitting.training_data); none for N = 0."""
        points = fitting.training_data(self.state.train, self.state.density)[1]
        self.training_points.setData(pos=np.zeros((0, 2)) if points is None else points.numpy())
        self.training_points.setVisible(points is not None)

    def shutdown(self):
        """End the canvas's background recomputation (the window is closing)."""
        self.canvas.shutdown()

    def export_target(self):
        return self.canvas
