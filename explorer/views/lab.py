"""Sampler lab tab: sample quality against the number of network evaluations (NFE), for the chosen
samplers, on the trained model and on the exact score (trainers.lab.run_lab, in a LabWorker thread).

The exact-score curve is the sampler's own discretisation error; the gap to the model's curve is the
model's error. Plots: energy distance to exact samples vs NFE (log-log, with the floor of independent exact
samples) and mode-weight error vs NFE; a table gives the NFE at which each sampler first comes within
2× the floor. Export the rows as CSV and the plots as PNG (both written atomically).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from trainers import fitting
from trainers.atomic import atomic_write_text
from trainers.lab import NFE_GRID
from trainers.samplers import SAMPLERS

from ..lab_worker import LabWorker
from . import common
from .sampler import score_models

PALETTE = [(255, 200, 40), (80, 220, 255), (255, 90, 200), (120, 255, 120), (255, 130, 60), (190, 150, 255)]
EXPLAIN = ("Each sampler runs at each NFE budget twice, from the same particles with the same noise: driven by "
           "the exact score (dashed), its curve is the sampler's own discretisation error; driven by the trained "
           "model (solid), the gap between the two curves is the model's error.")


class LabView(common.JobTab, QtWidgets.QWidget):
    title = "Sampler lab"

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.worker: LabWorker | None = None
        self.result = None

        lay = QtWidgets.QHBoxLayout(self)
        panel, side = common.side_panel()
        lay.addWidget(panel)
        box, form = common.form_group("Samplers")
        self.sampler_boxes = {}
        for name, info in SAMPLERS.items():
            cb = QtWidgets.QCheckBox(info.title)
            cb.setChecked(True)
            cb.setToolTip(f"{info.convention}\n{info.description}")
            form.addRow(cb)
            self.sampler_boxes[name] = cb
        side.addWidget(box)
        box, form = common.form_group("NFE budgets")
        grid = QtWidgets.QGridLayout()
        self.nfe_boxes = {}
        for i, nfe in enumerate(NFE_GRID):
            cb = QtWidgets.QCheckBox(str(nfe))
            cb.setChecked(nfe <= 200)
            cb.setToolTip(f"Run every chosen sampler with about {nfe} network evaluations "
                          "(each sampler turns the budget into its own steps).")
            grid.addWidget(cb, i // 4, i % 4)
            self.nfe_boxes[nfe] = cb
        form.addRow(grid)
        self.n = common.spin(100, 20000, 1000, 500, tooltip="Particles per run (and size of the exact reference sample).")
        form.addRow("Particles", self.n)
        side.addWidget(box)

        box, form = common.form_group("Run")
        self.run_btn = QtWidgets.QPushButton("Run lab")
        self.run_btn.setToolTip("Run every chosen sampler at every chosen NFE on the model and the exact score "
                                "(Ctrl+L). Uses the weights as of now.")
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop the lab (the partial results are dropped).")
        self.cancel_btn.setEnabled(False)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        form.addRow(row)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setToolTip("Share of the network evaluations done")
        form.addRow(self.progress)
        self.status = QtWidgets.QLabel("Not run yet.")
        self.status.setWordWrap(True)
        form.addRow(self.status)
        self.csv_btn = QtWidgets.QPushButton("Export CSV…")
        self.csv_btn.setToolTip("Save one row per sampler × NFE × score source")
        self.png_btn = QtWidgets.QPushButton("Export PNG…")
        self.png_btn.setToolTip("Save the plots as a PNG image")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.csv_btn)
        row.addWidget(self.png_btn)
        form.addRow(row)
        side.addWidget(box)
        explain = QtWidgets.QLabel(EXPLAIN)
        explain.setWordWrap(True)
        side.addWidget(explain)
        side.addStretch(1)

        right = QtWidgets.QVBoxLayout()
        lay.addLayout(right, 1)
        self.plots = pg.GraphicsLayoutWidget()
        right.addWidget(self.plots, 3)
        self.ed_plot = self.plots.addPlot(title="Energy distance to exact samples vs NFE "
                                               "(solid: model, dashed: exact score)")
        self.ed_plot.setLogMode(x=True, y=True)
        self.ed_plot.setLabel("bottom", "network evaluations (NFE)")
        self.ed_plot.setLabel("left", "energy distance")
        self.ed_plot.showGrid(x=True, y=True, alpha=0.3)
        self.ed_plot.addLegend(offset=(-10, 10))
        self.mw_plot = self.plots.addPlot(title="Mode-weight error (total variation) vs NFE")
        self.mw_plot.setLogMode(x=True, y=False)
        self.mw_plot.setLabel("bottom", "network evaluations (NFE)")
        self.mw_plot.showGrid(x=True, y=True, alpha=0.3)
        self.table = QtWidgets.QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["sampler", "model: NFE to 2× floor", "exact: NFE to 2× floor",
                                              "model outside its trained range"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setToolTip("The smallest NFE at which each sampler's energy distance is within twice the "
                              "floor (mean energy distance of independent exact samples); '—': not within the NFE tried.")
        right.addWidget(self.table, 1)

        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        self.csv_btn.clicked.connect(lambda: self.export_csv())
        self.png_btn.clicked.connect(lambda: self.export_png())

    # ------------------------------------------------------------------ run
    def chosen(self) -> tuple[list[str], list[int]]:
        return ([n for n, cb in self.sampler_boxes.items() if cb.isChecked()],
                [n for n, cb in self.nfe_boxes.items() if cb.isChecked()])

    def run(self):
        if self.is_running():
            return
        samplers, nfes = self.chosen()
        if not samplers or not nfes:
            self.status.setText("Choose at least one sampler and one NFE budget.")
            return
        self.stop_worker()
        trained, exact, cfg = score_models(self.state)
        options = {name: fitting.default_options(name, cfg) for name in samplers}
        w = LabWorker(self.state.density, trained, exact, samplers, nfes, options, self.n.value(), parent=self)
        self._attach(w)
        self.status.setText("Running on the " + ("trained model and the exact score…" if trained is not None
                                                 else "exact score only (no trained model yet)…"))
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        w.start()

    def _idle(self):
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    @QtCore.Slot(float, str)
    def _on_progress(self, frac: float, what: str):
        if common.from_current_worker(self):
            self.progress.setValue(int(1000 * frac))
            self.status.setText(f"Done: {what}")

    @QtCore.Slot(object)
    def _on_done(self, result):
        if not common.from_current_worker(self):
            return
        self._idle()
        self.show_result(result)

    def run_demo(self, timeout_s: float = 120.0):
        """A small lab for the screenshot: every sampler at NFE 5 … 200 on 500 particles."""
        for nfe, cb in self.nfe_boxes.items():
            cb.setChecked(nfe <= 200)
        self.n.setValue(500)
        self.run()
        self.wait(timeout_s)

    # ------------------------------------------------------------------ show
    def show_result(self, result):
        self.result = result
        self.ed_plot.clear()
        self.mw_plot.clear()
        floor = max(result.floor, 1e-6)
        samplers = list(dict.fromkeys(r.sampler for r in result.rows))
        has_model = any(r.source == "model" for r in result.rows)
        ticks = [[(math.log10(n), str(n)) for n in sorted({r.nfe_target for r in result.rows})]]
        for plot in (self.ed_plot, self.mw_plot):
            plot.getAxis("bottom").setTicks(ticks)          # the NFE actually run, not 2·10¹-style labels
        for i, name in enumerate(samplers):
            color = PALETTE[i % len(PALETTE)]
            for src, style in (("model", QtCore.Qt.PenStyle.SolidLine), ("exact", QtCore.Qt.PenStyle.DashLine)):
                rows = sorted((r for r in result.rows if r.sampler == name and r.source == src), key=lambda r: r.nfe)
                if not rows:
                    continue
                x = np.array([r.nfe for r in rows], dtype=float)
                ed = np.array([max(r.energy_distance, 1e-6) if math.isfinite(r.energy_distance) else np.nan
                               for r in rows])
                mw = np.array([r.mode_weight_error for r in rows], dtype=float)
                pen = pg.mkPen(color, width=2, style=style)
                self.ed_plot.plot(x, ed, pen=pen, symbol="o", symbolSize=5, symbolBrush=color, connect="finite",
                                  name=SAMPLERS[name].title if src == "model" or not has_model else None)
                self.mw_plot.plot(x, mw, pen=pen, symbol="o", symbolSize=5, symbolBrush=color, connect="finite")
        line_pen = pg.mkPen(230, 230, 230, 200, width=1, style=QtCore.Qt.PenStyle.DotLine)
        self.ed_plot.addItem(pg.InfiniteLine(pos=math.log10(floor), angle=0, pen=line_pen,
                                             label=f"floor {result.floor:.3g}", labelOpts={"position": 0.1}))
        self.mw_plot.addItem(pg.InfiniteLine(pos=result.floor_mode_weight_error, angle=0, pen=line_pen,
                                             label="floor", labelOpts={"position": 0.1}))
        self.table.setRowCount(len(samplers))
        for row, name in enumerate(samplers):
            cells = [SAMPLERS[name].title,
                     *(str(result.nfe_to_reach(name, src, 2 * result.floor) or "—") for src in ("model", "exact")),
                     result.notes.get(name, "")]
            for col, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.progress.setValue(1000)
        sources = "model and exact score" if has_model else "exact score only"
        self.status.setText(f"{len(result.rows)} runs ({sources}) on {result.n} particles in {result.seconds:.1f} s; "
                            f"floor (mean of independent exact samples) {result.floor:.3g}, up to {result.floor_max:.3g}.")

    # ------------------------------------------------------------------ export
    def export_target(self):
        return self.plots

    def export_csv(self, path: str | None = None) -> str | None:
        if self.result is None:
            self.status.setText("Run the lab first.")
            return None
        if path is None:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export lab CSV", "lab.csv", "CSV (*.csv)")
            if not path:
                return None
        atomic_write_text(path, self.result.to_csv())
        self.status.setText(f"Saved {Path(path).name}")
        return path

    def export_png(self, path: str | None = None) -> str | None:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export lab plots", "lab.png", "PNG (*.png)")
            if not path:
                return None
        tmp = f"{path}.tmp"
        if not self.plots.grab().save(tmp, "PNG"):
            raise OSError(f"could not write {path}")
        os.replace(tmp, path)
        self.status.setText(f"Saved {Path(path).name}")
        return path
