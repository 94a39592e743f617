"""Experiments tab: the guided experiments of `trainers.studies.experiments` (issue #9), presented, run and judged.

The definitions — claim, expected outcome, criterion, default parameters, the run itself — live in
`trainers/studies/experiments.py` (no Qt); this tab only presents them. On the left the list of experiments; in
the middle the selected one's claim, expected outcome and criterion, and a parameter form generated from
its defaults (a spin box per number, a check box per flag, the preset list for `density`, a line edit per
other string; a changed parameter's name turns bold; *Reset to defaults*); Run / Control / Cancel and a
progress bar. Run and Control go to a JobWorker thread (experiments.run_until_cancelled); Control runs the experiment's negative
control (the same run with the mechanism removed, which must come out "does not hold"). On the right the
result: a large ✓ holds (green) or ✗ does not hold (red) mark — for a control, ✗ in blue ("as it must")
and ✓ in red (the criterion could not fail) —, the expected and the measured outcome side by side, the
criterion, and a table of the measured figures: a short label, the mean ± sd over the seeds rounded to
the spread's second significant digit, and every seed's value. Under the table the same figures as a plot
(one row per figure, in the table's order): each seed's value as a dot, the mean as a bar with a ±sd
whisker, on a log axis when all are positive and span more than two decades.

When the parameters name a preset density and *Show the density in the other tabs* is ticked, Run sets the
app's density to it (one undoable step, Ctrl+Z) so the Density, Score-field and Samplers tabs show what the
experiment runs on. The experiment itself uses its own exact score or trains its own small models; it
never touches the app's trained model.
"""
from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from trainers import densities
from trainers.studies.experiments import (EXPERIMENTS, Experiment, ExperimentResult, format_value, run_until_cancelled,
                                          short_label)

from ..workers.job import JobWorker
from .parts import axes, common

HOLDS_STYLE = "background:#1e7b34; color:white; border-radius:6px; padding:6px 12px; font-size:20px; font-weight:bold"
FAILS_STYLE = "background:#b3261e; color:white; border-radius:6px; padding:6px 12px; font-size:20px; font-weight:bold"
IDLE_STYLE = "background:#555; color:#ddd; border-radius:6px; padding:6px 12px; font-size:16px"
CONTROL_FAILS_STYLE = ("background:#1a5fb4; color:white; border-radius:6px; padding:6px 12px; font-size:20px; "
                       "font-weight:bold")
DEMO_EXPERIMENT = "langevin-mode-weights"      # ~4 s: the demo / screenshot run


DEFAULT_STATUS = "Choose an experiment, adjust its parameters if you like, and Run."

