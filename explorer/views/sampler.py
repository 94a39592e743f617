"""Samplers tab: up to four panels, each a registry sampler (trainers.samplers.SAMPLERS) driven by the
trained model or the exact score, all from the same initial particles z and the same noise seed.

The chains are set up by trainers.studies.chains (score models, initial particles, metrics) and computed
in the chain stepper `ChainWorker` (a QThread; chains on one model share one batched forward pass per
round) and recorded; the GUI plays, steps or scrubs through the recording. Top row: particles over
the true density (trails, or whole flow lines for deterministic samplers); bottom row: histogram of
the first coordinate vs the true marginal; under each panel the NFE spent, the energy distance to true
samples of the panel's target (p(x); p(x|c) for a panel on class c; and the tilted p_w(x|c) under CFG
with w ≠ 0), the mode weights and, when the model is asked outside its trained σ range, a note saying so.
A diverging chain stops with a message in its panel; the other chains go on. A density change is
followed once a burst of strokes is over (or when the tab is shown), never within the stroke itself.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from trainers import grid
from trainers.studies import chains
from trainers.studies.chains import ChainSpec

from ..workers.chains import ChainWorker
from ..state import MAX_PANELS
from .parts import common
from .parts.sampler_panel import PanelControls
from .parts.stale_banner import StaleModelBanner

COLORS = [(255, 200, 40, 170), (80, 220, 255, 170), (255, 90, 200, 170), (120, 255, 120, 170)]
TRAIL_PEN = pg.mkPen(255, 255, 255, 150, width=1.0)
TRAIL_FRAMES = 30        # a trail shows the last this-many frames
FLOW_PARTICLES = 150     # flow lines: whole paths of this many particles
METRIC_POINTS = 30       # metrics are computed at about this many frames of the timeline
HEAT_N = 120             # the true density's picture under each panel
AXIS_WIDTH = 40          # px of every panel's left axis, so that the linked panels' view boxes are equal
DENSITY_DELAY_MS = 150   # a visible tab follows a density change this long after the last one (a burst of strokes)

TIP = {
    "n": "Number of particles (every panel starts from the same ones).",
    "init": "Initial particles: the Gaussian matched to p_σmax, N(m, C + σ_max²I) from the same z ~ N(0, I) "
            "(VP samplers: scaled by √ᾱ); exact draws of p_σmax where a panel uses the exact score (no prior "
            "mismatch; model panels keep the matched Gaussian); or the same uniform points over the view.",
    "n_panels": "How many panels (samplers) run side by side. Panels on the same model share one batched "
                "forward pass per step.",
    "frames": "Timeline resolution: each chain is recorded at this many evenly spaced instants of its own length.",
    "speed": "Frames advanced per animation tick (~60 ticks/s at most).",
    "trails": "Draw the recent path (last 30 frames) of this many particles.",
    "flow": "Deterministic samplers (PF-ODE, DDIM with η = 0): draw the whole path of "
            f"{FLOW_PARTICLES} particles up to the current frame: the flow from noise to data.",
}


def score_models(state):
    """(the trained model as a ScoreModel or None, the exact score, the config they follow), as of now
    (trainers.studies.chains.score_models): the weights are copied, so training may go on."""
    model = copy.deepcopy(state.model) if state.model is not None else None
    cfg = state.model_settings if model is not None else state.train
    trained_on = (state.model_density or state.density) if model is not None else state.density
    return (*chains.score_models(model, cfg, trained_on, state.density), cfg)


class SamplerView(QtWidgets.QWidget):
    title = "Samplers"
    playingChanged = QtCore.Signal(bool)

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.worker: ChainWorker | None = None
        self.frame = 0
        self.playing = False
        self.active: list[int] = []
        self._linked: list[int] | None = None     # the panels whose axes are linked now
        self._syncing = False                      # _follow_range is copying a range (no feedback)
        self._ref = None                 # (density, reference samples, {its class and tilted targets' references})
        self._model_step_used = None
        self._pending = None
        self._density_used = None        # the density the chains were started on
        self._density_stale = False      # the density changed since the picture was drawn
        self._heat_shown = None          # (density, bounds, HEAT_N² picture) under the panels
        self._stale = False              # newer weights arrived while the tab was hidden
        self.specs: list[ChainSpec] = []     # the running chains' specs, one per active panel
        self.target_names: list[dict] = []   # per active panel: what each metric is against
        self.flowing: list[bool] = []        # per active panel: deterministic (flow lines may be drawn)
        # SamplerSettings fields: those that need new chains, and those that only change the drawing
        self.chains_form = common.FormBinding(self)
        self.display_form = common.FormBinding(self)
        self._density_timer = QtCore.QTimer(self)
        self._density_timer.setSingleShot(True)
        self._density_timer.setInterval(DENSITY_DELAY_MS)
        self._density_timer.timeout.connect(self.follow_density)
        ss = state.sampler

        lay = QtWidgets.QHBoxLayout(self)
        panel, side = common.side_panel(320)
        lay.addWidget(panel)

        box, form = common.form_group("Particles")
        field = self.chains_form.add
        self.n = field("n_particles", common.spin(10, 50000, 10, 500, tooltip=TIP["n"]))
        self.init = field("init", common.combo([("gaussian", "matched Gaussian"), ("exact", "exact p_σmax"),
                                                ("uniform", "uniform over view")], tooltip=TIP["init"]))
        self.n_panels = field("n_panels", common.spin(1, MAX_PANELS, 1, tooltip=TIP["n_panels"]))
        form.addRow("Particles", self.n)
        form.addRow("Start from", self.init)
        form.addRow("Panels", self.n_panels)
        side.addWidget(box)
        self.controls = [PanelControls(i, COLORS[i]) for i in range(MAX_PANELS)]
        for c in self.controls:
            side.addWidget(c)

        box, form = common.form_group("Playback")
        self.frames = field("frames", common.spin(10, 1000, 10, 10, tooltip=TIP["frames"]))
        self.speed = common.spin(1, 20, 1, tooltip=TIP["speed"])
        self.trails = self.display_form.add("trails", common.spin(0, 50, 0, tooltip=TIP["trails"]))
        self.flow = self.display_form.add("flow_lines", QtWidgets.QCheckBox("Flow lines (deterministic samplers)"))
        self.flow.setToolTip(TIP["flow"])
        self.chains_form.load(ss)
        self.display_form.load(ss)
        form.addRow("Frames", self.frames)
        form.addRow("Speed", self.speed)
        form.addRow("Trails", self.trails)
        form.addRow(self.flow)
        side.addWidget(box)
        self.note = QtWidgets.QLabel()
        self.note.setWordWrap(True)
        side.addWidget(self.note)
        side.addStretch(1)

        right = QtWidgets.QVBoxLayout()
        lay.addLayout(right, 1)
        self.stale_banner = StaleModelBanner(state)       # the model no longer matches: say so, offer a retrain
        right.addWidget(self.stale_banner)
        self.canvas = QtWidgets.QWidget()          # plots + the text under each panel (exported together)
        self.canvas.setStyleSheet("background: black; color: #ddd")
        cv = QtWidgets.QVBoxLayout(self.canvas)
        cv.setContentsMargins(0, 0, 0, 0)
        right.addWidget(self.canvas, 1)
        self.plots = pg.GraphicsLayoutWidget()
        cv.addWidget(self.plots, 1)
        text_row = QtWidgets.QHBoxLayout()
        cv.addLayout(text_row)
        self.panels = []
        for i in range(MAX_PANELS):
            p = self.plots.addPlot(row=0, col=i)
            p.setMenuEnabled(False)
            heat = common.heat_image()
            heat.setOpacity(0.55)
            p.addItem(heat)
            pts = PointsItemWithColor(COLORS[i])
            p.addItem(pts)
            trail = pg.PlotDataItem(pen=TRAIL_PEN, connect="finite")
            trail.setZValue(20)
            p.addItem(trail)
            h = self.plots.addPlot(row=1, col=i)
            h.setMenuEnabled(False)
            h.setMaximumHeight(150)
            h.setLabel("bottom", "x₁")
            hist = pg.PlotDataItem(stepMode="center", fillLevel=0, pen=pg.mkPen(COLORS[i][:3]),
                                   brush=pg.mkBrush(*COLORS[i][:3], 80))
            truth = pg.PlotDataItem(pen=pg.mkPen(230, 230, 230, width=1.5))
            h.addItem(hist)
            h.addItem(truth)
            label = QtWidgets.QLabel()
            label.setWordWrap(True)
            label.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
            label.setFixedHeight(76)          # a fixed size: new text each frame must not re-layout the plots
            label.setStyleSheet("font-size: 8pt; padding: 2px 6px")
            text_row.addWidget(label, 1)
            # equal, shared axes: every panel's view box gets the same size (fixed axis width, titles that
            # do not widen their column), and zooming or panning one panel moves them all
            for plot in (p, h):
                plot.getAxis("left").setWidth(AXIS_WIDTH)
            common.title_takes_no_width(p)
            p.vb.sigRangeChanged.connect(lambda *_, i=i: self._follow_range(i))
            self.panels.append({"plot": p, "heat": heat, "points": pts, "trail": trail, "hist_plot": h,
                                "hist": hist, "truth": truth, "label": label, "metric": {}, "title": ""})

        controls = QtWidgets.QHBoxLayout()
        right.addLayout(controls)
        self.restart_btn = QtWidgets.QPushButton("New chains")
        self.restart_btn.setToolTip("Restart every panel from the initial particles (uses the latest model weights).")
        self.play_btn = QtWidgets.QPushButton("Play")
        self.play_btn.setToolTip("Play / pause the animation (Space)")
        self.step_btn = QtWidgets.QPushButton("Step ▶")
        self.step_btn.setToolTip("One frame forward (Right arrow); Left arrow goes back")
        self.end_btn = QtWidgets.QPushButton("Run to end")
        self.end_btn.setToolTip("Compute the rest of the chains and show the last frame")
        self.scrub = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.scrub.setToolTip("Scrub through the recorded frames")
        self.frame_label = QtWidgets.QLabel()
        self.frame_label.setMinimumWidth(90)
        for w in (self.restart_btn, self.play_btn, self.step_btn, self.end_btn):
            controls.addWidget(w)
        controls.addWidget(self.scrub, 1)
        controls.addWidget(self.frame_label)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(16)
        self.timer.timeout.connect(self._tick)
        self.restart_btn.clicked.connect(self.restart)
        self.play_btn.clicked.connect(self.toggle_play)
        self.step_btn.clicked.connect(lambda: self.step(1))      # `clicked` would pass checked=False as delta
        self.end_btn.clicked.connect(self.run_to_end)
        self.scrub.valueChanged.connect(self._on_scrub)
        self._load_controls()
        self.chains_form.changed.connect(self._settings_changed)
        for c in self.controls:
            c.changed.connect(self._settings_changed)
        self.display_form.changed.connect(self._display_changed)
        state.densityChanged.connect(self._on_density)
        state.modelChanged.connect(self._on_model)
        self.follow_density()

    # ------------------------------------------------------------------ settings / lifecycle
    def _load_controls(self):
        ss = self.state.sampler
        for c, p in zip(self.controls, ss.panels):
            c.load(p)
        for i, c in enumerate(self.controls):
            c.setVisible(i < ss.n_panels)

    def _settings_changed(self, *_):
        self.state.update_sampler(**self.chains_form.values(), panels=[c.panel() for c in self.controls])
        for i, c in enumerate(self.controls):
            c.setVisible(i < self.n_panels.value())
        self.restart()

    def _display_changed(self, *_):
        self.state.update_sampler(**self.display_form.values())
        self.show_frame(self.frame)

    def set_panel(self, i: int, sampler: str, source: str = "model", **options):
        """Set panel i as a user would (tests, demo): sampler, source, then options; restarts."""
        self.controls[i].set_as_user(sampler, source, **options)

    def sync_widgets(self):
        """Settings → widgets (after a session restore)."""
        self.chains_form.load(self.state.sampler)
        self.display_form.load(self.state.sampler)
        self._load_controls()
        self.restart()

    def _on_density(self):
        """The density changed (often one stroke of many): never react on the spot, so the Density
        tab redraws first. Visible: follow once, DENSITY_DELAY_MS after the last change; hidden: when
        shown."""
        self._density_stale = True
        if self.isVisible():
            self._density_timer.start()

    def follow_density(self):
        """Redraw the true density and marginal; new chains if they ran on another density."""
        self._density_timer.stop()
        self._density_stale = False
        s = self.state
        img = None
        if self._heat_shown is not None and self._heat_shown[1] == tuple(s.bounds):
            old, _, old_img = self._heat_shown
            img = old_img if old is s.density else \
                grid.updated_image(old, old_img, s.density, s.bounds, HEAT_N)        # one stroke: incremental
        if img is None:
            img = grid.density_image(s.density, s.bounds, HEAT_N)
        self._heat_shown = (s.density, tuple(s.bounds), img)
        for c in self.controls:
            c.set_classes(list(s.density.classes))       # the panels' class choice (guidance)
        xs = np.linspace(s.bounds[0], s.bounds[1], 200)
        truth = grid.marginal_x(s.density, xs)
        for p in self.panels:
            common.set_heat(p["heat"], img, s.bounds)
            common.square_plot(p["plot"], s.bounds)
            p["truth"].setData(xs, truth)
            # fixed axes: no re-ticking every frame, and histograms compare at one scale
            p["hist_plot"].setRange(xRange=(s.bounds[0], s.bounds[1]), yRange=(0, 1.6 * float(truth.max())),
                                    padding=0)
            p["hist_plot"].disableAutoRange()
        if self._density_used is not s.density:
            self._ref = None
            self.restart()

    def _uses_model(self) -> bool:
        ss = self.state.sampler
        return any(p["source"] == "model" for p in ss.panels[:ss.n_panels])

    def _on_model(self):
        if self._uses_model() and self._model_step_used != self.state.model_step:
            if not self.isVisible():
                self._stale = True            # restart when shown (training sends weights often)
            elif self.worker is None or (self.frame == 0 and not self.playing):
                self.restart()
            else:
                self.note.setText(self._notes() + "<br><i>Newer weights available: press New chains.</i>")

    def showEvent(self, ev):
        super().showEvent(ev)
        if self._density_stale:
            self.follow_density()
        if self._stale and not self.playing and self.frame == 0:
            self.restart()

    def stop_worker(self):
        w = self.worker
        if w is None:
            return
        self.worker = None
        common.retire_worker(w, (w.framesReady, w.chainFailed, w.failed))

    def _bad_model(self, panels):
        """Autoguidance's weaker model: the History snapshot the first 'autoguidance' panel names (None when
        no panel asks for one or there is no such snapshot; the panel then says so)."""
        auto = [p for p in panels if p.get("guide") == "auto"]
        if not auto:
            return None
        s = self.state
        try:
            _, net = s.snapshot_network(min(int(auto[0].get("bad_snapshot", 0)), len(s.history) - 1))
        except (LookupError, IndexError, ValueError):
            return None
        return chains.snapshot_model(net, s.history_settings, s.history_density or s.density)

    def restart(self, *_):
        """New chains from the shared initial particles (the model is frozen as of now)."""
        self.stop_worker()
        self._stale = False
        s, ss = self.state, self.state.sampler
        trained, exact, _ = score_models(s)
        try:
            setup = chains.set_up_chains(ss.panels[:ss.n_panels], trained, exact, ss.n_particles, ss.init,
                                         s.bounds, ss.seed, s.density, self._reference(),
                                         bad=self._bad_model(ss.panels[:ss.n_panels]), targets=self._ref[2])
        except ValueError as e:
            self.note.setText(f"<span style='color:#c33'>{e}</span>")
            return
        specs = setup.specs
        self._model_step_used = s.model_step if trained is not None else None
        self._density_used = s.density
        self.active = list(range(len(specs)))
        self._layout_panels()
        self.specs = specs
        self.flowing = setup.flowing
        # the metrics run in the chain stepper's thread (no Qt in them)
        self.worker = ChainWorker(specs, setup.starts, ss.frames, ss.seed, metric_fns=setup.metric_fns,
                                  metric_every=max(1, ss.frames // METRIC_POINTS), parent=self)
        self.target_names = setup.target_names
        self.worker.framesReady.connect(self._on_frames)
        self.worker.chainFailed.connect(self._on_chain_failed)
        self.worker.failed.connect(self._on_failed)
        self.worker.start()
        for p, spec in zip(self.panels, specs):
            p["title"], p["metric"], p["error"] = spec.title, {}, ""
        self.note.setText(self._notes())
        self.scrub.blockSignals(True)
        self.scrub.setRange(0, ss.frames)
        self.scrub.setValue(0)
        self.scrub.blockSignals(False)
        self.frame = 0
        self._pending = None
        self.show_frame(0)

    def _layout_panels(self):
        """Show the active panels side by side (the others leave the layout)."""
        lay = self.plots.ci
        shown = [i for i in range(MAX_PANELS) if self.panels[i]["plot"] in lay.items]
        for i, p in enumerate(self.panels):
            p["label"].setVisible(i in self.active)
        self._link_active()
        if shown == self.active:
            return
        for i in shown:
            lay.removeItem(self.panels[i]["plot"])
            lay.removeItem(self.panels[i]["hist_plot"])
        for col, i in enumerate(self.active):
            lay.addItem(self.panels[i]["plot"], row=0, col=col)
            lay.addItem(self.panels[i]["hist_plot"], row=1, col=col)
        for col in range(MAX_PANELS):
            lay.layout.setColumnStretchFactor(col, 1 if col < len(self.active) else 0)

    def _link_active(self):
        """Zooming or panning one shown panel moves them all. The panels' point plots are aspect-locked,
        so they are not linked by pyqtgraph (a linked, aspect-locked view box of another size — a hidden
        tab, a panel out of the layout — widens its range to keep its aspect, the link widens the next,
        and the ranges run away: ±14.5 → −648…398); `_follow_range` copies a shown panel's range to the
        other active ones instead, once, without feedback. The histograms (not aspect-locked) are x-linked."""
        if self._linked == self.active:
            return
        self._linked = list(self.active)
        for p in self.panels:
            p["hist_plot"].setXLink(None)
        for i in self.active[1:]:
            self.panels[i]["hist_plot"].setXLink(self.panels[self.active[0]]["hist_plot"])   # (y: 0 … 1.6·max)

    def _follow_range(self, source: int):
        """Panel `source`'s view range changed: give the other active panels the same range."""
        if self._syncing or source not in self.active or not self.isVisible():
            return
        (x0, x1), (y0, y1) = self.panels[source]["plot"].vb.viewRange()
        self._syncing = True
        try:
            for i in self.active:
                if i != source:
                    self.panels[i]["plot"].vb.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)
        finally:
            self._syncing = False

    def _notes(self) -> str:
        s = self.state
        if not self._uses_model():
            return "Every panel uses the exact score."
        if s.model is None:
            return "No trained model yet: every panel uses the exact score (train one on the Training tab)."
        return (f"One {s.model_settings.objective.upper()} model (training step {s.model_step}) drives every "
                "panel set to 'trained model'.")

    def shutdown(self):
        """Stop playback, the density follow-up timer and the chains' worker (the window is closing)."""
        self.timer.stop()
        self._density_timer.stop()
        self.stop_worker()

    def closeEvent(self, ev):
        self.shutdown()
        super().closeEvent(ev)

    # ------------------------------------------------------------------ playback
    @property
    def n_frames(self) -> int:
        return self.worker.n_frames if self.worker else 0

    def available(self) -> int:
        return self.worker.available if self.worker else 0

    def toggle_play(self):
        self.set_playing(not self.playing)

    def set_playing(self, on: bool):
        if on and self.frame >= self.n_frames:
            self.frame = 0
        self.playing = on and self.worker is not None
        self.play_btn.setText("Pause" if self.playing else "Play")
        if self.playing:
            self.worker.request(self.frame + 4 * self.speed.value())
            self.timer.start()
        else:
            self.timer.stop()
        self.playingChanged.emit(self.playing)
        self.state.status.emit("Sampling…" if self.playing else f"Sampler paused at frame {self.frame}")

    def step(self, delta: int = 1):
        """Move `delta` frames (computing them if needed; the view follows when they are ready)."""
        if self.worker is None:
            return
        target = max(0, min(self.frame + delta, self.n_frames))
        self.worker.request(target)
        self._pending = target
        if target < self.available():
            self.show_frame(target)

    def run_to_end(self):
        if self.worker is None:
            return
        self.worker.request(self.n_frames)
        self._pending = self.n_frames

    def wait_for(self, frame: int, timeout_s: float = 60.0) -> bool:
        """Block (processing events) until `frame` is computed — for export, demo and tests."""
        if self.worker is None:
            return False
        self.worker.request(frame)
        t0 = time.perf_counter()
        app = QtWidgets.QApplication.instance()
        while self.available() <= min(frame, self.n_frames) and time.perf_counter() - t0 < timeout_s:
            if not self.worker.isRunning():
                break
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.002)
        return self.available() > min(frame, self.n_frames)

    def _tick(self):
        if not self.playing or self.worker is None:
            return
        want = min(self.frame + self.speed.value(), self.n_frames)
        self.worker.request(want + 4 * self.speed.value())      # compute ahead of the display
        show = min(want, self.available() - 1)
        if show != self.frame:
            self.show_frame(show)
        if self.frame >= self.n_frames:
            self.set_playing(False)

    @QtCore.Slot(int)
    def _on_frames(self, available: int):
        if not common.from_current_worker(self):
            return
        pending = self._pending
        if pending is not None and not self.playing:
            show = min(pending, available - 1)
            if show != self.frame:
                self.show_frame(show)
            if show >= pending:
                self._pending = None
        self.scrub.setToolTip(f"Scrub through the recorded frames ({available - 1}/{self.n_frames} computed)")

    def _on_scrub(self, value: int):
        if self.worker is None or value == self.frame:
            return
        if value >= self.available():
            self.worker.request(value)
            self._pending = value
            value = self.available() - 1
        self.show_frame(value)

    @QtCore.Slot(int, str)
    def _on_chain_failed(self, i: int, msg: str):
        if not common.from_current_worker(self) or i >= len(self.worker.chains):
            return
        p = self.panels[self.active[i]]
        p["error"] = msg
        self.state.status.emit(msg)
        self.show_frame(self.frame)

    @QtCore.Slot(str)
    def _on_failed(self, msg: str):
        if not common.from_current_worker(self):
            return
        self.set_playing(False)
        self.state.status.emit(msg)
        self.note.setText(f"<span style='color:#c33'>{msg}</span>")

    # ------------------------------------------------------------------ drawing
    def frame_positions(self, i: int, f: int | None = None) -> np.ndarray:
        """Particles of worker chain i (panel i) at frame f (default: the one shown)."""
        c = self.worker.chains[i]
        f = self.frame if f is None else f
        return c.frames[min(f, len(c.frames) - 1)]

    def _paths(self, frames: list, f: int, flow: bool) -> tuple[np.ndarray, np.ndarray]:
        """x, y of the trails (last TRAIL_FRAMES frames) or flow lines (frames 0 … f), NaN-separated."""
        n = FLOW_PARTICLES if flow else self.trails.value()
        if not n:
            return np.zeros(0), np.zeros(0)
        tr = np.stack([c[:n] for c in frames[0 if flow else max(0, f - TRAIL_FRAMES): f + 1]], 1)  # (n, F, 2)
        tr = np.concatenate([tr, np.full((len(tr), 1, 2), np.nan)], 1).reshape(-1, 2)
        return tr[:, 0], tr[:, 1]

    def show_frame(self, f: int):
        if self.worker is None:
            return
        f = max(0, min(int(f), self.available() - 1))
        self.frame = f
        bounds = self.state.bounds
        for i, chain in enumerate(self.worker.chains):
            p = self.panels[self.active[i]]
            if f >= len(chain.frames):
                continue
            xy = chain.frames[f]
            p["points"].setData(xy)
            p["points"].tag = f
            p["trail"].setData(*self._paths(chain.frames, f, self.flow.isChecked() and self.flowing[i]))
            fin = xy[np.isfinite(xy).all(1)]
            counts, edges = np.histogram(fin[:, 0], bins=60, range=(bounds[0], bounds[1]))
            dens = counts / max(len(fin), 1) / (edges[1] - edges[0])
            p["hist"].setData(edges, dens)
            if not chain.error:
                p["metric"] = self.worker.metric_at(i, f)
            diverged = chain.error and chain.diverged_at_frame is not None and f >= chain.diverged_at_frame
            label = chain.labels[f] if f < len(chain.labels) else ""
            err = "<br><span style='color:#f55'>diverged: stopped</span>" if diverged else ""
            p["plot"].setTitle(f"<b>{_fitted_title(p['title'], p['plot'])}</b><br>"
                               f"<span style='font-size:8pt'>{label}</span>{err}", size="9pt")
            spec = chain.spec
            lines = [f"<b>NFE {chain.nfes[min(f, len(chain.nfes) - 1)]}/{spec.sampler.nfe}</b> · "
                     + _metrics_text(p["metric"], self.target_names[i])]
            if spec.range_note:
                lines.append(f"<span style='color:#fa4'>Outside its training: {spec.range_note}.</span>")
            if spec.note:
                lines.append(f"<span style='color:#aaa'>{spec.note}</span>")
            if diverged:
                lines.append(f"<span style='color:#f55'>{chain.error}</span>")
            p["label"].setText("<br>".join(lines))
        self.scrub.blockSignals(True)
        self.scrub.setValue(f)
        self.scrub.blockSignals(False)
        self.frame_label.setText(f"frame {f}/{self.n_frames}")

    def _reference(self):
        """The metrics' true samples of the density shown (kept while it stays)."""
        d = self.state.density
        if self._ref is None or self._ref[0] is not d:
            self._ref = (d, chains.reference_samples(d), {})      # {}: its class and tilted targets' references
        return self._ref[1]

    def metrics_now(self) -> list[dict]:
        """Per active panel, the sample metrics shown now: {"energy_distance", "mode_weight_tv",
        "mode_weights"} as numbers, against the panel's target (`target_names`: p(x), or p(x|c) for a panel
        on class c), and "energy_distance_tilted" (the tilted p_w(x|c)) under CFG with w ≠ 0 ({} before the
        first are computed, or with no finite particles)."""
        return [dict(self.panels[i]["metric"]) for i in self.active]

    def panel_numbers(self, i: int) -> dict:
        """The numbers panel i shows at the current frame: network evaluations spent ("nfe") of the
        sampler's total ("nfe_total"), whether the chain has diverged by now, and its metrics_now()."""
        if self.worker is None:
            return {}
        chain = self.worker.chains[i]
        f = min(self.frame, len(chain.nfes) - 1)
        diverged = bool(chain.error) and chain.diverged_at_frame is not None and f >= chain.diverged_at_frame
        return {"nfe": chain.nfes[f], "nfe_total": chain.spec.sampler.nfe, "diverged": diverged,
                **self.panels[self.active[i]]["metric"]}

    def panel_text(self, i: int) -> str:
        return self.panels[i]["label"].text()

    # ------------------------------------------------------------------ export
    def export_target(self):
        return self.canvas

    def export_gif(self, path: str, max_frames: int = 60, duration_ms: int = 80):
        """Render recorded frames of all panels to an animated GIF (computes the chains first)."""
        was = self.playing
        self.set_playing(False)
        self.wait_for(self.n_frames)
        n = self.available()
        idx = sorted(set(np.linspace(0, n - 1, min(max_frames, n)).round().astype(int).tolist()))
        images = []
        keep = self.frame
        for f in idx:
            self.show_frame(f)
            images.append(common.qimage_to_pil(self.canvas.grab().toImage()).convert("P", palette=1, colors=128))
        self.show_frame(keep)
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
        if was:
            self.set_playing(True)
        return len(images)


