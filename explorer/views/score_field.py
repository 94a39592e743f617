"""Score-field tab: learned score arrows (red) over the true score (white) of p_σ or of the DDPM
marginal q(x_t), an error heat map ‖s_θ − ∇log p‖ (optionally weighted by p), and a slider over the
noise levels / timesteps the model was trained on. Hover shows both vectors at the nearest grid point.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from trainers import fitting
from trainers import grid

from . import common

ERROR_N = 80
CONTOUR_N = 64


class ScoreFieldView(QtWidgets.QWidget):
    title = "Score field"

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self._levels: list[fitting.Level] = []
        self._grid = None            # (points (n*n,2) ndarray, true (n*n,2), learned or None)
        lay = QtWidgets.QHBoxLayout(self)
        panel, side = common.side_panel()
        lay.addWidget(panel)

        box, form = common.form_group("Field")
        self.grid_n = common.spin(5, 80, 24, tooltip="Arrows per side of the grid (n × n arrows).")
        self.show_true = QtWidgets.QCheckBox("True score ∇log p (white)")
        self.show_true.setChecked(True)
        self.show_model = QtWidgets.QCheckBox("Learned score s_θ (red)")
        self.show_model.setChecked(True)
        self.show_true.setToolTip("Exact score of the noised density p_σ = p * N(0, σ²I), or of the DDPM marginal "
                                  "q(x_t) = Σ w_k N(√ᾱ_t μ_k, ᾱ_t Σ_k + (1−ᾱ_t) I), at the slider's level.")
        self.show_model.setToolTip("The network's score at the slider's level; a DDPM model's ε is shown as "
                                   "s = −ε/√(1−ᾱ_t).")
        self.arrow_mode = common.combo([("length", "length ∝ |s| (shared scale)"), ("unit", "unit length (direction)")],
                                  "length", "length ∝ |s|: both fields share one scale — the 95th percentile of |s| "
                                  "over both maps to one grid cell (longer arrows are clipped at 2 cells), so a "
                                  "longer red arrow is a larger learned score.\nunit length: directions only; "
                                  "read magnitudes from the error map or by hovering.")
        self.error_mode = common.combo([("off", "off"), ("plain", "‖s_θ − ∇log p‖"), ("weighted", "p(x)·‖s_θ − ∇log p‖")],
                                  "plain", "Heat map of the score error; weighted by p(x) shows where the error matters "
                                  "for the Fisher divergence (errors far from the data are invisible to it).")
        form.addRow("Grid", self.grid_n)
        form.addRow(self.show_true)
        form.addRow(self.show_model)
        form.addRow("Arrows", self.arrow_mode)
        form.addRow("Error map", self.error_mode)
        side.addWidget(box)

        box, form = common.form_group("Noise level")
        self.level = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.level.setToolTip("Noise level σᵢ (NCSN) or timestep t (DDPM) at which both fields are drawn.")
        self.level_label = QtWidgets.QLabel()
        self.level_label.setWordWrap(True)
        form.addRow(self.level)
        form.addRow(self.level_label)
        side.addWidget(box)
        self.hover = QtWidgets.QLabel("Hover over the plot to read both vectors.")
        self.hover.setWordWrap(True)
        self.hover.setTextFormat(QtCore.Qt.TextFormat.RichText)
        side.addWidget(self.hover)
        self.summary = QtWidgets.QLabel()
        self.summary.setWordWrap(True)
        side.addWidget(self.summary)
        side.addStretch(1)

        self.plot_widget = pg.PlotWidget()
        self.plot = self.plot_widget.plotItem
        self.err_img = common.heat_image(common.ERROR_CMAP)
        self.plot.addItem(self.err_img)
        self.density_contours: list = []
        self.true_arrows = pg.PlotDataItem(connect="pairs", pen=common.TRUE_PEN)
        self.model_arrows = pg.PlotDataItem(connect="pairs", pen=common.MODEL_PEN)
        self.true_arrows.setZValue(5)
        self.model_arrows.setZValue(6)
        self.plot.addItem(self.true_arrows)
        self.plot.addItem(self.model_arrows)
        self.marker = pg.ScatterPlotItem(size=10, pen=pg.mkPen("c", width=2), brush=None)
        self.marker.setZValue(7)
        self.plot.addItem(self.marker)
        self.colorbar = pg.ColorBarItem(colorMap=common.ERROR_CMAP, interactive=False, width=12)
        self.colorbar.setImageItem(self.err_img, insert_in=self.plot)
        lay.addWidget(self.plot_widget, 1)

        self._hover_proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._on_hover)
        for w in (self.show_true, self.show_model):
            w.toggled.connect(self._draw)
        self.arrow_mode.currentIndexChanged.connect(self._draw)
        self.error_mode.currentIndexChanged.connect(self.recompute)
        self.grid_n.valueChanged.connect(self.recompute)
        self.level.valueChanged.connect(self.recompute)
        state.densityChanged.connect(self.refresh)
        state.modelChanged.connect(self._on_model)
        state.trainSettingsChanged.connect(self._on_model)
        self._on_model()

    # ------------------------------------------------------------------ data
    def _settings(self):
        """Settings whose levels the slider shows: the trained model's, else the panel's."""
        return self.state.model_settings or self.state.train

    def _on_model(self):
        levels = fitting.levels_of(self._settings())
        if [lv.label for lv in levels] != [lv.label for lv in self._levels]:
            old = self.level.value()
            self._levels = levels
            self.level.blockSignals(True)
            self.level.setRange(0, len(levels) - 1)
            self.level.setValue(min(old, len(levels) - 1))
            self.level.setEnabled(len(levels) > 1)
            self.level.blockSignals(False)
        self.refresh()

    def refresh(self):
        """Recompute now if the tab is shown, else when it is next shown: training sends new weights
        several times a second and the GUI thread should not redraw fields nobody sees."""
        if self.isVisible():
            self.recompute()
        else:
            self._dirty = True

    def showEvent(self, ev):
        super().showEvent(ev)
        if getattr(self, "_dirty", True):
            self.recompute()

    def current_level(self) -> fitting.Level:
        return self._levels[self.level.value()]

    def set_level(self, i: int):
        self.level.setValue(i)

    def recompute(self, *_):
        self._dirty = False
        s = self.state
        lev = self.current_level()
        settings = self._settings()
        bounds = s.bounds
        n = self.grid_n.value()
        pts = grid.grid_points(bounds, n)
        target = fitting.target_density_at(settings, s.density, lev.value)
        true = grid.field_on_grid(target.score, pts.double())
        learned = None
        if s.model is not None:
            learned = grid.field_on_grid(fitting.model_score_at(s.model, settings, lev.value), pts)
        self._grid = (pts.numpy().astype(np.float64), true, learned, (bounds[1] - bounds[0]) / n)
        self.level_label.setText(lev.label)

        # error heat map on a finer grid
        mode = self.error_mode.currentData()
        if learned is not None and mode != "off":
            fine = grid.grid_points(bounds, ERROR_N)
            err = np.linalg.norm(grid.field_on_grid(fitting.model_score_at(s.model, settings, lev.value), fine)
                                 - grid.field_on_grid(target.score, fine.double()), axis=1).reshape(ERROR_N, ERROR_N)
            if mode == "weighted":
                p = grid.density_image(target, bounds, ERROR_N)
                err = err * p / p.max()
            hi = float(np.quantile(err, 0.99)) or 1.0
            common.set_heat(self.err_img, err, bounds, (0.0, hi))
            self.colorbar.setLevels((0.0, hi))
            self.err_img.setVisible(True)
            self.colorbar.setVisible(True)
            self.plot.setTitle(f"Score field at {lev.label.split('(')[0].strip()} — heat: "
                               + ("p(x)·‖s_θ − ∇log p‖ (scaled)" if mode == "weighted" else "‖s_θ − ∇log p‖"))
        else:
            self.err_img.setVisible(False)
            self.colorbar.setVisible(False)
        self._draw_contours(target, bounds)
        if learned is not None:
            fd = float(np.mean(np.sum((learned - true) ** 2, 1)))
            self.summary.setText(f"Mean ‖s_θ − ∇log p‖² over the grid: {fd:.4g} (model step {s.model_step})")
        else:
            self.summary.setText("No trained model yet: only the true score is drawn. Train on the Training tab.")
        if learned is None or mode == "off":
            self.plot.setTitle(f"Score field at {lev.label.split('(')[0].strip()}")
        common.square_plot(self.plot, bounds)
        self._draw()

    def _draw_contours(self, target, bounds):
        for c in self.density_contours:
            self.plot.removeItem(c)
        self.density_contours = []
        # pyqtgraph's isocurve is pure Python (~10 ms per level at 100×100): a 64×64 grid keeps a
        # slider move interactive
        n = CONTOUR_N
        img = grid.density_image(target, bounds, n)
        xmin, xmax, ymin, ymax = bounds
        for lev in grid.contour_levels(img, 3):
            iso = pg.IsocurveItem(data=img, level=lev, pen=pg.mkPen(120, 200, 255, 140, width=1))
            iso.setTransform(pg.QtGui.QTransform.fromScale((xmax - xmin) / n, (ymax - ymin) / n)
                             * pg.QtGui.QTransform.fromTranslate(xmin, ymin))
            iso.setZValue(1)
            self.plot.addItem(iso)
            self.density_contours.append(iso)

    def _draw(self, *_):
        if self._grid is None:
            return
        pts, true, learned, cell = self._grid
        unit = self.arrow_mode.currentData() == "unit"
        fields = [true] + ([learned] if learned is not None else [])
        scale = grid.shared_arrow_scale(fields, cell)

        def vec(f):
            if unit:
                norm = np.linalg.norm(f, axis=1, keepdims=True)
                return 0.8 * cell * f / np.maximum(norm, 1e-12)
            v = f * scale
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            return v * np.minimum(1.0, 2 * cell / np.maximum(norm, 1e-12))

        for item, f, on in ((self.true_arrows, true, self.show_true.isChecked()),
                            (self.model_arrows, learned, self.show_model.isChecked())):
            if f is None or not on:
                item.setData([], [])
                continue
            x, y = common.arrows_path(pts, vec(f))
            item.setData(x, y)

    # ------------------------------------------------------------------ hover
    def _on_hover(self, evt):
        if self._grid is None:
            return
        pos = evt[0]
        if not self.plot.sceneBoundingRect().contains(pos):
            return
        p = self.plot.vb.mapSceneToView(pos)
        self.show_vectors_at(p.x(), p.y())

    def show_vectors_at(self, x: float, y: float) -> str:
        pts, true, learned, _ = self._grid
        i = int(np.argmin(((pts - [x, y]) ** 2).sum(1)))
        self.marker.setData([pts[i, 0]], [pts[i, 1]])
        t = true[i]
        txt = f"at ({pts[i, 0]:.2f}, {pts[i, 1]:.2f}):<br>true ∇log p = ({t[0]:.3g}, {t[1]:.3g})"
        if learned is not None:
            m = learned[i]
            txt += (f"<br><span style='color:#e54'>learned s_θ = ({m[0]:.3g}, {m[1]:.3g})</span>"
                    f"<br>‖difference‖ = {np.linalg.norm(m - t):.3g}")
        self.hover.setText(txt)
        return txt

    def export_target(self):
        return self.plot_widget
