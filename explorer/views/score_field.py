"""Score-field tab: learned score arrows (red) over the true score (white) of p_σ or of the DDPM
marginal q(x_t), an error heat map ‖s_θ − ∇log p‖ (optionally weighted by p), and a slider over the
noise levels / timesteps the model was trained on. Hover shows both vectors at the nearest grid point.

With a fixed training set (Training tab, "Fixed dataset of N points") it can also draw the empirical
optimal score (green, trainers.studies.memorisation: the exact score of the noised training set, what a network
that memorises learns) and run the memorisation meter (samples of the model's own sampler against the
training points, in a JobWorker thread) — docs/math.md §11. With a class chosen (Guidance group, issue #22)
white is the exact guided field (1 + w)∇log p(x|c) − w∇log p(x), red the model's, and the hover says so;
a tick draws the tilted target p_w(x|c) ∝ p(x|c)^{1+w} p(x)^{−w} (σ = 0) as a heat map under the arrows,
which CFG's samples are not draws of. The fields are computed by
trainers.studies.score_field (on the GUI thread: a slider move redraws at once); the view only draws.
"""
from __future__ import annotations

import copy

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from trainers import grid
from trainers.studies import memorisation
from trainers.studies.score_field import (Level, empirical_field, error_map, guided_field, levels, score_field,
                                         tilted_image, training_points)
from trainers.studies.velocity_field import model_t_range, velocity_error_map, velocity_field

from ..workers.job import JobWorker
from .parts import axes, common
from .parts.stale_banner import StaleModelBanner

ERROR_N = 80
CONTOUR_N = 64
EMPIRICAL_PEN = pg.mkPen(90, 230, 120, 230, width=1.5)
CONDITIONAL_PEN = pg.mkPen(80, 200, 255, 200, width=1)      # exact ∇log p(x|c) beside the guided field
UNCONDITIONAL_PEN = pg.mkPen(150, 150, 150, 170, width=1)   # exact ∇log p(x)
GUIDED_NAMES = ("exact guided (1 + w)∇log p(x|c) − w∇log p(x)", "model's guided (1 + w)s_θ(x|c) − w s_θ(x)")
TILTED_TIP = ("Draw the tilted target p_w(x|c) ∝ p(x|c)^(1+w) p(x)^(−w) of the clean data (σ = 0) for the chosen "
              "class and w as a heat map under the arrows, normalised numerically on a fine grid "
              "(trainers.guidance.TiltedTarget).\nIt is the density CFG is often said to sample. It is not what CFG "
              "samples: the guided score at each noise level is the score of p_σ(x|c)^(1+w) p_σ(x)^(−w), which is "
              "not p_w noised, so CFG's samples differ from it, differently per sampler (docs/math.md, guidance).")
METER_SAMPLES = 1000          # samples the memorisation meter draws (and fresh data points beside them)
METER_SEED = 0


