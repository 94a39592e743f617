"""The Image-runs tab's "Quality per checkpoint" panel: the offline digit judge's figures of a
run's checkpoints (``RUN_DIR/eval.jsonl``, written by ``python -m trainers.image evaluate``)
against the step, beside held-out real digits and uniform noise, and a "Rate checkpoints" button
that evaluates the checkpoints not rated yet, one child process after another.

Conventions: x is the checkpoint step; y the judge's mean top-class probability of the samples
(solid) and their share with probability > 0.9 (dashed), both in [0, 1]; the horizontal lines
are the same figures for the real digits (green, what good looks like) and for noise (grey).
One kind of evaluation is drawn at a time (sampler, NFE and weights: ``run_files.eval_kind``); lines of
one step (other seeds) are averaged. Bits/dim (DDPM runs) has its own small plot when present.
No maths here: the figures are the CLI's, read by ``explorer.runs``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from trainers.image import run_layout as layout
from trainers.image import runs as run_files

from ... import runs
from ...workers import process
from . import axes, common

POLL_MS = 1000                  # eval.jsonl change check (one stat) for the viewed run
DEFAULT_N = 200                 # samples per rated checkpoint
DEFAULT_BPD_N = 64              # held-out images for bits/dim per rated checkpoint
# Rate checkpoints' samplers: (data, label); the fast one first (the default)
RATE_SAMPLERS = [(runs.FAST_SAMPLER, f"DDIM {runs.FAST_NFE} steps (fast)"),
                 ("", "run's own (full, slow)")]
SAMPLES_COLOUR = (255, 170, 60)
REAL_COLOUR = (110, 210, 110)
NOISE_COLOUR = (160, 160, 160)
FIGURE_STYLE = {"mean_confidence": (QtCore.Qt.PenStyle.SolidLine, "confidence"),
                "frac_confident": (QtCore.Qt.PenStyle.DashLine, "share > 0.9")}
# where along each horizontal line its label sits (0: left edge, 1: right edge)
LABEL_AT = {("reference", "mean_confidence"): 0.3, ("reference", "frac_confident"): 0.7,
            ("noise", "mean_confidence"): 0.3, ("noise", "frac_confident"): 0.7}

TIP = {
    "plot": "The digit judge's verdict on samples drawn from each checkpoint (eval.jsonl):\n"
            "solid: mean confidence (top-class probability); dashed: share of samples with "
            "confidence > 0.9.\nGreen lines: the same figures for held-out real digits (good); "
            "grey lines: for uniform noise (bad).",
    "bpd": "Bits per dimension of held-out images (negative ELBO, DDPM runs; lower is better).",
    "kind": "Which evaluations to draw: sampler, network evaluations per sample and weights. "
            "Lines of the same checkpoint (other seeds) are averaged.",
    "n": "Samples drawn and judged per checkpoint by Rate checkpoints.",
    "bpd_n": "Held-out images for bits/dim per checkpoint (DDPM runs; each costs T network "
             "evaluations). 0 skips bits/dim.",
    "rate": "Evaluate every checkpoint of the viewed run that eval.jsonl has no line for yet with the "
            "chosen sampler (python -m trainers.image evaluate, EMA weights) and, for a class-conditional "
            "run, the class and w chosen on the Samples sub-tab, one after another in a "
            "separate process; the plot grows after each, and the status line estimates the time left "
            "from the checkpoints rated so far.",
    "rate_with": f"Sampler of Rate checkpoints. DDIM {runs.FAST_NFE} steps: seconds per checkpoint on a "
                 "CPU. run's own: the full sampler the run was trained for (DDPM: T = 1000 network "
                 "evaluations per sample, about 20x slower).",
    "cancel": "Stop the evaluation running now and skip the rest.",
    "status": "What the quality panel is doing.",
}


class QualityPanel(QtWidgets.QGroupBox):
    """Quality-per-checkpoint plot of the viewed run, and the Rate checkpoints job."""

    output = QtCore.Signal(str)           # the evaluate processes' text
    failed = QtCore.Signal(str)           # a rating failed: the message to show
    ratingStarted = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None, poll_ms: int = POLL_MS):
        super().__init__("Quality per checkpoint", parent)
        self.run: Path | None = None          # the viewed run
        self.records: list[dict] = []         # its eval.jsonl lines
        self.curves: run_files.QualityCurves | None = None
        self.seen_key: tuple | None = None    # eval.jsonl's (mtime, size) when last read
        self.rating_run: Path | None = None   # the run being rated and its checkpoints in turn
        self.rating_steps: list[int] = []
        self.rater = process.ChildQueue(self)
        self.kind = common.combo([], None, TIP["kind"])
        self.plot = common.tip(pg.PlotWidget(axisItems=axes.items()), TIP["plot"])
        self.sample_curves: dict[str, pg.PlotDataItem] = {}
        self.levels: dict[tuple[str, str], pg.InfiniteLine] = {}    # (reference|noise, figure)
        self.bpd_plot = common.tip(pg.PlotWidget(axisItems=axes.items()), TIP["bpd"])
        self.bpd_curve = self.bpd_plot.plot([], [], pen=pg.mkPen(*SAMPLES_COLOUR, width=2),
                                            symbol="o", symbolSize=5, symbolPen=None,
                                            symbolBrush=pg.mkBrush(*SAMPLES_COLOUR))
        self.n_samples = common.spin(10, 5000, DEFAULT_N, tooltip=TIP["n"])
        self.bpd_n = common.spin(0, 5000, DEFAULT_BPD_N, tooltip=TIP["bpd_n"])
        self.rate_with = common.combo(RATE_SAMPLERS, runs.FAST_SAMPLER, TIP["rate_with"])
        self.rating_times: list[float] = []   # seconds each rated checkpoint took (this rating)
        # (class, w) Rate checkpoints asks for: the owner's choice (the Image-runs tab: the Samples
        # sub-tab's Class and w); (None, 0.0): unconditional
        self.condition: Callable[[], tuple[int | None, float]] = lambda: (None, 0.0)
        self._begun_at: float | None = None
        self.rate_btn = common.tip(QtWidgets.QPushButton("Rate checkpoints"), TIP["rate"])
        self.cancel_btn = common.tip(QtWidgets.QPushButton("Cancel"), TIP["cancel"])
        self.status = common.tip(QtWidgets.QLabel("–"), TIP["status"])
        self.status.setWordWrap(True)
        self.poll_timer = QtCore.QTimer(self, interval=poll_ms)
        self._build_plots()
        self._lay_out()
        self._connect()
        self._set_rating(False)
        self.poll_timer.start()

    def _build_plots(self) -> None:
        self.plot.setTitle("samples (orange), real digits (green), noise (grey)<br>"
                           "solid: confidence, dashed: share > 0.9", size="8pt")
        self.plot.setLabel("bottom", "checkpoint step")
        self.plot.setLabel("left", "judge")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setYRange(0, 1.02, padding=0)
        for fig, (style, name) in FIGURE_STYLE.items():
            pen = pg.mkPen(*SAMPLES_COLOUR, width=2, style=style)
            self.sample_curves[fig] = self.plot.plot(
                [], [], pen=pen, symbol="o", symbolSize=5, symbolPen=None,
                symbolBrush=pg.mkBrush(*SAMPLES_COLOUR), name=f"samples: {name}")
            for source, colour, words in (("reference", REAL_COLOUR, "real"),
                                          ("noise", NOISE_COLOUR, "noise")):
                line = pg.InfiniteLine(angle=0, movable=False,
                                       pen=pg.mkPen(*colour, width=1.5, style=style),
                                       label=f"{words} {{value:.2f}}",
                                       labelOpts={"position": LABEL_AT[source, fig],
                                                  "color": colour})
                line.hide()
                self.plot.addItem(line, ignoreBounds=True)
                self.levels[source, fig] = line
        self.bpd_plot.setLabel("bottom", "checkpoint step")
        self.bpd_plot.setLabel("left", "bits/dim")
        self.bpd_plot.showGrid(x=True, y=True, alpha=0.25)
        self.bpd_plot.setXLink(self.plot)
        self.bpd_plot.setMaximumHeight(110)
        self.plot.setMinimumHeight(150)
        self.bpd_plot.hide()

    def _lay_out(self) -> None:
        # compact rows: the tab's three columns must fit 1400 px
        v = QtWidgets.QVBoxLayout(self)
        v.setContentsMargins(4, 4, 4, 4)
        v.addWidget(self.kind)
        v.addWidget(self.plot, 3)
        v.addWidget(self.bpd_plot, 1)
        row = QtWidgets.QHBoxLayout()
        for label, w in (("n", self.n_samples), ("bits/dim n", self.bpd_n)):
            row.addWidget(common.tip(QtWidgets.QLabel(label), w.toolTip()))
            row.addWidget(w)
        row.addStretch(1)
        v.addLayout(row)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.rate_with, 1)
        buttons.addWidget(self.rate_btn)
        buttons.addWidget(self.cancel_btn)
        buttons.addStretch(1)
        v.addLayout(buttons)
        v.addWidget(self.status)

    def _connect(self) -> None:
        self.kind.currentIndexChanged.connect(lambda _: self.draw())
        self.rate_btn.clicked.connect(self.rate)
        self.cancel_btn.clicked.connect(self.cancel)
        self.poll_timer.timeout.connect(self.reload_if_changed)
        self.rater.output.connect(self.output)
        self.rater.begun.connect(self._on_begun)
        self.rater.ended.connect(self._on_ended)
        self.rater.finished.connect(self._on_finished)

    # ------------------------------------------------------------------ reading and drawing
    def set_run(self, run: Path | None) -> None:
        """Show ``run``'s evaluations (None: nothing)."""
        self.run = Path(run) if run is not None else None
        self.reload()

    def reload_if_changed(self) -> None:
        """Re-read eval.jsonl when it changed since the last read (the panel's poll)."""
        if self.run is not None and run_files.file_key(layout.eval_path(self.run)) != self.seen_key:
            self.reload()

    def reload(self) -> None:
        """Re-read the viewed run's eval.jsonl and redraw, keeping the chosen kind if present."""
        self.seen_key = run_files.file_key(layout.eval_path(self.run)) if self.run else None
        self.records = run_files.read_evals(self.run) if self.run else []
        kinds = run_files.eval_kinds(self.records)
        keep = self.kind.currentData()
        self.kind.blockSignals(True)
        self.kind.clear()
        for kind in kinds:
            self.kind.addItem(kind, kind)
        self.kind.setCurrentIndex(kinds.index(keep) if keep in kinds else (0 if kinds else -1))
        self.kind.setEnabled(len(kinds) > 1)
        self.kind.blockSignals(False)
        self.draw()

    def draw(self) -> None:
        kind = self.kind.currentData()
        self.curves = run_files.quality_curves(self.records, kind) if kind else None
        c = self.curves
        for fig, curve in self.sample_curves.items():
            curve.setData(c.steps if c else [], c.samples[fig] if c else [])
        for (source, fig), line in self.levels.items():
            value = getattr(c, source)[fig] if c else math.nan
            line.setVisible(math.isfinite(value))
            if math.isfinite(value):
                line.setValue(value)
        self.bpd_curve.setData(c.bpd_steps if c else [], c.bpd if c else [])
        self.bpd_plot.setVisible(bool(c and c.bpd))
        self._fit_x(sorted(set(c.steps) | set(c.bpd_steps)) if c else [])
        if not self.rater.is_running():
            self.status.setText(self._summary())

    def _fit_x(self, steps: list[int]) -> None:
        """x from the first to the last checkpoint shown, 5 % margins (one checkpoint: ±10 % of it);
        set here, not by auto-range, which the x-linked (possibly hidden) bits/dim plot can pull."""
        if not steps:
            return
        lo, hi = steps[0], steps[-1]
        pad = 0.05 * (hi - lo) if hi > lo else max(1.0, 0.1 * abs(hi))
        self.plot.setXRange(lo - pad, hi + pad, padding=0)

    def _summary(self) -> str:
        if self.run is None:
            return "No run viewed."
        if not self.records:
            return "No evaluations yet: Rate checkpoints judges each checkpoint's samples."
        c = self.curves
        judged = f"{len(c.steps)} checkpoint{'s' * (len(c.steps) != 1)} judged" if c and c.steps \
            else "no judge for this dataset (digits and MNIST runs only)"
        return f"{judged} ({len(self.records)} lines in {layout.EVAL})."

    # ------------------------------------------------------------------ rating
    def is_rating(self) -> bool:
        return self.rater.is_running()

    def rate(self) -> bool:
        """Evaluate the viewed run's checkpoints that eval.jsonl does not cover yet, in turn;
        False (with the reason in the status line) when there is nothing to do."""
        if self.is_rating() or self.run is None:
            return False
        sampler = self.rate_with.currentData()
        nfe = runs.sampler_nfe(sampler)
        label, guidance = self.condition()
        steps = run_files.unrated_steps(self.run, sampler, nfe, label, guidance)
        if not steps:
            self.status.setText(f"Every checkpoint is rated already ({self.rate_with.currentText()}"
                                f"{', ' + run_files.condition_text(label, guidance)[:-2] if label is not None else ''})."
                                if run_files.checkpoint_steps(self.run) else "This run has no checkpoints yet.")
            return False
        self.rating_run, self.rating_steps = self.run, steps
        self.rating_times, self._begun_at = [], None
        self.ratingStarted.emit()
        self._set_rating(True)
        self.rater.start([runs.rate_args(self.run, step, self.n_samples.value(), self.bpd_n.value(),
                                         sampler, nfe, label, guidance) for step in steps])
        return True

    def eta_text(self, index: int, total: int) -> str:
        """The time left before checkpoint ``index`` (0-based) of ``total`` starts: the mean time of
        the checkpoints rated so far times those left; before the first is done, no figure."""
        if not self.rating_times:
            return "time left: known after the first checkpoint"
        left = (total - index) * sum(self.rating_times) / len(self.rating_times)
        return f"about {runs.format_seconds(left)} left"

    def cancel(self) -> None:
        if self.is_rating():
            self.status.setText("Cancelling …")
            self.rater.cancel()

    def shutdown(self) -> None:
        """Stop polling and stop a rating in progress: call before the panel goes away."""
        self.poll_timer.stop()
        self.rater.cancel()

    def _set_rating(self, on: bool) -> None:
        self.rate_btn.setEnabled(not on)
        self.cancel_btn.setEnabled(on)
        self.n_samples.setEnabled(not on)
        self.bpd_n.setEnabled(not on)
        self.rate_with.setEnabled(not on)

    def _on_begun(self, index: int, total: int) -> None:
        now = time.monotonic()
        if self._begun_at is not None and index > 0:
            self.rating_times.append(now - self._begun_at)
        self._begun_at = now
        self.status.setText(f"Rating checkpoint {index + 1} of {total} (step "
                            f"{self.rating_steps[index]}) of {self.rating_run.name} with "
                            f"{self.rate_with.currentText()}; {self.eta_text(index, total)} …")

    def _on_ended(self, index: int, end: process.ProcessExit) -> None:
        if self.run is not None and self.rating_run is not None \
                and self.run.resolve() == self.rating_run.resolve():
            self.reload()
        step = self.rating_steps[index]
        if end.stopped:
            return
        if end.code != 0:
            self.failed.emit(f"Rating checkpoint {step} failed: {runs.error_message(end.stderr)}")
            return
        reply = runs.json_reply(end.stdout) or {}
        if reply.get("record_note"):
            self.failed.emit(f"Rating checkpoint {step}: {reply['record_note']}")

    def _on_finished(self, ok: bool) -> None:
        self._set_rating(False)
        self.draw()
        done = self.status.text()
        self.status.setText(("Rated every checkpoint. " if ok else "Rating stopped. ") + done)
