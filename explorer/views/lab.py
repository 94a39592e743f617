"""Sampler lab tab: sample quality against the number of network evaluations (NFE), for the chosen
samplers, decomposed by cause (trainers.studies.lab.run_lab, in a JobWorker thread), over several seeds.

Sources: the exact score from exact draws of p_σmax (dotted: the sampler's discretisation error
alone), the exact score from the sampler's Gaussian prior (dashed: + prior mismatch) and the trained
model from the same particles with the same noise (solid: + the model's error). Plots: energy
distance vs NFE (log-log, mean ± sd bands over the seeds, the threshold line), mode-weight error vs
NFE, and one sampler's error decomposition vs NFE; a table gives the NFE at which each source first
reaches the threshold. Export the rows as CSV and the plots as PNG (both written atomically).

The w axis (issue #22, trainers.studies.guidance.run_w_axis): per sampler, the energy distance of
classifier-free guidance's samples to the tilted target p_w(x|c) and to p(x|c) against w, with the exact
scores (dashed) and a class-conditional model (solid), ± sd error bars over the seeds, and its table.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from trainers.atomic import atomic_write_text
from trainers.studies import guidance as guidance_study
from trainers.studies import lab
from trainers.studies.lab import EXACT, EXACT_START, MODEL, NFE_GRID
from trainers.samplers import SAMPLERS

from ..workers.job import JobWorker
from .parts import axes, common
from .parts.stale_banner import StaleModelBanner
from .sampler import score_models

PALETTE = [(255, 200, 40), (80, 220, 255), (255, 90, 200), (120, 255, 120), (255, 130, 60), (190, 150, 255)]
SOLID, DASH, DOT = QtCore.Qt.PenStyle.SolidLine, QtCore.Qt.PenStyle.DashLine, QtCore.Qt.PenStyle.DotLine
STYLES = {EXACT_START: DOT, EXACT: DASH, MODEL: SOLID}
SOURCE_WORDS = {EXACT_START: "exact score, exact start", EXACT: "exact score, prior start",
                MODEL: "model, prior start"}
PARTS = {"discretisation": ((255, 200, 40), "discretisation = exact·exact-start"),
         "prior": ((80, 220, 255), "prior = exact − exact·exact-start"),
         "model": ((255, 90, 200), "model = model − exact")}
GUI_SEEDS = 3            # the GUI's default repeats: fewer than the CLI's 5, to stay quick
ED_FLOOR = 1e-4          # energy distances (U-statistic: 0 on average for exact samples) below this are drawn at it
EXPLAIN = ("Each sampler runs at each NFE budget from three sources: the exact score from exact draws of p_σmax "
           "(dotted) has the sampler's discretisation error only; the exact score from the sampler's Gaussian "
           "prior (dashed) adds the prior mismatch; the trained model from the same particles with the same "
           "noise (solid) adds the model's error. Bands: mean ± sd over the seeds. 'Reached': the mean energy "
           "distance is below the threshold, the 95th percentile of the same mean for exact samples.")
SEEDS_NOTE = (f"The command line's lab (python -m trainers.toy lab) uses 5 seeds by default and the README's table "
              f"comes from it; {GUI_SEEDS} keep the tab quick, with wider bands and a less sharp threshold.")
GUIDE_PLOT_TIP = ("The w axis of classifier-free guidance: for each sampler (colour) the energy distance of its guided "
                  "samples to the tilted target p_w(x|c) ∝ p(x|c)^(1+w) p(x)^(−w) (left, drawn exactly on a grid) and "
                  "to p(x|c) (right), mean ± sd over the seeds; dashed: the exact scores' CFG, solid: a "
                  "class-conditional model's. Dotted: the exact-sample threshold (an exact sample's mean distance "
                  "stays below it 95% of the time). CFG's curves stay above the tilted target's threshold at w > 0: "
                  "it does not sample p_w.")
TABLE_COLUMNS = [("sampler", "The sampler"),
                 ("exact start", "Exact score from exact draws of p_σmax (discretisation error only): the NFE at "
                                 "which its mean energy distance first reaches the threshold"),
                 ("exact", "Exact score from the sampler's Gaussian prior start (+ prior mismatch): NFE to reach "
                           "the threshold"),
                 ("model", "Trained model from the same start particles and noise (+ model error): NFE to reach "
                           "the threshold"),
                 ("note", "The model was asked for noise levels outside its trained range")]


class LabView(common.JobTab, QtWidgets.QWidget):
    title = "Sampler lab"

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.worker: JobWorker | None = None
        self.result = None
        self.w_axis = None           # the last w-axis result (trainers.studies.guidance.WAxis)

        lay = QtWidgets.QHBoxLayout(self)
        panel, side = common.side_panel()
        lay.addWidget(panel)
        self.stale_banner = StaleModelBanner(state)
        side.addWidget(self.stale_banner)
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
        self.seeds = common.spin(2, 20, GUI_SEEDS, 1,
                                 tooltip="Repeats of every run, each with fresh particles, noise and reference "
                                         "sample: the bands are mean ± sd over them. " + SEEDS_NOTE)
        form.addRow("Seeds", self.seeds)
        note = common.wrapped_label(SEEDS_NOTE)
        note.setStyleSheet("color: #999;")
        form.addRow(note)
        side.addWidget(box)

        box, form = common.form_group("Run")
        self.run_btn = QtWidgets.QPushButton("Run lab")
        self.run_btn.setToolTip("Run every chosen sampler at every chosen NFE from every source, over the seeds "
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
        self.csv_btn.setToolTip("Save one row per sampler × source × NFE: mean and sd over the seeds, the threshold")
        self.png_btn = QtWidgets.QPushButton("Export PNG…")
        self.png_btn.setToolTip("Save the plots as a PNG image")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.csv_btn)
        row.addWidget(self.png_btn)
        form.addRow(row)
        side.addWidget(box)
        # the w axis (issue #22): what CFG samples per sampler, against the tilted target and p(x|c)
        box, form = common.form_group("Guidance: w axis")
        self.guide_class = common.combo([], None, "The class c of classifier-free guidance (the density's labels).")
        self.guide_ws = QtWidgets.QLineEdit("0, 1, 4")
        self.guide_ws.setToolTip("Guidance weights w, comma-separated (0: the conditional score; scale = 1 + w).")
        self.guide_source = common.combo(
            [("both", "exact score and model"), ("exact", "exact score"), ("model", "trained model")], "both",
            "exact: CFG of the exact scores; model: CFG of a class-conditional model (Training tab: 'Conditional on "
            "class'); both: each, on the same seeds (the model's curves only when a class-conditional one is "
            "trained).")
        self.guide_btn = QtWidgets.QPushButton("Run w axis")
        self.guide_btn.setToolTip("For each chosen sampler (its default steps) and each w: the energy distance of the "
                                  "guided samples to the tilted target p(x|c)^{1+w} p(x)^{−w} (drawn exactly on a grid) "
                                  "and to p(x|c), over the seeds (trainers.studies.guidance).")
        form.addRow("Class", self.guide_class)
        form.addRow("w values", self.guide_ws)
        form.addRow("Score", self.guide_source)
        form.addRow(self.guide_btn)
        side.addWidget(box)
        explain = QtWidgets.QLabel(EXPLAIN)
        explain.setWordWrap(True)
        side.addWidget(explain)
        side.addStretch(1)

        right = QtWidgets.QVBoxLayout()
        lay.addLayout(right, 1)
        self.plots = pg.GraphicsLayoutWidget()
        right.addWidget(self.plots, 3)
        # the energy distance on the left, full height; mode weights and the decomposition stacked on the right
        self.ed_plot = self.plots.addPlot(row=0, col=0, rowspan=2, title="Energy distance vs NFE (mean ± sd)",
                                          axisItems=axes.items())
        self.ed_plot.setLogMode(x=True, y=True)
        self.ed_plot.setLabel("bottom", "network evaluations (NFE)")
        self.ed_plot.setLabel("left", "energy distance")
        self.ed_plot.showGrid(x=True, y=True, alpha=0.3)
        self.ed_legend = self.ed_plot.addLegend(offset=(-10, 10), labelTextSize="8pt")
        self.mw_plot = self.plots.addPlot(row=0, col=1, title="Mode-weight error (TV) vs NFE", axisItems=axes.items())
        self.mw_plot.setLogMode(x=True, y=False)
        self.mw_plot.setLabel("bottom", "network evaluations (NFE)")
        self.mw_plot.showGrid(x=True, y=True, alpha=0.3)
        self.dec_plot = self.plots.addPlot(row=1, col=1, title="Error decomposition", axisItems=axes.items())
        self.dec_plot.setLogMode(x=True, y=False)
        for plot in (self.ed_plot, self.mw_plot, self.dec_plot):     # long titles must not widen the window
            common.title_takes_no_width(plot)
        self.dec_plot.setLabel("bottom", "network evaluations (NFE)")
        self.dec_plot.setLabel("left", "energy distance")
        self.dec_plot.showGrid(x=True, y=True, alpha=0.3)
        self.dec_legend = self.dec_plot.addLegend(offset=(10, 10), labelTextSize="8pt")

        below = QtWidgets.QHBoxLayout()
        self.table_label = common.wrapped_label("")
        below.addWidget(self.table_label, 1)
        below.addWidget(QtWidgets.QLabel("Decomposition of"))
        self.dec_sampler = QtWidgets.QComboBox()
        self.dec_sampler.setToolTip("The sampler whose error the third plot splits into discretisation, prior "
                                    "and model (mean ± sd of the per-seed differences)")
        below.addWidget(self.dec_sampler)
        right.addLayout(below)
        self.table = QtWidgets.QTableWidget(0, len(TABLE_COLUMNS))
        for col, (text, tip) in enumerate(TABLE_COLUMNS):
            item = QtWidgets.QTableWidgetItem(text)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(col, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(TABLE_COLUMNS) - 1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        header.setTextElideMode(QtCore.Qt.TextElideMode.ElideRight)
        self.table.setTextElideMode(QtCore.Qt.TextElideMode.ElideRight)
        self.table.verticalHeader().setVisible(False)
        for corner in self.table.findChildren(QtWidgets.QAbstractButton):   # the table's select-all corner
            corner.setToolTip("Select the whole table")
        self.table.setToolTip("The smallest NFE at which each source's mean energy distance over the seeds is below "
                              "the threshold; '—': not within the NFE tried. Hover a header for its source.")
        right.addWidget(self.table, 1)
        self.guide_box = QtWidgets.QWidget()         # the w axis: its plots and its table, once run
        guide_row = QtWidgets.QHBoxLayout(self.guide_box)
        guide_row.setContentsMargins(0, 0, 0, 0)
        self.guide_plots = pg.GraphicsLayoutWidget()
        self.tilted_plot = self.guide_plots.addPlot(row=0, col=0, axisItems=axes.items())
        self.conditional_plot = self.guide_plots.addPlot(row=0, col=1, axisItems=axes.items())
        for plot in (self.tilted_plot, self.conditional_plot):
            plot.setLabel("bottom", "guidance weight w")
            plot.setLabel("left", "energy distance")
            plot.showGrid(x=True, y=True, alpha=0.3)
            common.title_takes_no_width(plot)
        self.guide_legend = self.conditional_plot.addLegend(offset=(10, 10), labelTextSize="8pt")
        self.guide_plots.setToolTip(GUIDE_PLOT_TIP)
        self.guide_items: dict = {}                 # (source, sampler, "tilted"|"conditional") -> (curve, error bars)
        guide_row.addWidget(self.guide_plots, 2)
        self.guide_text = QtWidgets.QPlainTextEdit()
        self.guide_text.setReadOnly(True)
        self.guide_text.setToolTip("The w axis: per sampler and w, the energy distance to the tilted target and to "
                                   "p(x|c) (mean ± sd over the seeds; * = at or below the exact-sample threshold).")
        self.guide_text.setFont(pg.QtGui.QFont("monospace"))
        self.guide_text.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        guide_row.addWidget(self.guide_text, 1)
        self.guide_box.setVisible(False)
        right.addWidget(self.guide_box, 3)

        self.run_btn.clicked.connect(self.run)
        self.guide_btn.clicked.connect(self.run_guidance)
        state.densityChanged.connect(self._update_classes)
        self._update_classes()
        self.cancel_btn.clicked.connect(self.cancel)
        self.csv_btn.clicked.connect(lambda: self.export_csv())
        self.png_btn.clicked.connect(lambda: self.export_png())
        self.dec_sampler.currentIndexChanged.connect(lambda _: self.show_decomposition())

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
        w = JobWorker(lab.run_lab, dict(density=self.state.density, model=trained, exact=exact, samplers=list(samplers),
                                        nfes=list(nfes), options=lab.default_options(samplers, cfg), n=self.n.value(),
                                        seed=0, seeds=self.seeds.value()), "lab", parent=self)
        self._attach(w)
        self.status.setText("Running on the " + ("trained model and the exact score…" if trained is not None
                                                 else "exact score only (no trained model yet)…"))
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        w.start()

    def _update_classes(self):
        names = list(self.state.density.classes)
        self.guide_class.clear()
        for i, name in enumerate(names):
            self.guide_class.addItem(f"{i}: {name}", i)
        self.guide_btn.setEnabled(bool(names))

    def run_guidance(self):
        """The w axis on the chosen samplers (trainers.studies.guidance.run_guidance_study)."""
        if self.is_running():
            return
        samplers = self.chosen()[0]
        try:
            ws = [float(v) for v in self.guide_ws.text().replace(";", ",").split(",") if v.strip()]
        except ValueError:
            self.status.setText(f"w values: give numbers separated by commas, not {self.guide_ws.text()!r}.")
            return
        if not samplers or not ws or self.guide_class.currentData() is None:
            self.status.setText("Choose a labelled density's class, at least one sampler and one w.")
            return
        self.stop_worker()
        trained, exact, _ = score_models(self.state)
        source = self.guide_source.currentData()
        model = trained if source in ("both", "model") else None
        w = JobWorker(guidance_study.run_w_axis,
                      dict(density=self.state.density, c=self.guide_class.currentData(), ws=ws, samplers=list(samplers),
                           exact=exact, model=model, n=self.n.value(), seeds=self.seeds.value()),
                      "guidance w axis", parent=self)
        self._attach(w)
        self.status.setText("Running the w axis on the exact score" + (" and the trained model…" if model is not None
                            else "…" if source == "exact" else " (no trained model yet)…"))
        self.run_btn.setEnabled(False)
        self.guide_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        w.start()

    def _idle(self):
        if hasattr(self, "guide_btn"):
            self.guide_btn.setEnabled(bool(self.state.density.classes))
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
        if isinstance(result, guidance_study.WAxis):
            self.show_w_axis(result)
            return
        self.show_result(result)

    def run_demo(self, timeout_s: float = 120.0):
        """A small lab for the screenshot: every sampler at NFE 5 … 200 on 500 particles, 2 seeds."""
        for nfe, cb in self.nfe_boxes.items():
            cb.setChecked(nfe <= 200)
        self.n.setValue(500)
        self.seeds.setValue(2)
        self.run()
        self.wait(timeout_s)

    # ------------------------------------------------------------------ show
    def _band(self, plot, x, lo, hi, color):
        """A translucent band between the curves lo and hi (drawn in the plot's log mode like any curve)."""
        edge = pg.mkPen(0, 0, 0, 0)                  # invisible (pen=None would leave the curves without a path)
        a, b = pg.PlotDataItem(x, lo, pen=edge), pg.PlotDataItem(x, hi, pen=edge)
        plot.addItem(a)
        plot.addItem(b)
        band = pg.FillBetweenItem(a, b, brush=pg.mkBrush(*color, 40))
        plot.addItem(band)
        return band

    def show_result(self, result):
        self.result = result
        for plot in (self.ed_plot, self.mw_plot):
            plot.clear()
        self.ed_legend.clear()
        lo_ed = max(ED_FLOOR, result.threshold / 10)
        samplers = list(dict.fromkeys(r.sampler for r in result.rows))
        sources = [s for s in (EXACT_START, EXACT, MODEL) if s in result.sources()]
        # the NFE budgets asked for (a sampler spends up to that: the PF-ODE's Heun steps 9, 19, 49, …)
        nfe_ticks = [[(math.log10(n), str(n)) for n in sorted({r.nfe_target for r in result.rows})], []]
        for plot in (self.ed_plot, self.mw_plot, self.dec_plot):
            plot.getAxis("bottom").setTicks(nfe_ticks)        # the NFE actually run
        for i, name in enumerate(samplers):
            color = PALETTE[i % len(PALETTE)]
            for src in sources:
                rows = result.cells(name, src)
                x = np.array([r.nfe for r in rows], dtype=float)
                ed = np.array([r.energy_distance for r in rows], dtype=float)
                ed_sd = np.nan_to_num(np.array([r.energy_distance_sd for r in rows], dtype=float))
                mw = np.array([r.mode_weight_error for r in rows], dtype=float)
                mw_sd = np.nan_to_num(np.array([r.mode_weight_error_sd for r in rows], dtype=float))
                pen = pg.mkPen(color, width=2, style=STYLES[src])
                if len(rows) > 1:
                    self._band(self.ed_plot, x, np.maximum(ed - ed_sd, lo_ed), np.maximum(ed + ed_sd, lo_ed), color)
                    self._band(self.mw_plot, x, np.maximum(mw - mw_sd, 0), mw + mw_sd, color)
                self.ed_plot.plot(x, np.where(np.isfinite(ed), np.maximum(ed, lo_ed), np.nan), pen=pen, symbol="o",
                                  symbolSize=5, symbolBrush=color, connect="finite",
                                  name=SAMPLERS[name].title if src == sources[-1] else None)
                self.mw_plot.plot(x, mw, pen=pen, symbol="o", symbolSize=5, symbolBrush=color, connect="finite")
        for src in sources:                                    # the line styles, in the legend
            self.ed_legend.addItem(pg.PlotDataItem(pen=pg.mkPen(200, 200, 200, width=2, style=STYLES[src])),
                                   SOURCE_WORDS[src])
        line_pen = pg.mkPen(230, 230, 230, 220, width=1, style=DOT)
        self.ed_plot.addItem(pg.InfiniteLine(pos=math.log10(max(result.threshold, lo_ed)), angle=0, pen=line_pen,
                                             label=f"threshold {result.threshold:.2g}", labelOpts={"position": 0.85}))
        self.mw_plot.addItem(pg.InfiniteLine(pos=result.threshold_mode_weight_error, angle=0, pen=line_pen,
                                             label=f"exact samples' 95%: {result.threshold_mode_weight_error:.2g}",
                                             labelOpts={"position": 0.7}))
        self.ed_plot.setTitle(f"Energy distance vs NFE (mean ± sd, {result.seeds} seeds)")
        self.ed_plot.setLabel("left", f"energy distance (below {lo_ed:.2g}: drawn at {lo_ed:.2g})")
        self.mw_plot.setTitle(f"Mode-weight error (TV) vs NFE, mean ± sd")
        current = self.dec_sampler.currentData()
        self.dec_sampler.blockSignals(True)
        self.dec_sampler.clear()
        for name in samplers:
            self.dec_sampler.addItem(SAMPLERS[name].title, name)
        self.dec_sampler.setCurrentIndex(max(0, samplers.index(current)) if current in samplers else 0)
        self.dec_sampler.blockSignals(False)
        self.show_decomposition()
        self.table_label.setText(f"NFE at which the mean energy distance over {result.seeds} seeds first reaches the "
                                 f"threshold {result.threshold:.3g} (95th percentile of that mean for exact samples, "
                                 f"from {result.null_draws} exact draws):")
        self.table.setRowCount(len(samplers))
        for row, name in enumerate(samplers):
            cells = [SAMPLERS[name].title,
                     *(str(result.nfe_to_reach(name, src) or "—") if src in sources else ""
                       for src in (EXACT_START, EXACT, MODEL)),
                     result.notes.get(name, "")]
            for col, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, col, item)
        self.progress.setValue(1000)
        what = "model and exact score" if MODEL in sources else "exact score only"
        self.status.setText(f"{len(result.rows)} rows ({what}) × {result.seeds} seeds on {result.n} particles in "
                            f"{result.seconds:.1f} s; threshold {result.threshold:.3g} (an exact sample: "
                            f"{result.floor:.2g} ± {result.floor_sd:.2g}).")

    def show_w_axis(self, result):
        """The w axis (a trainers.studies.guidance.WAxis): per sampler (colour) and source (dashed: exact score,
        solid: model), the energy distance to the tilted target and to p(x|c) against w with ± sd error bars
        over the seeds, the exact-sample thresholds (dotted), and the table beside."""
        self.w_axis = result
        self.guide_items = {}
        self.guide_legend.clear()
        for plot in (self.tilted_plot, self.conditional_plot):
            plot.clear()
        samplers = result.samplers()
        first = next(iter(result.results.values()))
        ws = sorted(first.threshold_tilted)
        span = (max(ws) - min(ws)) or 1.0
        for i, name in enumerate(samplers):
            color = PALETTE[i % len(PALETTE)]
            shift = 0.015 * span * (i - (len(samplers) - 1) / 2)        # side by side around each w
            for source in result.results:
                c = result.curve(source, name)
                pen = pg.mkPen(color, width=2, style=SOLID if source == "model" else DASH)
                for target, plot in (("tilted", self.tilted_plot), ("conditional", self.conditional_plot)):
                    y, sd = c[f"to_{target}"], np.nan_to_num(c[f"to_{target}_sd"])
                    bars = pg.ErrorBarItem(x=c["w"] + shift, y=y, height=2 * sd, beam=0.01 * span, pen=pg.mkPen(color))
                    plot.addItem(bars)
                    curve = plot.plot(c["w"] + shift, y, pen=pen, symbol="o" if source == "exact" else "t",
                                      symbolSize=6, symbolBrush=color,
                                      name=f"{SAMPLERS[name].title}" if target == "conditional" and
                                      source == next(iter(result.results)) else None)
                    self.guide_items[(source, name, target)] = (curve, bars)
        line_pen = pg.mkPen(230, 230, 230, 220, width=1, style=DOT)
        self.tilted_plot.plot(ws, [first.threshold_tilted[w] for w in ws], pen=line_pen)
        self.conditional_plot.addItem(pg.InfiniteLine(pos=first.threshold_conditional, angle=0, pen=line_pen))
        for source in result.results:
            self.guide_legend.addItem(pg.PlotDataItem(pen=pg.mkPen(200, 200, 200, width=2,
                                                                   style=SOLID if source == "model" else DASH)),
                                      guidance_study.W_SOURCES[source])
        self.guide_legend.addItem(pg.PlotDataItem(pen=line_pen), "exact-sample threshold")
        cls = f"class {first.class_index} ({first.class_name})"
        self.tilted_plot.setTitle(f"to the tilted target p_w(x|c), {cls}", size="9pt")
        self.conditional_plot.setTitle(f"to p(x|c): mean ± sd over {first.seeds} seeds", size="9pt")
        self.guide_text.setPlainText(guidance_study.format_w_axis(result))
        self.guide_box.setVisible(True)
        self.progress.setValue(1000)
        self.status.setText(f"w axis done ({result.seconds:.0f} s)." + (f" {result.note}" if result.note else ""))

    def show_decomposition(self):
        """The chosen sampler's error split by cause vs NFE, mean ± sd of the per-seed differences."""
        self.dec_plot.clear()
        self.dec_legend.clear()
        if self.result is None or self.dec_sampler.currentData() is None:
            return
        name = self.dec_sampler.currentData()
        rows = [r for r in self.result.decomposition() if r["sampler"] == name]
        nfe = {(r.sampler, r.nfe_target): r.nfe for r in self.result.rows}
        x = np.array([nfe[(name, r["nfe_target"])] for r in rows], dtype=float)
        for part, (color, label) in PARTS.items():
            if not any(part in r for r in rows):
                continue
            y = np.array([r.get(part, np.nan) for r in rows], dtype=float)
            sd = np.nan_to_num(np.array([r.get(part + "_sd", np.nan) for r in rows], dtype=float))
            if len(rows) > 1:
                self._band(self.dec_plot, x, y - sd, y + sd, color)
            self.dec_plot.plot(x, y, pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5, symbolBrush=color,
                               connect="finite", name=label)
        self.dec_plot.addItem(pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen(160, 160, 160, 160, width=1)))
        self.dec_plot.addItem(pg.InfiniteLine(pos=self.result.threshold, angle=0,
                                              pen=pg.mkPen(230, 230, 230, 220, width=1, style=DOT),
                                              label="threshold", labelOpts={"position": 0.7}))
        self.dec_plot.setTitle(f"{SAMPLERS[name].title}: error by cause (mean ± sd)")

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