class ScoreFieldView(common.JobTab, QtWidgets.QWidget):
    title = "Score field"

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self._levels: list[Level] = []
        self._grid = None            # (points (n*n,2) ndarray, true (n*n,2), learned or None)
        self.empirical: np.ndarray | None = None    # empirical optimal score on the grid, when overlaid
        self.worker: JobWorker | None = None
        self.measurement: memorisation.Measurement | None = None   # the meter's last result
        self.meter_step = 0                          # model step it was measured at
        self._measuring_step = 0                     # model step of the measurement in flight
        self._dirty = True                           # the field needs recomputing when next shown
        lay = QtWidgets.QHBoxLayout(self)
        panel, side = common.side_panel()
        lay.addWidget(panel)
        self.stale_banner = StaleModelBanner(state)      # the model no longer matches: say so, offer a retrain
        side.addWidget(self.stale_banner)

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
        self.field_kind = common.combo(
            [("score", "score ∇log p_σ"), ("velocity", "velocity v(x, t) of the flow")], "score",
            "score: the noise-conditional score at the slider's noise level.\nvelocity: the velocity of the linear "
            "path x_t = (1−t)x₀ + t z at flow time t (t = 0 data, t = 1 noise): the exact v = E[z − x₀ | x_t] of "
            "the density (white) and the model's (red) — a flow-matching network's own, any other model's through "
            "v = −(x + t∇log p_t)/(1−t) (docs/math.md, 'Flow matching and rectified flow').")
        form.addRow("Field", self.field_kind)
        form.addRow("Grid", self.grid_n)
        form.addRow(self.show_true)
        form.addRow(self.show_model)
        form.addRow("Arrows", self.arrow_mode)
        form.addRow("Error map", self.error_mode)
        side.addWidget(box)

        box, form = common.form_group("Guidance")
        self.guide_class = common.combo([(-1, "none")], -1,
            "Classifier-free guidance on a class of the density (its components' labels): white becomes the exact "
            "guided score (1 + w)∇log p(x|c) − w∇log p(x) at the slider's level, red a class-conditional model's "
            "(1 + w)s_θ(x|c) − w s_θ(x); cyan and grey show the exact conditional and unconditional scores.")
        self.guide_w = common.spin(-1.0, 20.0, 0.0, 0.5, 2, "Guidance weight w: 0 = the conditional score, −1 = the "
                                   "unconditional one; the 'guidance scale' of diffusers is 1 + w.")
        self.show_parts = QtWidgets.QCheckBox("Also ∇log p(x|c) (cyan) and ∇log p(x) (grey)")
        self.show_parts.setChecked(True)
        self.show_parts.setToolTip("Draw the exact conditional score ∇log p(x|c) (cyan) and unconditional score "
                                   "∇log p(x) (grey) beside the guided field (white).")
        self.show_tilted = QtWidgets.QCheckBox("Tilted target p_w(x|c) as heat map")
        self.show_tilted.setToolTip(TILTED_TIP)
        form.addRow("Class", self.guide_class)
        form.addRow("w", self.guide_w)
        form.addRow(self.show_parts)
        form.addRow(self.show_tilted)
        side.addWidget(box)
        self._guided = None              # the last GuidedField (None: no class chosen)
        self.tilted = None               # the last TiltedImage drawn (None: not shown)
        self._tilted_for = None          # (density, class, w, its TiltedImage): the last one computed

        box, form = common.form_group("Finite data and memorisation")
        self.show_empirical = QtWidgets.QCheckBox("Empirical optimal score (green)")
        self.show_empirical.setToolTip(
            "The exact score of the noised training set, ∇log (1/N) Σₙ N(x; xₙ, σ²I) at the slider's level "
            "(DDPM: of (1/N) Σₙ N(√ᾱ_t xₙ, (1−ᾱ_t) I)): the minimiser of the training loss on a fixed dataset "
            "of N points. A network that fits it memorises; one that stays with the true score generalises.\n"
            "Training points: the model's own fixed dataset, else the one the Training tab's 'Fixed dataset "
            "of N points' draws (green dots).")
        self.measure_btn = QtWidgets.QPushButton("Measure memorisation")
        self.measure_btn.setToolTip(
            f"Draw {METER_SAMPLES} samples with the model's own sampler (annealed Langevin for NCSN, DDPM for "
            f"DDPM, Langevin otherwise) and {METER_SAMPLES} fresh points of the density, and compare both with "
            f"the training points: the share within {memorisation.NEAR_FACTOR:g}·σ_min of one (copies) and the "
            "median distance to the nearest one. Samples much closer than fresh data: the model memorises.")
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.setToolTip("Stop the memorisation meter's sampling (the last figures stay).")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.measure_btn)
        row.addWidget(self.cancel_btn)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QtWidgets.QLabel()
        self.status.setWordWrap(True)
        self.meter_label = QtWidgets.QLabel()
        self.meter_label.setWordWrap(True)
        self.meter_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.show_meter_samples = QtWidgets.QCheckBox("Show the measured samples (orange)")
        self.show_meter_samples.setChecked(True)
        self.show_meter_samples.setToolTip("Draw the meter's samples over the field: with a memorising model they "
                                           "sit on the training points (green dots).")
        for w in (self.show_empirical, row, self.progress, self.status, self.meter_label, self.show_meter_samples):
            form.addRow(w)
        side.addWidget(box)

        box, form = common.form_group("Noise level")
        self.level = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.level.setToolTip("Noise level σᵢ (NCSN) or timestep t (DDPM) at which both fields are drawn.")
        self.level_label = QtWidgets.QLabel()
        self.level_label.setWordWrap(True)
        form.addRow(self.level)
        form.addRow(self.level_label)
        side.addWidget(box)
        self.level_box = box
        box, form = common.form_group("Flow time")
        self.flow_t = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.flow_t.setRange(0, 100)
        self.flow_t.setValue(50)
        self.flow_t.setToolTip("Flow time t of the velocity field: t = 0 is the data, t = 1 the noise N(0, I) "
                               "(a score model's velocity stops short of t = 1, where σ = t/(1−t) is infinite).")
        self.flow_t_label = QtWidgets.QLabel()
        form.addRow(self.flow_t)
        form.addRow(self.flow_t_label)
        side.addWidget(box)
        self.flow_box = box
        box.setVisible(False)
        self.hover = QtWidgets.QLabel("Hover over the plot to read both vectors.")
        self.hover.setWordWrap(True)
        self.hover.setTextFormat(QtCore.Qt.TextFormat.RichText)
        side.addWidget(self.hover)
        self.summary = QtWidgets.QLabel()
        self.summary.setWordWrap(True)
        side.addWidget(self.summary)
        side.addStretch(1)

        self.plot_widget = pg.PlotWidget(axisItems=axes.items())
        self.plot = self.plot_widget.plotItem
        self.err_img = common.heat_image(common.ERROR_CMAP)
        self.plot.addItem(self.err_img)
        self.tilted_img = common.heat_image(common.DENSITY_CMAP)     # the tilted target p_w(x|c), under the arrows
        self.tilted_img.setZValue(-9)
        self.tilted_img.setVisible(False)
        self.plot.addItem(self.tilted_img)
        self.density_contours: list = []
        self.true_arrows = pg.PlotDataItem(connect="pairs", pen=common.TRUE_PEN)
        self.model_arrows = pg.PlotDataItem(connect="pairs", pen=common.MODEL_PEN)
        self.empirical_arrows = pg.PlotDataItem(connect="pairs", pen=EMPIRICAL_PEN)
        self.true_arrows.setZValue(5)
        self.model_arrows.setZValue(6)
        self.empirical_arrows.setZValue(5.5)
        self.plot.addItem(self.true_arrows)
        self.plot.addItem(self.model_arrows)
        self.plot.addItem(self.empirical_arrows)
        self.conditional_arrows = pg.PlotDataItem(connect="pairs", pen=CONDITIONAL_PEN)
        self.unconditional_arrows = pg.PlotDataItem(connect="pairs", pen=UNCONDITIONAL_PEN)
        for item in (self.conditional_arrows, self.unconditional_arrows):
            item.setZValue(4)
            self.plot.addItem(item)
        self.meter_samples_item = common.PointsItem(color=(255, 170, 40), size=3, alpha=200)
        self.meter_samples_item.setZValue(3)
        self.plot.addItem(self.meter_samples_item)
        self.training_points_item = pg.ScatterPlotItem(size=8, pen=pg.mkPen(20, 20, 20, 230, width=1),
                                                       brush=pg.mkBrush(90, 230, 120, 240))
        self.training_points_item.setZValue(8)
        self.plot.addItem(self.training_points_item)
        self.marker = pg.ScatterPlotItem(size=10, pen=pg.mkPen("c", width=2), brush=None)
        self.marker.setZValue(7)
        self.plot.addItem(self.marker)
        self.colorbar = pg.ColorBarItem(colorMap=common.ERROR_CMAP, interactive=False, width=12)
        self.colorbar.setImageItem(self.err_img, insert_in=self.plot)
        lay.addWidget(self.plot_widget, 1)

        self._hover_proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._on_hover)
        for w in (self.show_true, self.show_model):
            w.toggled.connect(self._draw)
        self.show_empirical.toggled.connect(self.recompute)
        self.show_meter_samples.toggled.connect(self._draw_meter_samples)
        self.measure_btn.clicked.connect(self.measure)
        self.cancel_btn.clicked.connect(self.cancel)
        self.arrow_mode.currentIndexChanged.connect(self._draw)
        self.error_mode.currentIndexChanged.connect(self.recompute)
        self.grid_n.valueChanged.connect(self.recompute)
        self.level.valueChanged.connect(self.recompute)
        self.guide_class.currentIndexChanged.connect(self.recompute)
        self.guide_w.valueChanged.connect(self.recompute)
        self.show_parts.toggled.connect(self._draw)
        self.show_tilted.toggled.connect(self.recompute)
        state.densityChanged.connect(self._update_classes)
        self._update_classes()
        self.flow_t.valueChanged.connect(self.recompute)
        self.field_kind.currentIndexChanged.connect(self._on_field_kind)
        state.densityChanged.connect(self.refresh)
        state.densityChanged.connect(self._forget_measurement)
        state.densityChanged.connect(self._on_model)         # an automatic σ₁ follows the density
        state.modelChanged.connect(self._on_model)
        state.trainSettingsChanged.connect(self._on_model)
        self._idle()
        self._on_model()

    # ------------------------------------------------------------------ data
    def _settings(self):
        """Settings whose levels the slider shows: the trained model's, else the panel's."""
        return self.state.model_settings or self.state.train

    def _on_model(self):
        stops = levels(self._settings(), density=self.state.model_density or self.state.density)
        if [lv.label for lv in stops] != [lv.label for lv in self._levels]:
            old = self.level.value()
            self._levels = stops
            self.level.blockSignals(True)
            self.level.setRange(0, len(stops) - 1)
            self.level.setValue(min(old, len(stops) - 1))
            self.level.setEnabled(len(stops) > 1)
            self.level.blockSignals(False)
        if not self.is_running():
            self._idle()
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
        if self._dirty:
            self.recompute()

    def _update_classes(self):
        """The class choice follows the density's classes (disabled for an unlabelled density)."""
        names = list(self.state.density.classes)
        keep = self.guide_class.currentData()
        self.guide_class.blockSignals(True)
        self.guide_class.clear()
        self.guide_class.addItem("none", -1)
        for i, name in enumerate(names):
            self.guide_class.addItem(f"{i}: {name}", i)
        self.guide_class.setCurrentIndex(max(0, self.guide_class.findData(keep)))
        self.guide_class.blockSignals(False)
        self.guide_class.setEnabled(bool(names))
        self.guide_w.setEnabled(bool(names))
        self.show_tilted.setEnabled(bool(names))

    def current_level(self) -> Level:
        return self._levels[self.level.value()]

    def set_level(self, i: int):
        self.level.setValue(i)

    def velocity_mode(self) -> bool:
        return self.field_kind.currentData() == "velocity"

    def _on_field_kind(self, *_):
        velocity = self.velocity_mode()
        self.level_box.setVisible(not velocity)
        self.flow_box.setVisible(velocity)
        self.show_true.setText("Exact velocity v (white)" if velocity else "True score ∇log p (white)")
        self.show_model.setText("Learned velocity v_θ (red)" if velocity else "Learned score s_θ (red)")
        self.recompute()

    def flow_time(self) -> float:
        """The slider's t, kept within the flow times the current model has a velocity at."""
        return min(self.flow_t.value() / 100, model_t_range(self._settings())[1])

    def _recompute_velocity(self):
        """The velocity view: exact and learned v at the slider's flow time, its error map and p_t's contours."""
        s, settings, bounds = self.state, self._settings(), self.state.bounds
        t = self.flow_time()
        field = velocity_field(s.model, settings, s.density, t, bounds, self.grid_n.value())
        self._grid = (field.points, field.true, field.learned, field.cell)
        self.empirical = None
        self.training_points_item.setData(pos=np.zeros((0, 2)))
        self.flow_t_label.setText(f"t = {t:.2f}  (σ = t/(1−t) = {t / (1 - t):.3g})" if t < 1 else "t = 1 (the noise)")
        mode = self.error_mode.currentData()
        title = f"Velocity field at t = {t:.2f}"
        if field.learned is not None and mode != "off":
            err = velocity_error_map(s.model, settings, s.density, t, bounds, ERROR_N, weighted=mode == "weighted")
            hi = float(np.quantile(err, 0.99)) or 1.0
            common.set_heat(self.err_img, err, bounds, (0.0, hi))
            self.colorbar.setLevels((0.0, hi))
            self.err_img.setVisible(True)
            self.colorbar.setVisible(True)
            title += " — heat: " + ("p_t(x)·‖v_θ − v‖ (scaled)" if mode == "weighted" else "‖v_θ − v‖")
        else:
            self.err_img.setVisible(False)
            self.colorbar.setVisible(False)
        self.plot.setTitle(title)
        self._draw_contours(field.target, bounds)
        if field.learned is not None:
            self.summary.setText(f"Mean ‖v_θ − v‖² over the grid: {field.mean_squared_error:.4g} "
                                 f"(model step {s.model_step})")
        else:
            self.summary.setText("No trained model yet: only the exact velocity is drawn. Train on the Training tab.")
        common.square_plot(self.plot, bounds)
        self._draw()

    def recompute(self, *_):
        self._dirty = False
        self._guided = None
        self.tilted = None
        self.tilted_img.setVisible(False)
        if self.velocity_mode():
            self._recompute_velocity()
            return
        s = self.state
        lev = self.current_level()
        settings = self._settings()
        bounds = s.bounds
        field = score_field(s.model, settings, s.density, lev.value, bounds, self.grid_n.value())
        target, learned, true = field.target, field.learned, field.true
        c = self.guide_class.currentData()
        if c is not None and c >= 0:
            self._guided = guided_field(s.model, settings, s.density, c, self.guide_w.value(), lev.value,
                                        field.grid_points)
            true, learned = self._guided.guided, self._guided.learned
        self._grid = (field.points, true, learned, field.cell)
        self.level_label.setText(lev.label)
        self._compute_empirical(settings, lev, field.grid_points)

        # error heat map on a finer grid
        mode = self.error_mode.currentData() if self._guided is None else "off"
        if learned is not None and mode != "off":
            err = error_map(s.model, settings, target, lev.value, bounds, ERROR_N, weighted=mode == "weighted")
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
            fd = field.mean_squared_error
            self.summary.setText(f"Mean ‖s_θ − ∇log p‖² over the grid: {fd:.4g} (model step {s.model_step})")
        else:
            self.summary.setText("No trained model yet: only the true score is drawn. Train on the Training tab.")
        if self._guided is not None:
            w = self.guide_w.value()
            self.summary.setText(f"Guided on class {c} ({s.density.classes[c]}), w = {w:g}: white = exact "
                                 f"(1 + w)∇log p(x|c) − w∇log p(x), red = the model's "
                                 + ("CFG." if learned is not None else
                                    f"— none: {self._guided.note or 'no trained model yet'}."))
            if self.show_tilted.isChecked():
                self._draw_tilted(c, w)
        if self.show_empirical.isChecked() and self.show_empirical.isEnabled() and self.empirical is None:
            self.summary.setText(self.summary.text() + "<br>No empirical optimal score at σ = 0 (ESM/SSM): "
                                 "the score of N points is undefined there.")
        if learned is None or mode == "off":
            self.plot.setTitle(f"Score field at {lev.label.split('(')[0].strip()}"
                               + (" — heat: tilted target p_w(x|c) (σ = 0)" if self.tilted is not None else ""))
        common.square_plot(self.plot, bounds)
        self._draw()

    def _draw_tilted(self, c: int, w: float):
        """The tilted target of class c at w as a heat map under the arrows, and what it is in the summary."""
        key = (self.state.density, c, w)       # a slider move or a new grid keeps the picture
        if self._tilted_for is None or self._tilted_for[0] is not key[0] or self._tilted_for[1:3] != key[1:]:
            self._tilted_for = (*key, tilted_image(self.state.density, c, w))
        t = self.tilted = self._tilted_for[3]
        common.set_heat(self.tilted_img, t.image, t.bounds)
        self.tilted_img.setVisible(True)
        n = len(t.image)
        self.summary.setText(
            self.summary.text() + f"<br><b>Heat: the tilted target</b> p_w(x|c) ∝ p(x|c)^(1+w) p(x)^(−w) of the clean "
            f"data (σ = 0) at w = {w:g}, normalised on a {n}×{n} grid (∫ = {t.integral:.4f}). It is what CFG is "
            "said to sample, but <b>CFG's samples are NOT draws of it</b>: the guided field at each σ is the score "
            "of p_σ(x|c)^(1+w) p_σ(x)^(−w), not of p_w noised. The Samplers tab's panels report the distance to it.")

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
        empirical = self.empirical if self.show_empirical.isChecked() else None
        parts = self._guided is not None and self.show_parts.isChecked()
        cond = self._guided.conditional if parts else None
        uncond = self._guided.unconditional if parts else None
        fields = [f for f in (true, learned, empirical, cond, uncond) if f is not None]
        scale = grid.shared_arrow_scale(fields, cell)

        def vec(f):
            if unit:
                norm = np.linalg.norm(f, axis=1, keepdims=True)
                return 0.8 * cell * f / np.maximum(norm, 1e-12)
            v = f * scale
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            return v * np.minimum(1.0, 2 * cell / np.maximum(norm, 1e-12))

        for item, f, on in ((self.true_arrows, true, self.show_true.isChecked()),
                            (self.model_arrows, learned, self.show_model.isChecked()),
                            (self.empirical_arrows, empirical, empirical is not None),
                            (self.conditional_arrows, cond, cond is not None),
                            (self.unconditional_arrows, uncond, uncond is not None)):
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
        true_name, model_name = ("exact v", "learned v_θ") if self.velocity_mode() else ("true ∇log p", "learned s_θ")
        g = self._guided
        if g is not None:
            true_name, model_name = GUIDED_NAMES
        txt = f"at ({pts[i, 0]:.2f}, {pts[i, 1]:.2f}):<br>{true_name} = ({t[0]:.3g}, {t[1]:.3g})"
        if g is not None:
            txt = (f"guided field, class {self.guide_class.currentText()}, w = {self.guide_w.value():g}, "
                   + txt + f"<br><span style='color:#5cf'>exact ∇log p(x|c) = ({g.conditional[i, 0]:.3g}, "
                   f"{g.conditional[i, 1]:.3g})</span><br><span style='color:#aaa'>exact ∇log p(x) = "
                   f"({g.unconditional[i, 0]:.3g}, {g.unconditional[i, 1]:.3g})</span>")
        if learned is not None:
            m = learned[i]
            txt += (f"<br><span style='color:#e54'>{model_name} = ({m[0]:.3g}, {m[1]:.3g})</span>"
                    f"<br>‖difference‖ = {np.linalg.norm(m - t):.3g}")
        if self.empirical is not None and self.show_empirical.isChecked():
            e = self.empirical[i]
            txt += f"<br><span style='color:#5e7'>empirical optimum = ({e[0]:.3g}, {e[1]:.3g})</span>"
        self.hover.setText(txt)
        return txt

    # ------------------------------------------------------------------ finite data: overlay
    def training_points(self):
        """The fixed training set the overlay and the meter compare with (a (N, 2) tensor): the current
        model's own when it was trained on one, else the one the Training tab's settings draw; None when
        neither has a fixed dataset (fresh data every step). The model's were drawn from the density it
        was trained on (which a stale model no longer shares with the Density tab)."""
        s = self.state
        for cfg, density in ((s.model_settings, s.model_density), (s.train, s.density)):
            if cfg is not None and cfg.n_data:
                return training_points(cfg, density or s.density)
        return None

    def _compute_empirical(self, settings, lev, pts):
        """The empirical optimal score on the arrow grid at the slider's level, if the overlay is on."""
        self.empirical = None
        points = self.training_points()
        self.show_empirical.setEnabled(points is not None)
        if points is not None and self.show_empirical.isChecked():
            self.empirical = empirical_field(settings, points, lev.value, pts)
        shown = points is not None and (self.show_empirical.isChecked() or self.measurement is not None)
        self.training_points_item.setData(pos=points.numpy() if shown else np.zeros((0, 2)))

    def empirical_field(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(grid points, empirical optimal score there) as drawn; None while the overlay is off."""
        if self.empirical is None or self._grid is None:
            return None
        return self._grid[0], self.empirical

    # ------------------------------------------------------------------ finite data: the meter
    def meter_problem(self) -> str:
        """Why the meter cannot run now ("" when it can)."""
        if self.state.model is None:
            return "Train a model first (Training tab)."
        problem = memorisation.model_problem(self.state.model_settings)
        if problem:
            return problem
        if self.training_points() is None:
            return ("No training set to compare with: set 'Fixed dataset of N points' on the Training tab "
                    "(a model trained on fresh data is then compared with those points).")
        return ""

    def _idle(self):
        problem = self.meter_problem()
        self.measure_btn.setEnabled(not problem)
        self.cancel_btn.setEnabled(False)
        if self.measurement is None:        # the reason it cannot measure, or none any more
            self.status.setText(problem)

    def measure(self) -> bool:
        """Start the meter in a worker thread (memorisation.measure on a copy of the current model)."""
        problem = self.meter_problem()
        if problem:
            self.status.setText(problem)
            return False
        self.stop_worker()
        s = self.state
        self._measuring_step = s.model_step
        self._attach(JobWorker(memorisation.measure,    # on copies: training may go on meanwhile
                               dict(model=copy.deepcopy(s.model), cfg=copy.deepcopy(s.model_settings),
                                    density=s.model_density or s.density, points=self.training_points().clone(),
                                    n=METER_SAMPLES, seed=METER_SEED),
                               "memorisation meter", parent=self))
        self.measure_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status.setText(f"Sampling {METER_SAMPLES} points with the model's own sampler…")
        self.worker.start()
        return True

    @QtCore.Slot(float, str)
    def _on_progress(self, frac: float, what: str):
        if common.from_current_worker(self):
            self.progress.setValue(int(1000 * frac))
            self.status.setText(what)

    @QtCore.Slot(object)
    def _on_done(self, result):
        if not common.from_current_worker(self):
            return
        self.measurement = result
        self.meter_step = self._measuring_step
        self._idle()
        self.progress.setValue(1000)
        self.status.setText(f"Measured at model step {self.meter_step} with {result.sampler}.")
        self._show_meter()
        self.recompute()

    @property
    def meter(self) -> dict | None:
        """The meter's figures (trainers.studies.memorisation.memorisation_report), or None before a measurement."""
        return None if self.measurement is None else dict(self.measurement.report)

    def _show_meter(self):
        m = self.meter
        if m is None:
            self.meter_label.setText("")
            return
        n = len(self.measurement.points)
        self.meter_label.setText(
            f"Samples within {m['threshold']:.3g} (= {memorisation.NEAR_FACTOR:g}·σ_min) of one of the {n} "
            f"training points: <b>{m['share_near_training']:.1%}</b> (fresh data: "
            f"{m['share_near_training_fresh']:.1%})<br>Median distance to the nearest training point: "
            f"samples <b>{m['median_nn_distance']:.3g}</b>, fresh data {m['median_nn_distance_fresh']:.3g} "
            f"(ratio {m['ratio']:.2f}: ≈ 1 for a model that generalises, ≪ 1 for one that copies its "
            "training set)")
        self._draw_meter_samples()

    def _draw_meter_samples(self, *_):
        shown = self.measurement is not None and self.show_meter_samples.isChecked()
        self.meter_samples_item.setData(self.measurement.samples.numpy() if shown else None)

    def _forget_measurement(self):
        """A new density: the last measurement compared other data."""
        self.stop_worker()
        self.measurement = None
        self._show_meter()
        self._draw_meter_samples()
        self._idle()

    def export_target(self):
        return self.plot_widget