def _metrics_text(m: dict, targets: dict) -> str:
    """The panel's figures, each with the target it is against (trainers.studies.chains.target_metrics)."""
    if not m:
        return ""
    text = (f"energy dist {m['energy_distance']:.3g} vs {targets['energy_distance']} · "
            f"mode-weight TV {m['mode_weight_tv']:.2f}")
    if "energy_distance_tilted" in m:
        text += (f"<br>energy dist {m['energy_distance_tilted']:.3g} vs {targets['energy_distance_tilted']} "
                 "(CFG does not sample it)")
    elif len(m["mode_weights"]) <= 8:
        text += "<br>weights " + " ".join(f"{v:.2f}" for v in m["mode_weights"])
    return text


def _fitted_title(title: str, plot: pg.PlotItem) -> str:
    """`title` ("sampler — score") on one line where it fits the panel's width in bold 9 pt, else on
    two lines at the dash (four panels at 1280 px leave ~220 px each; a title never widens a panel)."""
    from PySide6 import QtGui

    font = QtGui.QFont(plot.titleLabel.item.font())
    font.setPointSizeF(9)
    font.setBold(True)
    if QtGui.QFontMetrics(font).horizontalAdvance(title) + 12 <= plot.width():
        return title
    return title.replace(" — ", "<br>")


class PointsItemWithColor(common.PointsItem):
    def __init__(self, color):
        super().__init__(color=color[:3], size=2, alpha=130)
