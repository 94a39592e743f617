"""Training tab: model/objective settings, start/pause/reset, live loss and Fisher-divergence curves.

The objective combo lists the registered training methods (trainers.methods.METHODS); the "Method
parameters" rows are the chosen method's Params schema (parts.schema_form), the others' hidden. A
parameter ToyConfig has no field for goes to ToyConfig.extra.

Training runs in `explorer.workers.training.TrainWorker` (a QThread). Changing the density or any setting
that changes the network or the loss while training stops the worker, discards the weights and
starts a fresh run (a loss curve never mixes two problems); lr and batch changes likewise restart.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from trainers import fitting
from trainers.fitting import ToyConfig
from trainers.methods import METHODS
from trainers.studies import reflow as reflow_study

from ..state import build_network
from ..workers.job import JobWorker
from ..workers.training import TrainWorker
from .parts import axes, common
from .parts.schema_form import SchemaRows

TIP = {
    "model": "MLP: the network outputs the score vector s_θ(x) (for DDPM: the noise ε_θ).\n"
             "EBM: the network outputs an energy f_θ(x); the score is −∇ₓf_θ by autograd (Z_θ drops out).",
    "width": "Hidden units per layer of the MLP (SiLU activations).",
    "depth": "Number of hidden layers.",
    "lr": "Adam learning rate.",
    "batch": "Samples drawn from the density per step.",
    "n_data": "Fixed dataset of N points: draw N points from the density once (fixed by the seed; shown on "
              "the Density tab) and train on batches resampled from them, as with a real finite data set.\n"
              "Off (0): a fresh batch of the density every step, i.e. unlimited data.\n"
              "With small N and long training the model learns the empirical optimal score and its samples "
              "copy the training points (Score field tab: overlay and memorisation meter).",
    "budget": "Steps each Start trains at most (0: no limit). Start again for as many more.",
    "plateau": "Also stop when the Fisher divergence E‖s_θ − ∇log p‖² has not improved on its best "
               "by 1 % for this many steps. With a fixed dataset of N points it watches the training loss "
               "instead (fitting N points makes the divergence to the true density grow by design).",
    "image_runs": "Unticked: training pauses while an image run started from the Image-runs tab is "
                  "active (both would share the CPU) and resumes when it ends.\n"
                  "Ticked: training goes on beside the image run.",
}
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ToyConfig)}
DEFAULT_BUDGET = 20_000      # steps per Start
DEFAULT_PATIENCE = 3_000     # steps without a 1 % better Fisher divergence
MAX_N_DATA = 10_000          # fixed training sets above this are as good as fresh data here (and cost memory)


class TrainingView(QtWidgets.QWidget):
    title = "Training"
    runningChanged = QtCore.Signal(bool)
    progressed = QtCore.Signal(object)    # {"objective", "step", "loss", "rate"} of the latest progress report

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.worker: TrainWorker | None = None
        self._steps: list[np.ndarray] = []
        self._losses: list[np.ndarray] = []
        self._fisher_steps: list[int] = []
        self._fisher: list[float] = []
        self._last_rate = 0.0
        self._level_x = np.zeros(0)      # loss per noise level: σ (NCSN) or timestep 1 … T (DDPM)
        self._level_y = np.zeros(0)
        self.failure = ""               # why the last run stopped by itself ("" while it has not)
        self.stop_reason = ""           # why the last run ended: its budget, a plateau or a failure
        self._image_run = False         # an image run started from the app is active
        self._held = False              # paused by this view for the image run (not by the user)
        self._trained_density = None    # the density the current weights were trained on
        self._worker_settings = None    # the settings of the current (or last) worker's run
        # the ToyConfig fields this tab edits, each bound to its widget (state.train ↔ widgets)
        self.settings_form = common.FormBinding(self)
        field = self.settings_form.add

        lay = QtWidgets.QHBoxLayout(self)
        panel, side = common.side_panel()
        lay.addWidget(panel)
        s = state.train

        box, form = common.form_group("Model and objective")
        self.model_kind = field("model", common.combo([("mlp", "MLP score net"), ("ebm", "EBM (energy, s = −∇f)")],
                                                      tooltip=TIP["model"]))
        self.objective = field("objective", common.combo(
            [(k, f"{k} — {m.short or m.title}") for k, m in METHODS.items()],
            tooltip="\n".join(m.tip or f"{k}: {m.title}" for k, m in METHODS.items())))
        self.width_ = field("width", common.spin(8, 1024, 8, 8, tooltip=TIP["width"]))
        self.depth = field("depth", common.spin(1, 8, 1, tooltip=TIP["depth"]))
        self.lr = field("lr", common.spin(1e-5, 1e-1, 1e-3, 1e-4, 5, TIP["lr"], log=True))
        self.batch = field("batch", common.spin(16, 8192, 16, 64, tooltip=TIP["batch"]))
        for label, w in (("Model", self.model_kind), ("Objective", self.objective), ("Width", self.width_),
                         ("Depth", self.depth), ("Learning rate", self.lr), ("Batch", self.batch)):
            form.addRow(label, w)
        side.addWidget(box)

        box, form = common.form_group("Data")
        self.n_data = field("n_data", common.spin(0, MAX_N_DATA, 0, 10, tooltip=TIP["n_data"]))
        self.n_data.setSpecialValueText("off (fresh samples)")
        form.addRow("Fixed dataset of N points", self.n_data)
        # class-conditional training (issue #22): ToyConfig.n_classes follows the density while ticked
        self.conditional = QtWidgets.QCheckBox("Conditional on class")
        self.conditional.setToolTip(
            "Train s_θ(x|c) on the density's classes (its components' labels; the brush's colours), with a class "
            "embedding and label dropout to a null class, so one network gives s(x|c) and s(x) for classifier-free "
            "guidance (Score field and Samplers tabs). Methods with noise levels only (ncsn, ddpm, …).")
        self.conditional.setChecked(s.n_classes > 0)
        self.p_uncond = field("p_uncond", common.spin(0.0, 0.95, 0.1, 0.05, 2,
                              "Label dropout: the probability that a training example's class is replaced by the "
                              "null class (the unconditional score s(x)); 0.1 as in Ho & Salimans."))
        form.addRow(self.conditional)
        form.addRow("Label dropout p_uncond", self.p_uncond)
        self.p_uncond.setEnabled(s.n_classes > 0)
        side.addWidget(box)

        # each method's parameters, from its Params schema; only the chosen method's rows are shown
        box, form = common.form_group("Method parameters")
        self.method_rows: dict[str, SchemaRows] = {}
        for name, m in METHODS.items():
            rows = self.method_rows[name] = SchemaRows(form, m.Params, parent=self)
            rows.binding.changed.connect(lambda field_name, value, name=name: self._param_changed(name, field_name, value))
        # NCSN's σ₁ = 0 is "by the prior rule" (ToyConfig keeps 0 for it)
        sigma_max = self.method_rows["ncsn"].widgets.get("sigma_max") if "ncsn" in self.method_rows else None
        if sigma_max is not None:
            sigma_max.setSpecialValueText("auto (prior rule)")
        self.no_params = QtWidgets.QLabel("(none)")
        form.addRow(self.no_params)
        side.addWidget(box)
        self.settings_form.load(s)
        self._load_method_rows()

        box, form = common.form_group("Run")
        self.start_btn = QtWidgets.QPushButton("Start")
        self.start_btn.setToolTip("Start training (Ctrl+Return); while running: pause / resume.")
        self.reset_btn = QtWidgets.QPushButton("Reset")
        self.reset_btn.setToolTip("Stop, forget the weights and clear the curves.")
        self.reflow_btn = QtWidgets.QPushButton("Reflow")
        self.reflow_btn.setToolTip(
            "Rectified flow, one round (flow-matching models): draw pairs (z, ODE(z)) with the current model's own "
            "flow ODE and train on that fixed coupling, starting from its weights, in a worker thread; the new "
            "model replaces the current one. Straightness and the 1-step energy distance before and after are "
            "shown below (trainers.studies.reflow; the CLI: python -m trainers.toy reflow).")
        self.reflow_worker: JobWorker | None = None
        self.reflow_steps, self.reflow_pairs, self.reflow_nfe = (reflow_study.REFLOW_STEPS, reflow_study.REFLOW_PAIRS,
                                                                 reflow_study.REFLOW_NFE)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.start_btn)
        row.addWidget(self.reset_btn)
        row.addWidget(self.reflow_btn)
        form.addRow(row)
        self.budget = common.spin(0, 10_000_000, DEFAULT_BUDGET, 1000, tooltip=TIP["budget"])
        self.budget.setSpecialValueText("no limit")
        form.addRow("Step budget", self.budget)
        self.plateau_on = QtWidgets.QCheckBox("Stop on a plateau after")
        self.plateau_on.setChecked(True)
        self.plateau_on.setToolTip(TIP["plateau"])
        self.patience = common.spin(100, 1_000_000, DEFAULT_PATIENCE, 500, tooltip=TIP["plateau"])
        form.addRow(self.plateau_on, self.patience)
        self.budget_note = QtWidgets.QLabel(
            "Training stops after the step budget, or when the Fisher divergence (the training loss with "
            "a fixed dataset) has not improved by 1 % for the plateau steps; the status bar says which.")
        self.budget_note.setWordWrap(True)
        form.addRow(self.budget_note)
        self.keep_during_image = QtWidgets.QCheckBox("Keep training during image runs")
        self.keep_during_image.setToolTip(TIP["image_runs"])
        form.addRow(self.keep_during_image)
        self.log_y = QtWidgets.QCheckBox("Log-scale loss")
        self.log_y.setToolTip("Plot |loss| on a log axis (score-matching losses can be negative: "
                              "ESM/SSM equal the Fisher divergence minus a constant).")
        form.addRow(self.log_y)
        self.info = QtWidgets.QLabel("Not trained yet.")
        self.info.setWordWrap(True)
        form.addRow(self.info)
        side.addWidget(box)
        side.addStretch(1)

        plots = pg.GraphicsLayoutWidget()
        self.plots = plots
        self.loss_plot = plots.addPlot(title="Training loss", axisItems=axes.items())
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.showGrid(x=True, y=True, alpha=0.3)
        self.loss_raw = self.loss_plot.plot(pen=pg.mkPen(120, 160, 255, 90))
        self.loss_ema = self.loss_plot.plot(pen=pg.mkPen(80, 140, 255, 255, width=2))
        plots.nextRow()
        self.fisher_plot = plots.addPlot(title="Fisher divergence E‖s_θ − ∇log p‖² (exact score)",
                                         axisItems=axes.items())
        self.fisher_plot.setLabel("bottom", "step")
        self.fisher_plot.setLogMode(y=True)
        self.fisher_plot.setLabel("left", "E‖s_θ − ∇log p‖²")
        self.fisher_plot.showGrid(x=True, y=True, alpha=0.3)
        self.fisher_curve = self.fisher_plot.plot(pen=pg.mkPen(255, 150, 60, width=2), symbol="o", symbolSize=4,
                                                  symbolBrush=(255, 150, 60))
        # loss per noise level (methods with loss bins only): in the layout's third row while shown
        self.level_plot = pg.PlotItem(title="Loss per noise level (running mean)", axisItems=axes.items())
        self.level_plot.showGrid(x=True, y=True, alpha=0.3)
        self.level_plot.setLabel("left", "loss")
        self.level_curve_item = self.level_plot.plot(pen=pg.mkPen(120, 230, 140, width=2), symbol="o",
                                                     symbolSize=4, symbolBrush=(120, 230, 140))
        self.level_plot.setToolTip("Mean loss of the examples drawn at each noise level (bins of log σ for "
                                   "NCSN, of the timestep for DDPM), following training: where the objective's "
                                   "weighting puts the work the model has left.")
        lay.addWidget(plots, 1)

        self.start_btn.clicked.connect(self.toggle)
        self.reset_btn.clicked.connect(self.reset)
        self.reflow_btn.clicked.connect(self.reflow)
        state.modelChanged.connect(self._update_reflow_btn)
        self.runningChanged.connect(self._update_reflow_btn)
        self._update_reflow_btn()
        self.log_y.toggled.connect(self._redraw_loss)
        self.keep_during_image.toggled.connect(lambda _: self._apply_image_run_hold())
        self.plateau_on.toggled.connect(self.patience.setEnabled)
        self.settings_form.changed.connect(self._settings_from_widgets)
        self.conditional.toggled.connect(self._sync_conditional)
        state.trainSettingsChanged.connect(self._on_settings_changed)
        state.densityChanged.connect(self._on_density_changed)
        self._redraw_timer = QtCore.QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.timeout.connect(self._redraw_loss)
        self._show_method_rows()
        self._show_level_plot(s)

    # ------------------------------------------------------------------ settings
    def _settings_from_widgets(self, *_):
        self.state.update_train(**self.settings_form.values())

    def _param_changed(self, method: str, name: str, value):
        """A method parameter edited in its form: a ToyConfig field of that name, else extra[name]."""
        if method != self.state.train.objective:
            return
        if name in _CONFIG_FIELDS:
            self.state.update_train(**{name: value})
        else:
            self.state.update_train(extra={**self.state.train.extra, name: value})

    def _load_method_rows(self):
        """Show the settings' values in the chosen method's rows (its fields, else its extra values)."""
        train = self.state.train
        rows = self.method_rows.get(train.objective)
        if rows is not None:
            rows.load({s.name: getattr(train, s.name) if s.name in _CONFIG_FIELDS else train.extra.get(s.name, s.default)
                       for s in rows.specs})

    def _show_method_rows(self):
        obj = self.state.train.objective
        for name, rows in self.method_rows.items():
            rows.set_visible(name == obj)
        rows = self.method_rows.get(obj)
        self.no_params.setVisible(rows is None or not rows.specs)

    def _on_settings_changed(self):
        self._sync_conditional()
        self.settings_form.load(self.state.train)
        self._load_method_rows()
        self._show_method_rows()
        if not self.is_running():
            self._show_level_plot(self.state.train)
        if self.is_running():
            self.restart("settings changed")

    def _sync_conditional(self, *_):
        """n_classes = the density's number of classes while 'Conditional on class' is ticked and the method
        has noise levels, else 0."""
        on = self.conditional.isChecked() and METHODS[self.state.train.objective].cond is not None
        self.p_uncond.setEnabled(on)
        self.state.update_train(n_classes=self.state.density.n_classes if on else 0)

    def _on_density_changed(self):
        self._sync_conditional()
        if self.is_running():
            self.restart("density changed")

    # ------------------------------------------------------------------ run control
    def is_running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def toggle(self):
        if self.is_running():
            paused = not self.worker.paused
            self._held = False              # the user's own choice wins over the image-run hold
            self.worker.set_paused(paused)
            self.start_btn.setText("Resume" if paused else "Pause")
            self.state.status.emit("Training paused" if paused else "Training resumed")
            self.runningChanged.emit(not paused)
        else:
            self.start()

    def start(self, max_steps: int | None = None, fresh: bool | None = None):
        """Start training. Continues from the current weights when they were trained with the same
        settings on the same density, else starts fresh."""
        self.stop()
        s = self.state
        same = (s.model is not None and s.model_settings == s.train and fresh is not True
                and self._trained_density is s.density)
        if not same:
            self._clear_curves()
        init = {k: v.clone() for k, v in s.model.state_dict().items()} if same else None
        w = TrainWorker(_copy(s.train), s.density, init, s.model_step if same else 0, parent=self)
        budget = self.budget.value()
        w.max_steps = max_steps if max_steps is not None else (budget or None)
        w.patience_steps = self.patience.value() if self.plateau_on.isChecked() else None
        # Connected to bound methods of this GUI-thread object → queued into the GUI thread.
        w.progress.connect(self._on_progress)
        w.metric.connect(self._on_metric)
        w.snapshot.connect(self._on_snapshot)
        w.failed.connect(self._on_failed)
        w.finished.connect(self._on_finished)
        self._trained_density = s.density
        self._worker_settings = w.settings
        self._show_level_plot(w.settings)
        self.failure = self.stop_reason = ""
        self.worker = w
        self._held = False
        w.start()
        self.start_btn.setText("Pause")
        self.runningChanged.emit(True)
        self.state.status.emit(f"Training {s.train.model} with {s.train.objective}…")
        self._apply_image_run_hold()

    def stop(self):
        """Cancel the worker and wait for it (one optimiser step at most)."""
        w = self.worker
        if w is None:
            return
        common.retire_worker(w, (w.progress, w.metric, w.snapshot, w.failed, w.finished))
        self.worker = None
        self.start_btn.setText("Start")
        self.runningChanged.emit(False)

    def restart(self, why: str):
        self.stop()
        self.state.set_model(None, None)
        self._clear_curves()
        self.start()
        self.state.status.emit(f"{why.capitalize()}: training restarted from scratch")

    # ------------------------------------------------------------------ reflow (flow matching)
    def reflow_problem(self) -> str:
        """Why a reflow round cannot start now ('' when it can)."""
        s = self.state
        if s.model is None or s.model_settings is None or s.model_settings.objective != "fm":
            return "Reflow needs a flow-matching model (objective fm)."
        if self.is_running():
            return "Pause or stop training first."
        if self.reflow_worker is not None and self.reflow_worker.isRunning():
            return "A reflow round is running."
        return ""

    def _update_reflow_btn(self, *_):
        problem = self.reflow_problem()
        self.reflow_btn.setEnabled(not problem)
        self.reflow_btn.setToolTip(self.reflow_btn.toolTip().split("\n\n")[0] + (f"\n\n{problem}" if problem else ""))

    def reflow(self) -> bool:
        """One reflow round of the current model in a worker (trainers.studies.reflow.reflow_round)."""
        problem = self.reflow_problem()
        if problem:
            self.info.setText(problem)
            return False
        s = self.state
        w = JobWorker(reflow_study.reflow_round,
                      dict(model=copy.deepcopy(s.model), cfg=copy.deepcopy(s.model_settings),   # training may go on
                           density=s.model_density or s.density, steps=self.reflow_steps, pairs=self.reflow_pairs,
                           nfe=self.reflow_nfe), "reflow", parent=self)
        w.progress.connect(self._on_reflow_progress)
        w.done.connect(self._on_reflow_done)
        w.failed.connect(self._on_reflow_failed)
        self.reflow_worker = w
        self._reflow_from = (s.model_step, s.model_density or s.density)
        w.start()
        self._update_reflow_btn()
        self.info.setText("Reflow: drawing pairs with the model's flow ODE…")
        return True

    @QtCore.Slot(float, str)
    def _on_reflow_progress(self, frac: float, what: str):
        if self.sender() is self.reflow_worker:
            self.info.setText(f"Reflow: {what} ({frac:.0%})")

    @QtCore.Slot(object)
    def _on_reflow_done(self, r):
        if self.sender() is not self.reflow_worker:
            return
        step, density = self._reflow_from
        self.state.set_model(r.model, r.cfg, step + r.info["steps"], density=density)
        b, a = r.straightness_before, r.straightness_after
        self.info.setText(f"Reflow round done ({r.info['pairs']} pairs at {r.info['nfe']} NFE, {r.info['steps']} "
                          f"steps): straightness {b['straightness']:.3g} → {a['straightness']:.3g}; 1-step energy "
                          f"distance {r.one_step_before:.3g} → {r.one_step_after:.3g}.")
        self.state.status.emit("Reflow round done")
        self._update_reflow_btn()

    @QtCore.Slot(str)
    def _on_reflow_failed(self, msg: str):
        if self.sender() is self.reflow_worker:
            self.info.setText(f"<span style='color:#c33'>{msg}</span>")
            self._update_reflow_btn()

    def reset(self):
        self.stop()
        self.state.set_model(None, None)
        self._clear_curves()
        self.info.setText("Reset: not trained.")
        self.state.status.emit("Training reset")

    def session_restored(self):
        """The state now holds a restored session's settings and weights (trained on its density)."""
        self._clear_curves()
        self._trained_density = self.state.density
        self.info.setText(f"Restored model at step {self.state.model_step}" if self.state.model is not None
                          else "Restored session (no model)")

    def shutdown(self):
        """End training, a reflow round and the redraw timer (the window is closing)."""
        self._redraw_timer.stop()
        self.stop()
        if self.reflow_worker is not None:
            common.retire_worker(self.reflow_worker, (self.reflow_worker.progress, self.reflow_worker.done,
                                                      self.reflow_worker.failed))
            self.reflow_worker = None

    def closeEvent(self, ev):
        self.shutdown()
        super().closeEvent(ev)

    # ------------------------------------------------------------------ image runs share the CPU
    @QtCore.Slot(bool)
    def set_image_run_active(self, on: bool):
        """The Image-runs tab started (True) or ended (False) its training process."""
        self._image_run = bool(on)
        self._apply_image_run_hold()

    def held_for_image_run(self) -> bool:
        return self._held and self.is_running() and self.worker.paused

    def _apply_image_run_hold(self):
        hold = self._image_run and not self.keep_during_image.isChecked()
        if not self.is_running():
            self._held = False
            return
        if hold and not self.worker.paused:
            self.worker.set_paused(True)
            self._held = True
            self.start_btn.setText("Resume")
            self.state.status.emit("Training paused while the image run is active (tick 'Keep training "
                                   "during image runs' to go on beside it)")
        elif not hold and self._held:
            self._held = False
            if self.worker.paused:
                self.worker.set_paused(False)
                self.start_btn.setText("Pause")
                self.state.status.emit("Training resumed: " + ("the image run ended" if not self._image_run
                                                               else "kept going beside the image run"))

    # ------------------------------------------------------------------ worker → GUI (GUI thread)
    @QtCore.Slot(object)
    def _on_progress(self, d):
        if not common.from_current_worker(self):
            return
        self._steps.append(d["steps"])
        self._losses.append(d["losses"])
        self._last_rate = d["rate"] or self._last_rate
        if d.get("level_curve") is not None:
            x, y = d["level_curve"]
            self._level_x, self._level_y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
            self._level_x = self._level_x + self._level_offset     # 0-based t in the code, t = 1 … T in labels
        if not self._redraw_timer.isActive():
            self._redraw_timer.start(100)     # at most ~10 curve redraws a second
        step = int(d["steps"][-1])
        self.info.setText(f"step {step}, loss {d['losses'][-1]:.4g}"
                          + (f", {self._last_rate:.0f} steps/s" if self._last_rate else ""))
        self.progressed.emit({"objective": self._worker_settings.objective, "step": step,
                              "loss": float(d["losses"][-1]), "rate": self._last_rate})

    @QtCore.Slot(object)
    def _on_metric(self, d):
        if not common.from_current_worker(self):
            return
        self._fisher_steps.append(d["step"])
        self._fisher.append(max(d["fisher"], 1e-12))
        self.fisher_curve.setData(self._fisher_steps, self._fisher)
        # A log axis labels only powers of ten: show whole decades so it always has tick labels.
        lo, hi = math.floor(math.log10(min(self._fisher))), math.ceil(math.log10(max(self._fisher)))
        self.fisher_plot.setYRange(lo, max(hi, lo + 1), padding=0)
        self.fisher_plot.setTitle(f"Fisher divergence vs exact score at {d['label']}: {d['fisher']:.4g}"
                                  + (f"; straightness of the flow {d['straightness']:.3g}" if "straightness" in d else ""))

    @QtCore.Slot(object)
    def _on_snapshot(self, d):
        if not common.from_current_worker(self):
            return
        model = build_network(self._worker_settings)
        model.load_state_dict(d["state"])
        model.eval()
        self.state.set_model(model, self._worker_settings, d["step"], density=self._trained_density)

    @QtCore.Slot(str)
    def _on_failed(self, msg):
        if not common.from_current_worker(self):
            return
        self.failure = msg
        self.state.status.emit(msg)
        self.info.setText(f"<span style='color:#c33'>{msg}</span>")

    @QtCore.Slot()
    def _on_finished(self):
        if not common.from_current_worker(self):
            return
        self.start_btn.setText("Start")
        self._held = False
        self.stop_reason = self.failure or self.worker.stop_reason
        if self.worker.stop_reason:
            self.info.setText(f"Stopped at step {self.state.model_step}: {self.worker.stop_reason}. "
                              "Start trains on.")
        self.runningChanged.emit(False)
        if not self.failure:            # the failure stays in the status bar
            why = f": {self.worker.stop_reason}" if self.worker.stop_reason else ""
            self.state.status.emit(f"Training stopped at step {self.state.model_step}{why}")

    # ------------------------------------------------------------------ curves
    def _clear_curves(self):
        self._steps, self._losses, self._fisher_steps, self._fisher = [], [], [], []
        self._level_x, self._level_y = np.zeros(0), np.zeros(0)
        self.level_curve_item.setData([], [])
        self.loss_raw.setData([], [])
        self.loss_ema.setData([], [])
        self.fisher_curve.setData([], [])

    def loss_history(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._steps:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(self._steps), np.concatenate(self._losses)

    def _redraw_loss(self):
        x, y = self.loss_history()
        if len(x) == 0:
            return
        if len(x) > 4000:                     # draw at most ~4000 points
            k = len(x) // 4000 + 1
            n = len(x) // k * k
            x, y = x[:n].reshape(-1, k)[:, -1], y[:n].reshape(-1, k).mean(1)
        ema = _ema(y, 0.05 if len(y) > 50 else 0.3)
        log = self.log_y.isChecked()
        self.loss_plot.setLogMode(y=log)
        if log:
            y, ema = np.maximum(np.abs(y), 1e-12), np.maximum(np.abs(ema), 1e-12)
        self.loss_raw.setData(x, y)
        self.loss_ema.setData(x, ema)
        self.loss_plot.setLabel("left", "|loss|" if log else "loss")
        if len(self._level_x):
            self.level_curve_item.setData(self._level_x, self._level_y)

    # ------------------------------------------------------------------ loss per noise level
    def level_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-level curve as shown: (σ at each bin centre for NCSN, or timestep 1 … T for DDPM;
        running mean loss), the bins seen so far; empty for methods without loss bins."""
        return self._level_x.copy(), self._level_y.copy()

    def _show_level_plot(self, settings: ToyConfig):
        """Show the per-level plot (third row) for a method with loss bins (NCSN, DDPM), remove it for
        the others; its axis as the method's bins say (Method.loss_bins)."""
        shown = self.level_plot in self.plots.ci.items
        bins = fitting.method_for(settings).loss_bins()
        want = bins is not None
        if want and not shown:
            self.plots.ci.addItem(self.level_plot, row=2, col=0)
            self.plots.ci.layout.setRowStretchFactor(0, 2)
            self.plots.ci.layout.setRowStretchFactor(1, 2)
            self.plots.ci.layout.setRowStretchFactor(2, 1)
        elif not want and shown:
            self.plots.ci.removeItem(self.level_plot)
        self._level_offset = bins.offset if want else 0.0
        if want:
            self.level_plot.setLogMode(x=bins.log, y=False)
            self.level_plot.setLabel("bottom", bins.axis)

    def export_target(self):
        return self.plots


def _ema(y: np.ndarray, a: float) -> np.ndarray:
    out = np.empty_like(y, dtype=np.float64)
    acc = y[0]
    for i, v in enumerate(y):
        acc = a * v + (1 - a) * acc
        out[i] = acc
    return out


def _copy(s):
    import copy
    return copy.deepcopy(s)
