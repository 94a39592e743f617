"""Learned-density tab: the density the trained model implies, by the probability-flow ODE, beside the true one.

For the current model (NCSN or DDPM: the ODE needs a score at every noise level), the study
trainers.studies.learned_density (in a JobWorker thread) integrates
the PF-ODE from σ_min to σ_max over the model's own σ range (Heun, exact 2D divergence) for every point
of a grid and for fresh samples of p_{σ_min} (σ_min: the model's smallest level). Three heat maps: the
model's log p, the true log p_{σ_min} (one shared colour scale) and their difference; and the model's
NLL of the samples against the true NLL, the floor no model can beat (the gap estimates
KL(p_{σ_min} ‖ p_model)). For DDPM models also the −ELBO of clean data, an upper bound on the model's NLL.

Compute runs on demand; when the tab is shown and the model changed since the last result, it
recomputes by itself (a few seconds at the default sizes, in the worker, with Cancel).
"""
from __future__ import annotations

import copy

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from trainers.studies import learned_density
from trainers.studies.learned_density import LearnedDensity

from ..workers.job import JobWorker
from .parts import axes, common
from .parts.stale_banner import StaleModelBanner

DIFF_CMAP = pg.colormap.get("CET-D1")
SHOWN_NATS = 12.0          # the shared log p scale shows the top 12 nats (lower: one colour)
MASS_NATS = 6.0            # the difference's colour scale is set where true log p > max − 6
TIP = {
    "grid": "Points a side of the grid over the view; each point is integrated along the PF-ODE "
            "(cost ∝ points × steps).",
    "steps": "Heun steps of the PF-ODE from σ_min to σ_max (Karras σ grid); each step is two "
             "network evaluations plus two backward passes per dimension (exact divergence).",
    "samples": "Fresh samples of p_{σ_min} for the NLLs (and clean samples for the DDPM ELBO).",
    "auto": "When this tab is shown and the model or density has changed since the last result, compute again "
            "(measured on one CPU core with the default 128-wide MLP: the 48×48 grid with 30 steps ≈ 2 s, "
            "1,000 samples ≈ 1 s, a DDPM model's ELBO ≈ 1 s; in the background, with Cancel).",
}
EXPLAIN = ("A score model defines a density through its probability-flow ODE: integrate dy/dσ = −σ s_θ(y, σ) "
           "from σ_min up to σ_max with the change in log-density, and end there with log p_σmax: exact for the exact "
           "score, the Gaussian N(m, C + σ_max² I) matched to the training data for a network (docs/math.md §10). The NLL of "
           "samples of p_{σ_min} can never go below the true NLL (their entropy): the gap is the KL divergence "
           "from the truth to the model (up to the ODE's discretisation and the Monte-Carlo error).")