class SciSpinBox(QtWidgets.QDoubleSpinBox):
    """A double spin box that shows 1e-04 and 0.002 alike (%g), and steps by a tenth of the leading digit."""

    def __init__(self, value: float, parent=None):
        super().__init__(parent)
        self.setDecimals(15)
        self.setRange(0.0 if value >= 0 else -1e12, 1e12)
        self.setStepType(QtWidgets.QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
        self.setValue(value)

    def textFromValue(self, value: float) -> str:
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        t = text.strip()
        try:
            float(t)
            return QtGui.QValidator.State.Acceptable, text, pos
        except ValueError:
            ok = t in ("", "-", "+", ".") or t.lower().endswith(("e", "e-", "e+")) or t.endswith(".")
            return (QtGui.QValidator.State.Intermediate if ok else QtGui.QValidator.State.Invalid), text, pos


def _wrapped(text: str = "", selectable: bool = True) -> QtWidgets.QLabel:
    label = QtWidgets.QLabel(text)
    label.setWordWrap(True)
    if selectable:
        label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _format(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class ExperimentsView(QtWidgets.QWidget):
    title = "Experiments"

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.worker: JobWorker | None = None
        self.running_name: str | None = None
        self.results: dict[str, ExperimentResult] = {}     # the latest result of each experiment
        self._status_of: dict[str, str] = {}     # the last status line of each experiment (shown when selected)
        self.params_form = common.FormBinding(self)     # the selected experiment's parameters (rebuilt)
        self.fields: dict[str, QtWidgets.QWidget] = self.params_form.widgets
        self._labels: dict[str, QtWidgets.QLabel] = {}

        lay = QtWidgets.QHBoxLayout(self)

        # ---------------------------------------------------------------- the list
        left = QtWidgets.QVBoxLayout()
        lay.addLayout(left)
        left.addWidget(QtWidgets.QLabel("<b>Experiments</b>"))
        self.list = QtWidgets.QListWidget()
        self.list.setFixedWidth(270)
        self.list.setWordWrap(True)
        self.list.setSpacing(3)
        for e in EXPERIMENTS.values():
            item = QtWidgets.QListWidgetItem(e.title)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, e.name)
            item.setToolTip(f"{e.name}\n{e.claim}")
            self.list.addItem(item)
        left.addWidget(self.list, 1)
        note = _wrapped("Each experiment reproduces one claim of the lecture over several fixed seeds and judges it "
                        "by a stated criterion with a t·SE margin; Control runs it with the mechanism removed, which "
                        "must not hold (python -m trainers.studies.experiments runs the same headless).", False)
        note.setFixedWidth(270)
        left.addWidget(note)

        # ---------------------------------------------------------------- the claim, parameters, run
        panel, side = common.side_panel(430)
        lay.addWidget(panel)
        self.heading = _wrapped()
        self.heading.setStyleSheet("font-size:16px; font-weight:bold")
        side.addWidget(self.heading)
        self.name_label = _wrapped()
        self.name_label.setStyleSheet("color:#888")
        side.addWidget(self.name_label)
        box, form = common.form_group("Claim")
        self.claim = _wrapped()
        form.addRow(self.claim)
        self.control_text = _wrapped()
        self.control_text.setStyleSheet("color:#888")
        form.addRow(self.control_text)
        side.addWidget(box)

        self.param_box, self.param_form = common.form_group("Parameters")
        side.addWidget(self.param_box)
        self.sync_density = QtWidgets.QCheckBox("Show the density in the other tabs")
        self.sync_density.setChecked(True)
        self.sync_density.setToolTip("On Run, set the app's density to the experiment's preset density so the "
                                     "Density, Score-field and Samplers tabs show it (one undoable step: Ctrl+Z). "
                                     "The experiment trains its own models; the app's trained model is untouched.")
        side.addWidget(self.sync_density)
        row = QtWidgets.QHBoxLayout()
        self.run_btn = QtWidgets.QPushButton("Run")
        self.run_btn.setToolTip("Run the selected experiment with these parameters (fixed seeds, one thread).")
        self.control_btn = QtWidgets.QPushButton("Control")
        self.control_btn.setToolTip("Run the negative control: the same experiment with the mechanism removed; "
                                    "it must come out 'does not hold'.")
        self.cancel_btn = QtWidgets.QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop the run at its next progress point (the end of the training or sampling "
                                   "phase it is in, a few seconds at most); nothing is kept.")
        self.cancel_btn.setEnabled(False)
        self.reset_btn = QtWidgets.QPushButton("Reset to defaults")
        self.reset_btn.setToolTip("Put every parameter back to the experiment's default")
        row.addWidget(self.run_btn)
        row.addWidget(self.control_btn)
        row.addWidget(self.cancel_btn)
        row.addWidget(self.reset_btn)
        side.addLayout(row)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        side.addWidget(self.progress)
        self.status = _wrapped(DEFAULT_STATUS)
        side.addWidget(self.status)
        side.addStretch(1)

        # ---------------------------------------------------------------- the result
        right = QtWidgets.QVBoxLayout()
        lay.addLayout(right, 1)
        self.verdict = QtWidgets.QLabel("not run yet")
        self.verdict.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.verdict.setWordWrap(True)
        self.verdict.setMinimumWidth(200)
        self.verdict.setStyleSheet(IDLE_STYLE)
        self.verdict.setToolTip("Whether the claim holds by the criterion, evaluated on the measured figures")
        right.addWidget(self.verdict)
        self.disagree = _wrapped()
        self.disagree.setStyleSheet("color:#b3261e; font-weight:bold")
        self.disagree.hide()
        right.addWidget(self.disagree)
        outcomes = QtWidgets.QHBoxLayout()
        right.addLayout(outcomes)
        box, form = common.form_group("Expected outcome")
        self.expected = _wrapped()
        form.addRow(self.expected)
        outcomes.addWidget(box, 1)
        self.measured_box, form = common.form_group("Measured outcome")
        self.measured = _wrapped("—")
        form.addRow(self.measured)
        outcomes.addWidget(self.measured_box, 1)
        box, form = common.form_group("Criterion")
        self.criterion = _wrapped()
        form.addRow(self.criterion)
        right.addWidget(box)
        self.table = QtWidgets.QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["measured figure", "mean ± sd", "per seed"])
        self.table.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setToolTip("The numbers the experiment measured, mean ± sd over its seeds and each seed's value; "
                              "the criterion is evaluated on the means and their standard errors. Hover a "
                              "label for its full name.")
        right.addWidget(self.table, 1)
        self.figures_axis = pg.AxisItem("left")      # the figures' short labels, one per row
        self.figures_axis.setWidth(150)
        self.figures_axis.setStyle(autoExpandTextSpace=False, tickTextWidth=150)
        self.figures_plot = pg.PlotWidget(axisItems={**axes.items(("bottom",)), "left": self.figures_axis})
        self.figures_plot.setMinimumHeight(150)
        self.figures_plot.setMenuEnabled(False)
        self.figures_plot.setMouseEnabled(x=True, y=False)
        self.figures_plot.setTitle("")
        common.title_takes_no_width(self.figures_plot.getPlotItem())
        self.figures_plot.setToolTip("The measured figures: each seed's value (dots), the mean (bar) ± sd "
                                     "(whisker); the criterion compares these means with a t·SE margin.")
        self.seed_dots = pg.PlotDataItem(pen=None, symbol="o", symbolSize=6, symbolPen=None,
                                         symbolBrush=pg.mkBrush(235, 235, 235, 230))      # log mode follows
        self.mean_marks = pg.PlotDataItem(pen=None, symbol="|", symbolSize=14,
                                          symbolPen=pg.mkPen("#58a6ff", width=3), symbolBrush=None)
        self.sd_bars = pg.PlotDataItem(connect="pairs", pen=pg.mkPen("#58a6ff", width=1.5))
        for item in (self.sd_bars, self.mean_marks, self.seed_dots):      # the dots on top
            self.figures_plot.addItem(item)
        self._plotted: dict[str, tuple[float, list[float]]] = {}
        right.addWidget(self.figures_plot, 1)
        self.footer = _wrapped()
        self.footer.setStyleSheet("color:#888")
        right.addWidget(self.footer)

        self.list.currentItemChanged.connect(lambda cur, _prev: self._on_select(cur))
        self.run_btn.clicked.connect(lambda: self.run())
        self.control_btn.clicked.connect(self.run_control)
        self.cancel_btn.clicked.connect(self.cancel)
        self.reset_btn.clicked.connect(self.reset_params)
        self.list.setCurrentRow(0)

    # ------------------------------------------------------------------ selection and the form
    def experiment(self) -> Experiment:
        """The selected experiment."""
        item = self.list.currentItem()
        return EXPERIMENTS[item.data(QtCore.Qt.ItemDataRole.UserRole)]

    def select(self, name: str):
        """Select experiment `name` (the Experiments menu calls this)."""
        for row in range(self.list.count()):
            if self.list.item(row).data(QtCore.Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentRow(row)
                return
        raise ValueError(f"unknown experiment {name!r}")

    def _on_select(self, item):
        if item is None:
            return
        e = EXPERIMENTS[item.data(QtCore.Qt.ItemDataRole.UserRole)]
        self.heading.setText(e.title)
        self.name_label.setText(f"python -m trainers.studies.experiments run {e.name}")
        self.claim.setText(e.claim)
        self.expected.setText(e.expected)
        self.criterion.setText(e.criterion)
        self.control_text.setText(f"Negative control (Control): {e.control}; it must not hold.")
        self.control_btn.setToolTip(f"Run the negative control — {e.control} — which must come out 'does not hold'.")
        self._build_form(e)
        self._show(self.results.get(e.name))
        self._update_buttons()
        self._show_status()

    def _build_form(self, e: Experiment):
        while self.param_form.rowCount():
            self.param_form.removeRow(0)
        self.params_form.deleteLater()
        self.params_form = common.FormBinding(self)
        self.fields, self._labels = self.params_form.widgets, {}
        for key, default in e.defaults.items():
            w = self.params_form.add(key, self._field(key, default))
            w.setToolTip(f"{key} (default {_format(default)}); the criterion and the measured sentence name "
                         "the parameters they use")
            label = QtWidgets.QLabel(key)
            label.setToolTip(w.toolTip())
            self.param_form.addRow(label, w)
            self._labels[key] = label
        self.params_form.load(e.defaults)
        self.params_form.changed.connect(self._mark_changed)
        self._mark_changed()

    @staticmethod
    def _field(key: str, default) -> QtWidgets.QWidget:
        """An input for a parameter whose default is `default` (its value is set by the form's load)."""
        if isinstance(default, bool):
            return QtWidgets.QCheckBox()
        if isinstance(default, int):
            w = QtWidgets.QSpinBox()
            w.setRange(0 if default >= 0 else -2_000_000_000, 2_000_000_000)
            w.setGroupSeparatorShown(False)
            return w
        if isinstance(default, float):
            return SciSpinBox(default)
        if key == "density" and default in densities.PRESET_NAMES:
            return common.combo([(n, n) for n in densities.PRESET_NAMES], default)
        return QtWidgets.QLineEdit()

    def values(self) -> dict:
        """The form's parameter values, typed like the defaults."""
        return self.params_form.values()

    def set_value(self, key: str, value):
        """Set one field (the demo; tests type into the widgets)."""
        self.params_form.set(key, value)

    def reset_params(self):
        for key, default in self.experiment().defaults.items():
            self.set_value(key, default)

    def _mark_changed(self, *_):
        defaults = self.experiment().defaults
        for key, value in self.values().items():
            font = self._labels[key].font()
            font.setBold(value != defaults[key])
            self._labels[key].setFont(font)

    # ------------------------------------------------------------------ run
    def is_running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def run_control(self):
        """Run the selected experiment's negative control (in the worker, as Run)."""
        self.run(control=True)

    def run(self, control: bool = False):
        if self.is_running():
            return
        e = self.experiment()
        try:
            params = e.params(self.values())
        except ValueError as err:
            self._say(e.name, f"<span style='color:#c33'>{err}</span>")
            return
        self.stop_worker()
        density = params.get("density")
        if self.sync_density.isChecked() and isinstance(density, str) and density in densities.PRESET_NAMES:
            d = densities.preset(density)
            if self.state.density.to_dict() != d.to_dict():
                self.state.set_density(d)
                self.state.status.emit(f"Density set to {density} for the experiment {e.name} (Ctrl+Z undoes)")
        w = JobWorker(run_until_cancelled, dict(experiment=e, params=dict(params), control=control),
                      f"{e.name}{' (control)' if control else ''}", parent=self)
        w.progress.connect(self._on_progress)
        w.done.connect(self._on_done)
        w.cancelled.connect(self._on_cancelled)
        w.failed.connect(self._on_failed)
        self.worker, self.running_name = w, e.name
        self.progress.setValue(0)
        self._say(e.name, f"Running {e.name}{' (negative control)' if control else ''}…")
        w.start()
        self._update_buttons()

    def cancel(self):
        if self.is_running():
            self.worker.cancel()
            self._say(self.running_name, f"Cancelling {self.running_name} at its next progress point…")

    def stop_worker(self):
        w = self.worker
        if w is None:
            return
        self.worker = None
        self.running_name = None
        common.retire_worker(w, (w.progress, w.done, w.cancelled, w.failed))
        self._update_buttons()

    def shutdown(self):
        """End the running experiment (cancel it and wait for its thread): the window is closing."""
        self.stop_worker()

    def _say(self, name: str, text: str):
        """Status line `text` for experiment `name`: kept per experiment, shown while it is selected."""
        self._status_of[name] = text
        self._show_status()

    def _show_status(self):
        """The selected experiment's own last status; while another one runs, say which."""
        selected = self.experiment().name
        if self.running_name is not None and self.running_name != selected:
            self.status.setText(f"Running {self.running_name}… (select it to follow its progress)")
        else:
            self.status.setText(self._status_of.get(selected, DEFAULT_STATUS))

    def _update_buttons(self):
        running = self.is_running()
        self.run_btn.setEnabled(not running)
        self.control_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    def _finished(self):
        self.worker, self.running_name = None, None
        self._update_buttons()

    @QtCore.Slot(float, str)
    def _on_progress(self, frac: float, what: str):
        if common.from_current_worker(self):
            self.progress.setValue(int(1000 * frac))
            self._say(self.running_name, f"Running {self.running_name}: {what}")

    @QtCore.Slot(object)
    def _on_done(self, result):
        if not common.from_current_worker(self):
            return
        self.worker.wait()
        self._finished()
        self.results[result.name] = result
        self.progress.setValue(1000)
        kind = " (negative control)" if result.control else ""
        self._say(result.name, f"{result.name}{kind} finished in {result.seconds:.1f} s.")
        if not result.control:
            self._mark_list(result)
        if self.experiment().name == result.name:
            self._show(result)

    @QtCore.Slot()
    def _on_cancelled(self):
        if common.from_current_worker(self):
            name = self.running_name
            self.worker.wait()
            self._finished()
            self.progress.setValue(0)
            self._say(name, "Cancelled.")

    @QtCore.Slot(str)
    def _on_failed(self, msg: str):
        if common.from_current_worker(self):
            name = self.running_name
            self.worker.wait()
            self._finished()
            self._say(name, f"<span style='color:#c33'>{msg}</span>")
            self.state.status.emit(msg)

    def wait(self, timeout_s: float = 120.0) -> bool:
        """Process events until the run is finished (demo and tests)."""
        return common.process_events_until(lambda: self.worker is None, timeout_s)

    def run_demo(self, name: str = DEMO_EXPERIMENT, timeout_s: float = 120.0, sync_density: bool = False):
        """Select and run one fast experiment for the screenshot. The density is left alone by default,
        so the other tabs keep showing the density their demo model was trained on."""
        self.select(name)
        before = self.sync_density.isChecked()
        self.sync_density.setChecked(sync_density)
        try:
            self.run()
        finally:
            self.sync_density.setChecked(before)
        self.wait(timeout_s)

    # ------------------------------------------------------------------ show
    def current_result(self) -> ExperimentResult | None:
        """The result shown: the latest run of the selected experiment (None if it has not run)."""
        return self.results.get(self.experiment().name)

    def table_figures(self) -> dict[str, float]:
        """The figures table as numbers (full figure name → the mean shown), as shown."""
        out = {}
        for row in range(self.table.rowCount()):
            name = self.table.item(row, 0).data(QtCore.Qt.ItemDataRole.UserRole)
            out[name] = self.table.item(row, 1).data(QtCore.Qt.ItemDataRole.UserRole)
        return out

    def plotted_figures(self) -> dict[str, tuple[float, list[float]]]:
        """The figures plot as numbers (full figure name → (mean, per-seed values)), as drawn."""
        return dict(self._plotted)

    def _plot_figures(self, result: ExperimentResult | None):
        """Draw `result`'s figures, one row each (the table's order, top to bottom): the per-seed values as
        dots spread a little apart vertically, the mean as a bar, ±sd as a whisker."""
        self._plotted = {}
        names = list(result.figures) if result is not None else []
        plot = self.figures_plot.getPlotItem()
        if not names:
            for item in (self.seed_dots, self.mean_marks):
                item.setData([], [])
            self.sd_bars.setData([], [])
            self.figures_axis.setTicks([[]])
            plot.setTitle("")
            return
        rows = {name: len(names) - 1 - i for i, name in enumerate(names)}
        values = [v for name in names for v in [result.figures[name], *result.per_seed.get(name, [])]]
        positive = [v for v in values if v > 0]
        log = len(positive) == len(values) and max(values) > 100 * min(values)
        plot.setLogMode(x=log, y=False)
        dots_x, dots_y, bars_x, bars_y = [], [], [], []
        for name in names:
            mean, seeds, y = result.figures[name], result.per_seed.get(name, []), rows[name]
            self._plotted[name] = (mean, list(seeds))
            k = len(seeds)
            dots_x += seeds
            dots_y += [y + 0.3 * ((i + 0.5) / k - 0.5) for i in range(k)]
            sd = result.spread.get(name)
            if sd is not None and sd == sd and sd > 0:
                lo = mean - sd
                bars_x += [lo if (lo > 0 or not log) else mean, mean + sd]
                bars_y += [y, y]
        self.seed_dots.setData(dots_x, dots_y)
        self.mean_marks.setData([result.figures[n] for n in names], [rows[n] for n in names])
        self.sd_bars.setData(bars_x, bars_y)
        self.figures_axis.setTicks([[(rows[n], short_label(result, n)) for n in names]])
        plot.setYRange(-0.6, len(names) - 0.4, padding=0)
        plot.enableAutoRange(x=True)
        plot.setTitle(f"measured figures: seeds (dots), mean ± sd{' — log axis' if log else ''}", size="9pt")

    def verdict_text(self) -> str:
        return self.verdict.text()

    def _mark_list(self, result: ExperimentResult):
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(QtCore.Qt.ItemDataRole.UserRole) == result.name:
                title = EXPERIMENTS[result.name].title
                item.setText(f"{'✓' if result.holds else '✗'} {title}")
                item.setForeground(QtGui.QColor("#3fb950" if result.holds else "#ff6b5e"))

    def _show(self, result: ExperimentResult | None):
        self.table.setRowCount(0)
        self._plot_figures(result)
        if result is None:
            self.verdict.setText("not run yet")
            self.verdict.setStyleSheet(IDLE_STYLE)
            self.measured.setText("— (Run to measure)")
            self.measured_box.setStyleSheet("")
            self.disagree.hide()
            self.footer.setText("")
            return
        e = EXPERIMENTS[result.name]
        if result.control:
            if result.holds:
                self.verdict.setText("✓ holds — but this is the NEGATIVE CONTROL: the criterion did not fail with the "
                                     "mechanism removed")
                self.verdict.setStyleSheet(FAILS_STYLE)
                self.disagree.setText(f"The negative control ({e.control}) holds: the criterion cannot tell the "
                                      "mechanism's effect from its absence with these parameters.")
                self.disagree.show()
            else:
                self.verdict.setText("✗ does not hold — the negative control, as it must")
                self.verdict.setStyleSheet(CONTROL_FAILS_STYLE)
                self.disagree.hide()
            self.measured_box.setStyleSheet("")
        elif result.holds:
            self.verdict.setText("✓ holds — the measured outcome agrees with the expected one")
            self.verdict.setStyleSheet(HOLDS_STYLE)
            self.measured_box.setStyleSheet("QGroupBox { border: 2px solid #1e7b34; border-radius: 4px; "
                                            "margin-top: 1.2em } QGroupBox::title { color: #3fb950 }")
            self.disagree.hide()
        else:
            self.verdict.setText("✗ does not hold — the measured outcome disagrees with the expected one")
            self.verdict.setStyleSheet(FAILS_STYLE)
            self.measured_box.setStyleSheet("QGroupBox { border: 2px solid #b3261e; border-radius: 4px; "
                                            "margin-top: 1.2em } QGroupBox::title { color: #ff6b5e }")
            self.disagree.setText("Disagreement: the criterion (below) is false on the measured figures, so the "
                                  "claim is not reproduced with these parameters.")
            self.disagree.show()
        self.measured.setText(result.measured)
        self.table.setRowCount(len(result.figures))
        align = QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        for row, (name, value) in enumerate(result.figures.items()):
            key = QtWidgets.QTableWidgetItem(short_label(result, name))
            key.setData(QtCore.Qt.ItemDataRole.UserRole, name)
            key.setToolTip(name)
            sd = result.spread.get(name)
            val = QtWidgets.QTableWidgetItem(format_value(value, sd))
            val.setData(QtCore.Qt.ItemDataRole.UserRole, value)
            val.setTextAlignment(align)
            val.setToolTip(f"mean {value!r}, sd {sd!r} over {len(result.seeds)} seeds")
            seeds = result.per_seed.get(name, [])
            per = QtWidgets.QTableWidgetItem(", ".join(f"{v:.3g}" for v in seeds))
            per.setToolTip("\n".join(f"seed {s}: {v!r}" for s, v in zip(result.seeds, seeds)))
            self.table.setItem(row, 0, key)
            self.table.setItem(row, 1, val)
            self.table.setItem(row, 2, per)
        changed = {k: v for k, v in result.params.items() if e.defaults.get(k) != v}
        used = ", ".join(f"{k}={_format(v)}" for k, v in changed.items()) or "the defaults"
        what = "Negative control ran" if result.control else "Ran"
        self.footer.setText(f"{what} in {result.seconds:.1f} s over seeds {', '.join(map(str, result.seeds))} "
                            f"with {used}.")

    def export_target(self):
        return self
