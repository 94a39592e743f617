"""History tab: what the model was at each point of its training, from the weight snapshots that the
app state keeps during live training (AppState.history, trainers.studies.history.SnapshotHistory).

A slider picks a snapshot; for its weights trainers.studies.snapshots computes (in a JobWorker thread), side by side, (a) the learned score
(red) over the true score (white) at the model's least-noisy level, with the Fisher divergence there,
(b) the model's log-density by the PF-ODE on a coarse grid, with its NLL of fresh data beside the true
NLL, and (c) fresh samples from the model's own sampler. The old pictures stay until the new ones are
ready; moving the slider again cancels a request that is no longer wanted. Everything is computed in
trainers/; this view only draws.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from trainers import grid

from trainers.studies import snapshots
from trainers.studies.snapshots import SnapshotPictures

from ..workers.job import JobWorker
from .parts import axes, common
from .parts.stale_banner import StaleModelBanner

SHOWN_NATS = 10.0          # the log p map shows the top 10 nats (lower: one colour)
DEBOUNCE_MS = 150          # a slider drag starts one job when it rests, not one per value
CONTOUR_N = 64
TIP = {
    "slider": "Training step: one position per weight snapshot (kept at least every "
              "{every} steps, at most {cap}; older ones are thinned, the first and the newest stay).",
    "arrows": "Arrows per side of the score-field grid.",
    "grid": "Points a side of the PF-ODE log-density grid (cost ∝ points × steps).",
    "steps": "Heun steps of the PF-ODE from σ_min to σ_max.",
    "particles": "Particles drawn by the model's own sampler (annealed Langevin for NCSN, DDPM for DDPM, "
                 "Langevin otherwise).",
}
EXPLAIN = ("Left: the learned score (red) over the true score (white) at the least-noisy level. Middle: the "
           "log-density the model implies through its probability-flow ODE (top 10 nats). Right: fresh samples "
           "of the model's own sampler. Blue contours: the true density the model was trained on.")


class HistoryView(common.JobTab, QtWidgets.QWidget):
    title = "History"

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.worker: JobWorker | None = None
        self._stale_workers: list[JobWorker] = []     # cancelled, still finishing their chunk
        self.result: SnapshotPictures | None = None
        self.model = None                  # the network of the selected snapshot
        self.selected_step: int | None = None
        self._pending = False              # the selection changed while a job ran: start again after it
        self._dirty = True                 # the selection changed while the tab was hidden

        lay = QtWidgets.QHBoxLayout(self)
        panel, side = common.side_panel()
        lay.addWidget(panel)
        self.stale_banner = StaleModelBanner(state)      # the model no longer matches: say so, offer a retrain
        side.addWidget(self.stale_banner)
        box, form = common.form_group("Training step")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setToolTip(TIP["slider"].format(every=state.history.every, cap=state.history.max_snapshots))
        self.slider.setPageStep(1)
        form.addRow(self.slider)
        self.step_label = common.wrapped_label()
        form.addRow(self.step_label)
        side.addWidget(box)

        box, form = common.form_group("Pictures")
        self.n_arrows = common.spin(6, 60, 20, tooltip=TIP["arrows"])
        form.addRow("Arrows a side", self.n_arrows)
        self.n_grid = common.spin(8, 96, 32, 8, tooltip=TIP["grid"])
        form.addRow("Density grid a side", self.n_grid)
        self.n_steps = common.spin(4, 100, 16, 4, tooltip=TIP["steps"])
        form.addRow("PF-ODE Heun steps", self.n_steps)
        self.n_particles = common.spin(100, 10000, 1500, 250, tooltip=TIP["particles"])
        form.addRow("Samples", self.n_particles)
        self.progress, self.status = common.progress_rows(form)
        side.addWidget(box)
        self.numbers_label = common.readout_group(side, "At this step")
        common.end_side_panel(side, EXPLAIN)

        self.plots = pg.GraphicsLayoutWidget()
        lay.addWidget(self.plots, 1)
        self.field_plot = self.plots.addPlot(title="Score field", axisItems=axes.items())
        self.density_plot = self.plots.addPlot(title="Learned log p (PF-ODE)", axisItems=axes.items())
        self.samples_plot = self.plots.addPlot(title="Samples", axisItems=axes.items())
        self.true_arrows = pg.PlotDataItem(connect="pairs", pen=common.TRUE_PEN)
        self.model_arrows = pg.PlotDataItem(connect="pairs", pen=common.MODEL_PEN)
        self.model_arrows.setZValue(6)
        self.true_arrows.setZValue(5)
        self.field_plot.addItem(self.true_arrows)
        self.field_plot.addItem(self.model_arrows)
        self.density_img = common.heat_image()
        self.density_plot.addItem(self.density_img)
        self.points = common.PointsItem(color=(255, 200, 40), size=2, alpha=110)
        self.samples_plot.addItem(self.points)
        self._contours: list = []
        for col, plot in enumerate((self.field_plot, self.density_plot, self.samples_plot)):
            common.square_plot(plot, state.bounds)
            self.plots.ci.layout.setColumnStretchFactor(col, 1)

        self._debounce = QtCore.QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._start_job)
        self.slider.valueChanged.connect(self._on_slider)
        for w in (self.n_arrows, self.n_grid, self.n_steps, self.n_particles):
            w.valueChanged.connect(self._request)
        state.historyChanged.connect(self._on_history)
        self._on_history()

    # ------------------------------------------------------------------ snapshots
    def snapshot_steps(self) -> list[int]:
        return list(self.state.history.steps)

    def _on_history(self):
        steps = self.snapshot_steps()
        at_end = self.slider.value() >= self.slider.maximum()
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(steps) - 1))
        if at_end:
            self.slider.setValue(self.slider.maximum())        # following the newest snapshot
        self.slider.blockSignals(False)
        self.slider.setEnabled(len(steps) > 1)
        self._select(from_user=False)

    def _on_slider(self, _=None):
        self._select(from_user=True)

    def set_index(self, i: int):
        """Move the slider to snapshot i (negative: from the end), as a person would."""
        n = len(self.snapshot_steps())
        self.slider.setValue(i % n if n else 0)

    def _select(self, from_user: bool):
        """Load the selected snapshot's weights and ask for its pictures."""
        steps = self.snapshot_steps()
        if not steps:
            self.model, self.selected_step = None, None
            self._debounce.stop()
            self._retire_current()
            self._clear_pictures()
            self.step_label.setText("No snapshots yet: train an NCSN or DDPM model on the Training tab; its "
                                    "weights are kept every few dozen steps.")
            return
        i = min(self.slider.value(), len(steps) - 1)
        step, model = self.state.snapshot_network(i)
        if step == self.selected_step and self.model is not None and not from_user:
            return                         # the selection is unchanged (an older snapshot was thinned out)
        self.model, self.selected_step = model, step
        self.step_label.setText(f"Step {step:,} (snapshot {i + 1} of {len(steps)}; "
                                f"{steps[0]:,} … {steps[-1]:,})")
        self._request(from_user=from_user)

    # ------------------------------------------------------------------ jobs
    def _request(self, *_, from_user: bool = True):
        if self.model is None:
            return
        if not self.isVisible():
            self._dirty = True
            return
        if self.is_running() and not from_user:
            self._pending = True           # new weights during training: after the job in flight
            return
        self._debounce.start()

    def showEvent(self, ev):
        super().showEvent(ev)
        if self.is_running() or self._debounce.isActive():
            return
        if self._dirty or (self.model is not None and self.shown_step != self.selected_step):
            self._dirty = False
            self._request()

    def _start_job(self):
        if self.model is None:
            return
        self._retire_current()
        s = self.state
        sizes = dict(n_arrows=self.n_arrows.value(), n_grid=self.n_grid.value(), n_steps=self.n_steps.value(),
                     n_particles=self.n_particles.value())
        w = JobWorker(snapshots.snapshot_pictures,
                      dict(model=self.model, cfg=s.history_settings, density=s.history_density, bounds=tuple(s.bounds),
                           step=int(self.selected_step), **sizes),
                      "history pictures", problem=snapshots.problem, parent=self)
        self._pending = False
        self._attach(w)
        self.status.setText(f"Computing the pictures at step {self.selected_step:,}…")
        w.start()

    def _retire_current(self):
        """Cancel the job in flight without waiting for it: its signals are cut, so nothing it still
        sends arrives here, and it is deleted when its thread ends."""
        w, self.worker = self.worker, None
        if w is None:
            return
        for sig in (w.progress, w.done, w.cancelled, w.failed):
            try:
                sig.disconnect()
            except (RuntimeError, TypeError):
                pass
        w.cancel()
        if w.isRunning():
            self._stale_workers.append(w)
            w.finished.connect(lambda w=w: self._forget(w))
        else:
            w.deleteLater()

    def _forget(self, w):
        if w in self._stale_workers:
            self._stale_workers.remove(w)
            w.deleteLater()

    def stop_worker(self):
        self._debounce.stop()
        self._retire_current()
        for w in list(self._stale_workers):
            w.wait()
            self._forget(w)
        self._idle()

    def _idle(self):
        pass

    def settle(self, timeout_s: float = 120.0) -> bool:
        """Process events until no job is due or running (demo, screenshots, tests). Returns whether the
        pictures then show the selected snapshot."""
        if (self.model is not None and self.isVisible() and self.shown_step != self.selected_step
                and not self.is_running() and not self._debounce.isActive()):
            self._request()                # e.g. asked for while the tab was hidden
        common.process_events_until(
            lambda: not (self._debounce.isActive() or self.is_running() or self._pending), timeout_s)
        return self.model is not None and self.shown_step == self.selected_step

    @QtCore.Slot(float, str)
    def _on_progress(self, frac: float, what: str):
        if common.from_current_worker(self):
            self.progress.setValue(int(1000 * frac))

    @QtCore.Slot(object)
    def _on_done(self, result: SnapshotPictures):
        if not common.from_current_worker(self):
            return
        self.show_result(result)
        if self._pending or result.step != self.selected_step:
            self._pending = False
            self._debounce.start()

    # ------------------------------------------------------------------ numbers
    @property
    def shown_step(self) -> int | None:
        """The training step the pictures show (None before the first)."""
        return None if self.result is None else self.result.step

    @property
    def fisher(self) -> float | None:
        """Fisher divergence E‖s_θ − ∇log p‖² of the shown snapshot at its least-noisy level."""
        return None if self.result is None else self.result.fisher

    def numbers(self) -> dict:
        """The shown snapshot's numbers: step, fisher, and (noise-conditional models) model_nll,
        true_nll and gap in nats; {} before the first pictures."""
        r = self.result
        if r is None:
            return {}
        out = {"step": r.step, "fisher": r.fisher}
        if r.density is not None:
            out.update(model_nll=r.density.model_nll, true_nll=r.density.true_nll, gap=r.density.gap)
        return out

    # ------------------------------------------------------------------ drawing
    def show_result(self, r: SnapshotPictures):
        self.result = r
        self.progress.setValue(1000)
        fields = [r.true_field, r.learned_field]
        scale = grid.shared_arrow_scale(fields, r.cell)
        for item, f in ((self.true_arrows, r.true_field), (self.model_arrows, r.learned_field)):
            item.setData(*common.arrows_path(r.points, clipped_arrows(f, scale, r.cell)))
        level = r.level_label.split("(")[0].strip()
        self.field_plot.setTitle(f"Score at {level}")
        if r.density is not None:
            d = r.density
            hi = float(np.nanmax(d.model_logp))
            levels = (hi - SHOWN_NATS, hi)
            common.set_heat(self.density_img, np.clip(d.model_logp, *levels), d.bounds, levels)
            self.density_img.setVisible(True)
            self.density_plot.setTitle(f"Learned log p (PF-ODE, {d.n_grid}²)")
        else:
            self.density_img.setVisible(False)
            self.density_plot.setTitle("No PF-ODE density")
        self.points.setData(r.samples)
        self.samples_plot.setTitle(f"{len(r.samples):,} samples ({r.sampler})")
        self._draw_contours(r.bounds)
        for plot in (self.field_plot, self.density_plot, self.samples_plot):
            common.square_plot(plot, r.bounds)
        rows = [f"step <b>{r.step:,}</b>",
                f"Fisher divergence at {level}: <b>{r.fisher:.4g}</b>"]
        if r.density is not None:
            rows += [f"NLL of fresh data (PF-ODE): <b>{r.density.model_nll:.3f}</b> nats",
                     f"true NLL (the floor): {r.density.true_nll:.3f} nats",
                     f"gap ≈ KL(p ‖ model): {r.density.gap:+.3f}"]
        else:
            rows.append(r.density_note)
        self.numbers_label.setText("<br>".join(rows))
        self.status.setText(f"Pictures of step {r.step:,} in {r.seconds:.1f} s.")

    def _clear_pictures(self):
        self.result = None
        self.true_arrows.setData([], [])
        self.model_arrows.setData([], [])
        self.density_img.setVisible(False)
        self.points.setData(None)
        self.numbers_label.setText("—")
        self.progress.setValue(0)
        self.status.setText("")

    def _draw_contours(self, bounds):
        """Contours of the true density the snapshots were trained on, on the density and sample plots."""
        for plot, iso in self._contours:
            plot.removeItem(iso)
        self._contours = []
        density = self.state.history_density or self.state.density
        img = grid.density_image(density, bounds, CONTOUR_N)
        xmin, xmax, ymin, ymax = bounds
        transform = (pg.QtGui.QTransform.fromScale((xmax - xmin) / CONTOUR_N, (ymax - ymin) / CONTOUR_N)
                     * pg.QtGui.QTransform.fromTranslate(xmin, ymin))
        for plot in (self.density_plot, self.samples_plot):
            for level in grid.contour_levels(img, 3):
                iso = pg.IsocurveItem(data=img, level=level, pen=pg.mkPen(120, 200, 255, 160, width=1))
                iso.setTransform(transform)
                iso.setZValue(1)
                plot.addItem(iso)
                self._contours.append((plot, iso))

    def export_target(self):
        return self.plots


def clipped_arrows(field: np.ndarray, scale: float, cell: float) -> np.ndarray:
    """Arrow vectors for drawing: field × scale, clipped at two grid cells (as the Score field tab)."""
    v = field * scale
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v * np.minimum(1.0, 2 * cell / np.maximum(norm, 1e-12))