class LearnedDensityView(common.JobTab, QtWidgets.QWidget):
    title = "Learned density"

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.worker: JobWorker | None = None
        self.result: LearnedDensity | None = None
        self._model_version = 0            # bumped on every model change
        self._result_version = -1          # the version the result was computed for
        self._running_version = -1

        lay = QtWidgets.QHBoxLayout(self)
        panel, side = common.side_panel()
        lay.addWidget(panel)
        self.stale_banner = StaleModelBanner(state)      # the model no longer matches: say so, offer a retrain
        side.addWidget(self.stale_banner)
        box, form = common.form_group("Model")
        self.model_note = common.wrapped_label()
        form.addRow(self.model_note)
        side.addWidget(box)

        box, form = common.form_group("Compute")
        self.n_grid = common.spin(8, 160, 48, 8, tooltip=TIP["grid"])
        form.addRow("Grid points a side", self.n_grid)
        self.n_steps = common.spin(4, 200, 30, 5, tooltip=TIP["steps"])
        form.addRow("Heun steps", self.n_steps)
        self.n_samples = common.spin(100, 20000, 1000, 500, tooltip=TIP["samples"])
        form.addRow("NLL samples", self.n_samples)
        self.compute_btn = QtWidgets.QPushButton("Compute")
        self.compute_btn.setToolTip("Integrate the PF-ODE for the grid and the samples with the weights as of now.")
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop the computation (the previous result stays).")
        self.cancel_btn.setEnabled(False)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.compute_btn)
        row.addWidget(self.cancel_btn)
        form.addRow(row)
        self.auto = QtWidgets.QCheckBox("Auto-compute when shown")
        self.auto.setChecked(True)
        self.auto.setToolTip(TIP["auto"])
        form.addRow(self.auto)
        self.progress, self.status = common.progress_rows(form, "Not computed yet.")
        side.addWidget(box)
        self.nll_label = common.readout_group(side, "Negative log-likelihood (nats)")
        common.end_side_panel(side, EXPLAIN)

        self.plots = pg.GraphicsLayoutWidget()
        lay.addWidget(self.plots, 1)
        self.model_plot = self.plots.addPlot(title="Model log p (PF-ODE)", axisItems=axes.items())
        self.true_plot = self.plots.addPlot(title="True log p_σmin", axisItems=axes.items())
        self.plots.nextRow()
        self.diff_plot = self.plots.addPlot(title="Model − true log p", axisItems=axes.items())
        self.model_img = common.heat_image()
        self.true_img = common.heat_image()
        self.diff_img = common.heat_image(DIFF_CMAP)
        for plot, img in ((self.model_plot, self.model_img), (self.true_plot, self.true_img),
                          (self.diff_plot, self.diff_img)):
            plot.addItem(img)
            common.square_plot(plot, state.bounds)
        self.logp_bar = pg.ColorBarItem(values=(-SHOWN_NATS, 0), colorMap=common.DENSITY_CMAP, interactive=False,
                                        label="log p (nats)")
        self.logp_bar.setImageItem([self.model_img, self.true_img])
        self.plots.addItem(self.logp_bar, row=0, col=2)
        self.diff_bar = pg.ColorBarItem(values=(-1, 1), colorMap=DIFF_CMAP, interactive=False,
                                        label="Δ log p (nats)")
        self.diff_bar.setImageItem(self.diff_img)
        self.plots.addItem(self.diff_bar, row=1, col=2)
        self.summary = pg.LabelItem(justify="left")
        self.plots.addItem(self.summary, row=1, col=1)

        self.compute_btn.clicked.connect(self.compute)
        self.cancel_btn.clicked.connect(self.cancel)
        state.modelChanged.connect(self._on_model_changed)
        state.densityChanged.connect(self._on_model_changed)      # the truth changed: also out of date
        self._on_model_changed()

    # ------------------------------------------------------------------ model
    def model_problem(self) -> str:
        """Why there is nothing to compute ('' when the current model can be integrated)."""
        s = self.state
        if s.model is None or s.model_settings is None:
            return ("No trained model yet: train one on the Training tab (NCSN or DDPM), then come back "
                    "and press Compute.")
        return learned_density.model_problem(s.model_settings)

    def _on_model_changed(self):
        self._model_version += 1
        self.compute_btn.setEnabled(not self.model_problem() and not self.is_running())
        self._update_note()

    def _update_note(self):
        problem = self.model_problem()
        if problem:
            self.model_note.setText(problem)
            return
        ms = self.state.model_settings
        kind = ms.objective.upper()           # the method's registry name: NCSN, DDPM, FM
        stale = self.result is not None and self.is_stale()
        self.model_note.setText(f"{kind} {ms.model.upper()} at step {self.state.model_step}"
                                + ("; the maps are from an earlier model or density: Compute to update"
                                   if stale else "") + ".")

    def is_stale(self) -> bool:
        return self._result_version != self._model_version

    # ------------------------------------------------------------------ run

    def compute(self):
        if self.is_running():
            return
        problem = self.model_problem()
        if problem:
            self.status.setText(problem)
            return
        self.stop_worker()
        s = self.state
        w = JobWorker(learned_density.of_model,
                      dict(model=copy.deepcopy(s.model), cfg=copy.deepcopy(s.model_settings),
                           trained_on=s.model_density or s.density, density=s.density, bounds=tuple(s.bounds),
                           n_grid=self.n_grid.value(), n_steps=self.n_steps.value(), n_samples=self.n_samples.value()),
                      "learned density", problem=learned_density.problem, parent=self)
        self._attach(w)
        self._running_version = self._model_version
        self.status.setText(f"Integrating the PF-ODE for {self.n_grid.value()}² grid points and "
                            f"{self.n_samples.value()} samples…")
        self.compute_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        w.start()

    def _idle(self):
        self.compute_btn.setEnabled(not self.model_problem())
        self.cancel_btn.setEnabled(False)

    def showEvent(self, ev):
        super().showEvent(ev)
        if self.auto.isChecked() and self.is_stale() and not self.is_running() and not self.model_problem():
            QtCore.QTimer.singleShot(0, self.compute)       # after the tab has been drawn

    @QtCore.Slot(float, str)
    def _on_progress(self, frac: float, what: str):
        if common.from_current_worker(self):
            self.progress.setValue(int(1000 * frac))

    @QtCore.Slot(object)
    def _on_done(self, result):
        if not common.from_current_worker(self):
            return
        self._idle()
        self._result_version = self._running_version
        self.show_result(result)

    def run_demo(self, timeout_s: float = 60.0):
        self.compute()
        self.wait(timeout_s)

    # ------------------------------------------------------------------ results as numbers
    def numbers(self) -> dict:
        """The last result's numbers (nats): model_nll, true_nll, gap, and for DDPM neg_elbo,
        clean_true_nll and elbo_holds; {} before the first result."""
        r = self.result
        if r is None:
            return {}
        out = {"model_nll": r.model_nll, "true_nll": r.true_nll, "gap": r.gap, "sigma_min": r.sigma_min,
               "sigma_max": r.sigma_max, "grid_seconds": r.grid_seconds, "seconds": r.seconds}
        if r.elbo is not None:
            out.update(neg_elbo=r.elbo["elbo_nats"], clean_true_nll=r.clean_true_nll, elbo_holds=r.elbo_holds)
        return out

    def grids(self) -> dict[str, np.ndarray]:
        """The last result's n×n maps (row 0 = ymin): model, true and difference of log p."""
        r = self.result
        if r is None:
            return {}
        return {"model": r.model_logp, "true": r.true_logp, "difference": r.difference}

    # ------------------------------------------------------------------ show
    def show_result(self, r: LearnedDensity):
        self.result = r
        hi = float(max(np.nanmax(r.model_logp), np.nanmax(r.true_logp)))
        levels = (hi - SHOWN_NATS, hi)
        for img, data in ((self.model_img, r.model_logp), (self.true_img, r.true_logp)):
            common.set_heat(img, np.clip(data, *levels), r.bounds, levels)
        self.logp_bar.setLevels(levels)
        diff = r.difference
        mass = r.true_logp > hi - MASS_NATS         # scale the error where there is mass to speak of
        ref = np.abs(diff[mass]) if mass.any() else np.abs(diff).ravel()
        q = float(np.nanquantile(ref, 0.95)) if ref.size else 1.0
        q = q if np.isfinite(q) and q > 0 else 1.0
        # where both maps are below the shown scale, neither has mass to speak of: drawn neutral
        faint = np.maximum(r.model_logp, r.true_logp) < hi - SHOWN_NATS
        common.set_heat(self.diff_img, np.where(faint, 0.0, np.clip(diff, -q, q)), r.bounds, (-q, q))
        self.diff_bar.setLevels((-q, q))
        for plot in (self.model_plot, self.true_plot, self.diff_plot):
            common.square_plot(plot, r.bounds)
        self.diff_plot.setTitle("Model − true log p (white: no mass in either)")
        self.true_plot.setTitle(f"True log p_σmin, σ_min = {r.sigma_min:.3g}")
        self.model_plot.setTitle(f"Model log p (PF-ODE, {r.n_steps} Heun steps, σ to {r.sigma_max:.3g})")
        self.progress.setValue(1000)

        rows = [f"model (PF-ODE): <b>{r.model_nll:.3f}</b>",
                f"true p_σmin (the floor): <b>{r.true_nll:.3f}</b>",
                f"gap ≈ KL(p ‖ model): {r.gap:+.3f}"]
        if r.elbo is not None:
            holds = r.elbo_holds
            verdict = ("<span style='color:#2a2'>holds</span>" if holds
                       else "<span style='color:#c33'>does not hold</span>")
            dec = {"beta1": "β₁", "reference": "β̃₂"}.get(r.elbo.get("decoder_variance"), "custom")
            rows += [f"DDPM −ELBO of clean data: <b>{r.elbo['elbo_nats']:.3f}</b> (decoder variance {dec})",
                     f"true NLL of clean data: {r.clean_true_nll:.3f}",
                     f"bound −ELBO ≥ true NLL: {verdict}"]
        self.nll_label.setText("<br>".join(rows))
        self.summary.setText("<br>".join(rows), size="10pt")
        note = f" Note: {r.range_note}." if r.range_note else ""
        self.status.setText(f"{r.n_grid}² grid in {r.grid_seconds:.1f} s, {r.n_samples} samples; "
                            f"{r.seconds:.1f} s in all.{note}")
        self._update_note()

    def export_target(self):
        return self.plots
