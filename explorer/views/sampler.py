"""Sampler tab: plain Langevin, annealed Langevin and DDPM side by side from the same particles.

Chains are computed in `ChainWorker` (a QThread) and recorded; the GUI plays, steps or scrubs
through the recording. Top row: particles over the true density; bottom row: histogram of the
first coordinate vs the true marginal; each panel's title carries live metrics (energy distance to
true samples, total-variation error of the mode weights). A diverging chain stops with a message
in its panel; the other chains go on.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import pyqtgraph as pg
import torch
from PySide6 import QtCore, QtWidgets

from trainers import grid as G
from trainers import metrics as M
from trainers import samplers as S

from .. import core
from ..sampler_worker import ChainWorker
from . import common as C

COLORS = [(255, 200, 40, 170), (80, 220, 255, 170), (255, 90, 200, 170)]   # (r, g, b, histogram alpha)
TRAIL_PEN = pg.mkPen(255, 255, 255, 150, width=1.0)
TRAIL_FRAMES = 30        # a trail shows the last this-many frames
N_METRIC = 500           # particles used for the live metrics (a fixed subset)
N_REF = 1000             # true samples the metrics compare with
METRIC_POINTS = 30       # metrics are computed at about this many frames of the timeline

TIP = {
    "source": "model: the trained network (frozen when the chains start);\n"
              "exact: the true score of the drawn density (of p_σ for annealed Langevin, of q(x_t) for DDPM).\n"
              "Compare both to tell a bad score from a bad sampler.",
    "n": "Number of particles (all three chains start from the same ones).",
    "init": "Initial particles: N(0, I) (DDPM's x_T) or uniform over the view (NCSN's choice).",
    "langevin_eps": "Langevin step ε, convention x ← x + ε ∇log p(x) + √(2ε) z  (NCSN's α = 2ε).",
    "langevin_steps": "Number of Langevin steps.",
    "annealed_eps": "Annealed Langevin ε: at level i the step is αᵢ = ε σᵢ²/σ_L² and the update is "
                    "x ← x + (αᵢ/2) s_θ(x, σᵢ) + √αᵢ z  (Song & Ermon 2019, Alg. 1; paper ε = 2e-5 for images).",
    "steps_per_level": "T: Langevin steps per noise level.",
    "n_levels": "L: number of geometric noise levels (used with the exact score or a non-NCSN model; "
                "an NCSN model uses the σ's it was trained with).",
    "sigma_max": "σ₁, the largest level for the exact score.",
    "sigma_min": "σ_L, the smallest level for the exact score.",
    "final_denoise": "NCSNv2's optional last step x ← x + σ_L² s(x, σ_L) (off in the original NCSN).",
    "ddpm_variance": "Reverse-step variance σ_t²: β_t or β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t) β_t; "
                     "x_{t−1} = (x_t − β_t/√(1−ᾱ_t) ε_θ)/√α_t + σ_t z, z = 0 at the last step.",
    "frames": "Timeline resolution: each chain is recorded at this many evenly spaced instants of its own length.",
    "speed": "Frames advanced per animation tick (~60 ticks/s at most).",
    "trails": "Draw the recent path (last 30 frames) of this many particles.",
}


class SamplerView(QtWidgets.QWidget):
    title = "Samplers"
    playingChanged = QtCore.Signal(bool)

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.worker: ChainWorker | None = None
        self.frame = 0
        self.playing = False
        self._ref = None                 # (density, reference samples)
        self._model_step_used = None
        ss = state.sampler

        lay = QtWidgets.QHBoxLayout(self)
        panel, side = C.side_panel()
        lay.addWidget(panel)

        box, form = C.form_group("Particles and score")
        self.source = C.combo([("model", "trained model"), ("exact", "exact score")], ss.source, TIP["source"])
        self.n = C.spin(10, 50000, ss.n_particles, 500, tooltip=TIP["n"])
        self.init = C.combo([("gaussian", "N(0, I)"), ("uniform", "uniform over view")], "gaussian", TIP["init"])
        form.addRow("Score", self.source)
        form.addRow("Particles", self.n)
        form.addRow("Start from", self.init)
        row = QtWidgets.QHBoxLayout()
        self.chain_boxes = {}
        for name, label in zip(core.SAMPLER_NAMES, ("Langevin", "Annealed", "DDPM")):
            cb = QtWidgets.QCheckBox(label)
            cb.setChecked(name in ss.chains)
            cb.setToolTip("Run and show this sampler. Fewer chains animate faster (each costs one "
                          "network evaluation per step).")
            row.addWidget(cb)
            self.chain_boxes[name] = cb
        form.addRow(row)
        side.addWidget(box)

        box, form = C.form_group("Langevin  (x + ε s + √(2ε) z)")
        self.langevin_eps = C.spin(1e-5, 1.0, ss.langevin_eps, 1e-3, 5, TIP["langevin_eps"], log=True)
        self.langevin_steps = C.spin(1, 10000, ss.langevin_steps, 50, tooltip=TIP["langevin_steps"])
        form.addRow("ε", self.langevin_eps)
        form.addRow("Steps", self.langevin_steps)
        side.addWidget(box)

        box, form = C.form_group("Annealed  (x + αᵢ/2 s + √αᵢ z)")
        self.annealed_eps = C.spin(1e-7, 1.0, ss.annealed_eps, 1e-4, 7, TIP["annealed_eps"], log=True)
        self.steps_per_level = C.spin(1, 1000, ss.steps_per_level, 10, tooltip=TIP["steps_per_level"])
        self.levels = C.spin(1, 50, ss.n_levels, tooltip=TIP["n_levels"])
        self.sigma_max = C.spin(0.01, 50.0, ss.sigma_max, 0.5, 3, TIP["sigma_max"])
        self.sigma_min = C.spin(0.001, 5.0, ss.sigma_min, 0.01, 3, TIP["sigma_min"])
        self.final_denoise = QtWidgets.QCheckBox("Final denoising step")
        self.final_denoise.setChecked(ss.final_denoise)
        self.final_denoise.setToolTip(TIP["final_denoise"])
        for label, w in (("ε", self.annealed_eps), ("T per level", self.steps_per_level), ("Levels L", self.levels),
                         ("σ₁", self.sigma_max), ("σ_L", self.sigma_min)):
            form.addRow(label, w)
        form.addRow(self.final_denoise)
        side.addWidget(box)

        box, form = C.form_group("DDPM  (μ_θ + σ_t z)")
        self.ddpm_variance = C.combo([("beta", "σ_t² = β_t"), ("beta_tilde", "σ_t² = β̃_t")], ss.ddpm_variance,
                                     TIP["ddpm_variance"])
        form.addRow("Variance", self.ddpm_variance)
        side.addWidget(box)

        box, form = C.form_group("Playback")
        self.frames = C.spin(10, 1000, ss.frames, 10, tooltip=TIP["frames"])
        self.speed = C.spin(1, 20, 1, tooltip=TIP["speed"])
        self.trails = C.spin(0, 50, ss.trails, tooltip=TIP["trails"])
        form.addRow("Frames", self.frames)
        form.addRow("Speed", self.speed)
        form.addRow("Trails", self.trails)
        side.addWidget(box)
        self.note = QtWidgets.QLabel()
        self.note.setWordWrap(True)
        side.addWidget(self.note)
        side.addStretch(1)

        right = QtWidgets.QVBoxLayout()
        lay.addLayout(right, 1)
        self.plots = pg.GraphicsLayoutWidget()
        right.addWidget(self.plots, 1)
        self.panels = []
        for i in range(3):
            p = self.plots.addPlot(row=0, col=i)
            p.setMenuEnabled(False)
            heat = C.heat_image()
            heat.setOpacity(0.55)
            p.addItem(heat)
            pts = PointsItemWithColor(COLORS[i])
            p.addItem(pts)
            trail = pg.PlotDataItem(pen=TRAIL_PEN, connect="finite")
            trail.setZValue(20)
            p.addItem(trail)
            h = self.plots.addPlot(row=1, col=i)
            h.setMenuEnabled(False)
            h.setMaximumHeight(170)
            h.setLabel("bottom", "x₁")
            hist = pg.PlotDataItem(stepMode="center", fillLevel=0, pen=pg.mkPen(COLORS[i][:3]),
                                   brush=pg.mkBrush(*COLORS[i][:3], 80))
            truth = pg.PlotDataItem(pen=pg.mkPen(230, 230, 230, width=1.5))
            h.addItem(hist)
            h.addItem(truth)
            self.panels.append({"plot": p, "heat": heat, "points": pts, "trail": trail, "hist_plot": h,
                                "hist": hist, "truth": truth, "metric": "", "title": ""})

        controls = QtWidgets.QHBoxLayout()
        right.addLayout(controls)
        self.restart_btn = QtWidgets.QPushButton("New chains")
        self.restart_btn.setToolTip("Draw new initial particles and restart all three chains "
                                    "(uses the latest model weights).")
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
        self.step_btn.clicked.connect(self.step)
        self.end_btn.clicked.connect(self.run_to_end)
        self.scrub.valueChanged.connect(self._on_scrub)
        for w in (self.source, self.init, self.ddpm_variance):
            w.currentIndexChanged.connect(self._settings_changed)
        for w in (self.n, self.langevin_eps, self.langevin_steps, self.annealed_eps, self.steps_per_level,
                  self.levels, self.sigma_max, self.sigma_min, self.frames):
            w.valueChanged.connect(self._settings_changed)
        self.final_denoise.toggled.connect(self._settings_changed)
        for cb in self.chain_boxes.values():
            cb.toggled.connect(self._settings_changed)
        self.trails.valueChanged.connect(lambda *_: self.show_frame(self.frame))
        state.densityChanged.connect(self._on_density)
        state.modelChanged.connect(self._on_model)
        self._on_density()

    # ------------------------------------------------------------------ settings / lifecycle
    def _settings_changed(self, *_):
        chains = [n for n, cb in self.chain_boxes.items() if cb.isChecked()]
        if not chains:                      # keep at least one sampler
            sender = self.sender()
            if isinstance(sender, QtWidgets.QCheckBox):
                sender.blockSignals(True)
                sender.setChecked(True)
                sender.blockSignals(False)
            chains = [n for n, cb in self.chain_boxes.items() if cb.isChecked()]
        self.state.update_sampler(
            chains=chains,
            source=self.source.currentData(), n_particles=self.n.value(), langevin_eps=self.langevin_eps.value(),
            langevin_steps=self.langevin_steps.value(), annealed_eps=self.annealed_eps.value(),
            steps_per_level=self.steps_per_level.value(), n_levels=self.levels.value(),
            sigma_max=self.sigma_max.value(), sigma_min=self.sigma_min.value(),
            final_denoise=self.final_denoise.isChecked(), ddpm_variance=self.ddpm_variance.currentData(),
            frames=self.frames.value(), trails=self.trails.value())
        self.restart()

    def sync_widgets(self):
        """Settings → widgets (after a session restore)."""
        ss = self.state.sampler
        ws = [self.source, self.n, self.langevin_eps, self.langevin_steps, self.annealed_eps, self.steps_per_level,
              self.levels, self.sigma_max, self.sigma_min, self.final_denoise, self.ddpm_variance, self.frames,
              self.trails]
        ws += list(self.chain_boxes.values())
        for w in ws:
            w.blockSignals(True)
        for name, cb in self.chain_boxes.items():
            cb.setChecked(name in ss.chains)
        self.source.setCurrentIndex(self.source.findData(ss.source))
        self.ddpm_variance.setCurrentIndex(self.ddpm_variance.findData(ss.ddpm_variance))
        for w, v in ((self.n, ss.n_particles), (self.langevin_eps, ss.langevin_eps),
                     (self.langevin_steps, ss.langevin_steps), (self.annealed_eps, ss.annealed_eps),
                     (self.steps_per_level, ss.steps_per_level), (self.levels, ss.n_levels),
                     (self.sigma_max, ss.sigma_max), (self.sigma_min, ss.sigma_min), (self.frames, ss.frames),
                     (self.trails, ss.trails)):
            w.setValue(v)
        self.final_denoise.setChecked(ss.final_denoise)
        for w in ws:
            w.blockSignals(False)
        self.restart()

    def _on_density(self):
        s = self.state
        img = G.density_image(s.density, s.bounds, 120)
        xs = np.linspace(s.bounds[0], s.bounds[1], 200)
        truth = G.marginal_x(s.density, xs)
        for p in self.panels:
            C.set_heat(p["heat"], img, s.bounds)
            C.square_plot(p["plot"], s.bounds)
            p["truth"].setData(xs, truth)
            # fixed axes: no re-ticking every frame, and histograms compare at one scale
            p["hist_plot"].setRange(xRange=(s.bounds[0], s.bounds[1]), yRange=(0, 1.6 * float(truth.max())),
                                    padding=0)
            p["hist_plot"].disableAutoRange()
        self._ref = None
        self.restart()

    def _on_model(self):
        if self.state.sampler.source == "model" and self._model_step_used != self.state.model_step:
            if not self.isVisible():
                self._stale = True            # restart when shown (training sends weights often)
            elif self.worker is None or (self.frame == 0 and not self.playing):
                self.restart()
            else:
                self.note.setText(self._notes() + "<br><i>Newer weights available: press New chains.</i>")

    def showEvent(self, ev):
        super().showEvent(ev)
        if getattr(self, "_stale", False) and not self.playing and self.frame == 0:
            self.restart()

    def stop_worker(self):
        w = self.worker
        if w is None:
            return
        C.retire_worker(w, (w.framesReady, w.chainFailed, w.failed))
        self.worker = None

    def restart(self, *_):
        """New initial particles; all three chains restart (the model is frozen as of now)."""
        self.stop_worker()
        self._stale = False
        s, ss = self.state, self.state.sampler
        model = copy.deepcopy(s.model) if s.model is not None else None
        try:
            specs = core.make_samplers(ss, model, s.model_settings, s.density, fallback=s.train)
        except ValueError as e:
            self.note.setText(f"<span style='color:#c33'>{e}</span>")
            return
        gen = torch.Generator().manual_seed(ss.seed)
        x0 = S.initial_particles(ss.n_particles, self.init.currentData(), s.bounds, gen)
        self._model_step_used = s.model_step if model is not None else None
        # chain j of the worker is shown in panel self.active[j]
        self.active = [i for i, n in enumerate(core.SAMPLER_NAMES) if n in ss.chains] or [0, 1, 2]
        self._layout_panels()
        self.specs = specs
        specs = [specs[i] for i in self.active]
        ref, density = self._reference(), s.density
        idx = torch.randperm(ss.n_particles, generator=gen)[:N_METRIC]
        ref_self = M.mean_pairwise_distance(ref)

        def metric_fn(xy: np.ndarray) -> str:      # runs in the sampler thread; no Qt here
            return _metrics_text(xy, idx, ref, ref_self, density)

        self.worker = ChainWorker(specs, x0, ss.frames, ss.seed, metric_fn=metric_fn,
                                  metric_every=max(1, ss.frames // METRIC_POINTS), parent=self)
        self.worker.framesReady.connect(self._on_frames)
        self.worker.chainFailed.connect(self._on_chain_failed)
        self.worker.failed.connect(self._on_failed)
        self.worker.start()
        for p, spec in zip(self.panels, self.specs):
            p["title"] = spec.title
            p["metric"] = ""
        self.note.setText(self._notes())
        self.scrub.blockSignals(True)
        self.scrub.setRange(0, ss.frames)
        self.scrub.setValue(0)
        self.scrub.blockSignals(False)
        self.frame = 0
        self.show_frame(0)

    def _layout_panels(self):
        """Show the active samplers' panels side by side (inactive ones leave the layout)."""
        lay = self.plots.ci
        shown = [i for i in range(3) if self.panels[i]["plot"] in lay.items]
        if shown == self.active:
            return
        for i in shown:
            lay.removeItem(self.panels[i]["plot"])
            lay.removeItem(self.panels[i]["hist_plot"])
        for col, i in enumerate(self.active):
            lay.addItem(self.panels[i]["plot"], row=0, col=col)
            lay.addItem(self.panels[i]["hist_plot"], row=1, col=col)

    def _notes(self) -> str:
        s = self.state
        lines = []
        if self.state.sampler.source == "model":
            lines.append(f"Model at training step {s.model_step}." if s.model is not None
                         else "No trained model yet: every chain uses the exact score.")
        specs = getattr(self, "specs", [])
        lines += [f"{specs[i].title.split(' —')[0]}: {specs[i].note}" for i in getattr(self, "active", [])
                  if i < len(specs) and specs[i].note]
        return "<br>".join(lines)

    def closeEvent(self, ev):
        self.timer.stop()
        self.stop_worker()
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
        pending = getattr(self, "_pending", None)
        if pending is not None and not self.playing:
            show = min(pending, available - 1)
            if show != self.frame:
                self.show_frame(show)
            if show >= pending:
                self._pending = None
        self.scrub.setToolTip(f"Scrub through the recorded frames ({available - 1}/{self.n_frames} computed)")

    def _on_scrub(self, value: int):
        if value == self.frame:
            return
        if value >= self.available():
            self.worker.request(value)
            self._pending = value
            value = self.available() - 1
        self.show_frame(value)

    @QtCore.Slot(int, str)
    def _on_chain_failed(self, i: int, msg: str):
        self.panels[self.active[i]]["metric"] = "<span style='color:#f55'>diverged — see status bar</span>"
        self.state.status.emit(msg)
        self.note.setText(self._notes() + f"<br><span style='color:#c33'>{msg}</span>")
        self.show_frame(self.frame)

    @QtCore.Slot(str)
    def _on_failed(self, msg: str):
        self.set_playing(False)
        self.state.status.emit(msg)
        self.note.setText(f"<span style='color:#c33'>{msg}</span>")

    # ------------------------------------------------------------------ drawing
    def frame_positions(self, i: int, f: int | None = None) -> np.ndarray:
        """Particles of worker chain i (the i-th *active* sampler) at frame f (default: shown)."""
        c = self.worker.chains[i]
        f = self.frame if f is None else f
        return c.frames[min(f, len(c.frames) - 1)]

    def show_frame(self, f: int):
        if self.worker is None:
            return
        f = max(0, min(int(f), self.available() - 1))
        self.frame = f
        bounds = self.state.bounds
        ntr = self.trails.value()
        for i, chain in enumerate(self.worker.chains):
            p = self.panels[self.active[i]]
            if f >= len(chain.frames):
                continue
            xy = chain.frames[f]
            p["points"].setData(xy)
            p["points"].tag = f
            if ntr:
                tr = np.stack([c[:ntr] for c in chain.frames[max(0, f - TRAIL_FRAMES): f + 1]], 1)  # (ntr, F, 2)
                tr = np.concatenate([tr, np.full((len(tr), 1, 2), np.nan)], 1).reshape(-1, 2)
                p["trail"].setData(tr[:, 0], tr[:, 1])
            else:
                p["trail"].setData([], [])
            fin = xy[np.isfinite(xy).all(1)]
            counts, edges = np.histogram(fin[:, 0], bins=60, range=(bounds[0], bounds[1]))
            dens = counts / max(len(fin), 1) / (edges[1] - edges[0])
            p["hist"].setData(edges, dens)
            if not chain.error:
                p["metric"] = self.worker.metric_at(i, f)
            label = chain.labels[f] if f < len(chain.labels) else ""
            err = "<br><span style='color:#f55'>diverged: stopped</span>" if chain.error and \
                chain.diverged_at_frame is not None and f >= chain.diverged_at_frame else ""
            p["plot"].setTitle(f"<b>{p['title']}</b><br><span style='font-size:8pt'>{label}</span>{err}",
                               size="9pt")
            p["hist_plot"].setTitle(f"<span style='font-size:8pt'>{p['metric']}</span>")
        self.scrub.blockSignals(True)
        self.scrub.setValue(f)
        self.scrub.blockSignals(False)
        self.frame_label.setText(f"frame {f}/{self.n_frames}")

    def _reference(self):
        d = self.state.density
        if self._ref is None or self._ref[0] is not d:
            self._ref = (d, d.sample(N_REF, generator=torch.Generator().manual_seed(7)))
        return self._ref[1]

    def metrics_now(self) -> list[str]:
        return [p["metric"] for p in self.panels]

    # ------------------------------------------------------------------ export
    def export_target(self):
        return self.plots

    def export_gif(self, path: str, max_frames: int = 60, duration_ms: int = 80):
        """Render recorded frames of all three panels to an animated GIF (computes the chains first)."""
        was = self.playing
        self.set_playing(False)
        self.wait_for(self.n_frames)
        n = self.available()
        idx = sorted(set(np.linspace(0, n - 1, min(max_frames, n)).round().astype(int).tolist()))
        images = []
        keep = self.frame
        for f in idx:
            self.show_frame(f)
            images.append(C.qimage_to_pil(self.plots.grab().toImage()).convert("P", palette=1, colors=128))
        self.show_frame(keep)
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
        if was:
            self.set_playing(True)
        return len(images)


def _metrics_text(xy: np.ndarray, idx: torch.Tensor, ref: torch.Tensor, ref_self: float, density) -> str:
    x = torch.from_numpy(xy)
    x = x[idx[idx < len(x)]]
    x = x[torch.isfinite(x).all(1)]
    if len(x) == 0:
        return "no finite particles"
    ed = M.energy_distance(x, ref, ref_self)
    w = M.mode_weights(x, density)
    tv = M.mode_weight_error(x, density)
    text = f"energy dist {ed:.3g} · mode-weight TV {tv:.2f}"
    if density.n_components <= 8:
        text += "<br>weights " + " ".join(f"{float(v):.2f}" for v in w)
    return text


class PointsItemWithColor(C.PointsItem):
    def __init__(self, color):
        super().__init__(color=color[:3], size=2, alpha=130)
