"""Explorer speed, offscreen: Samplers-tab frame rate with 3 and 4 panels on one trained model, the
full quality-vs-steps lab, and the score-field redraw time.

    python benchmarks/bench_explorer.py [--particles 1000 10000] [--frames 120] [--skip-lab]

Sampler animation: every panel runs on the same width-128 depth-3 NCSN MLP (untrained: speed does not
depend on the weights) and advances exactly one step per frame (annealed Langevin, DDPM, DDIM η=0,
PF-ODE Euler; 3 panels: the first three). The worker steps the chains with
trainers.samplers.advance_together, so the panels share one batched forward pass per frame, while the
GUI thread draws the particle panels, trails and histograms. Reported: frames shown per second for the
whole loop ("step + redraw"; the two overlap on two cores; the 16 ms timer caps it at ~60 fps), and the
per-frame cost of computing only and of drawing only.

Lab: trainers.lab.run_lab with all 6 samplers × NFE (5, 10, 20, 50, 100, 200, 1000) × (model, exact
score), 2000 particles, on the same network.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import explorer  # noqa: E402,F401  (applies the PySide6 work-around before Qt is used)
import pyqtgraph as pg  # noqa: E402
import torch  # noqa: E402
from PySide6 import QtCore  # noqa: E402

from explorer.app import MainWindow  # noqa: E402
from explorer.state import AppState, build_network, panel  # noqa: E402
from machine import describe  # noqa: E402  (benchmarks/machine.py)


def _process(app, ms: int = 5):
    app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, ms)


def make_state(n_frames: int, n_panels: int = 4) -> AppState:
    state = AppState()
    tr = state.train                                   # GUI defaults: NCSN, σ ∈ [0.05, 6], L = 10
    ss = state.sampler
    ss.frames, ss.n_panels = n_frames, n_panels
    # one step of every chain per frame
    ss.panels = [panel("annealed", steps=max(1, n_frames // tr.n_levels), n_levels=tr.n_levels),
                 panel("ddpm", steps=n_frames, n_timesteps=n_frames),
                 panel("ddim", steps=n_frames, n_timesteps=n_frames),
                 panel("pf-ode", steps=n_frames - 1, solver="euler")]
    model = build_network(tr)
    model.eval()
    state.set_model(model, tr, step=1)
    return state


def make_window(state: AppState) -> MainWindow:
    win = MainWindow(state)
    win.resize(1400, 860)
    win.show()
    return win


def bench_sampler(app, n: int, n_frames: int, n_panels: int) -> dict:
    win = make_window(make_state(n_frames, n_panels))
    win.tabs.setCurrentWidget(win.views["sampler"])
    sp = win.views["sampler"]
    sp.n.setValue(n)                  # restarts the chains with n particles
    _process(app, 50)
    titles = [sp.panels[i]["title"] for i in sp.active]
    steps = [c.spec.sampler.n_steps for c in sp.worker.chains]

    # 1) full loop: the app's own play path (16 ms timer → show_frame → Qt repaints what changed);
    #    a frame counts when panel 1's particle item is painted with it.
    points = sp.panels[sp.active[0]]["points"]
    points.painted, points.record_paints = [], True
    loop = QtCore.QEventLoop()
    sp.playingChanged.connect(lambda on: None if on else loop.quit())
    QtCore.QTimer.singleShot(120_000, loop.quit)
    t0 = time.perf_counter()
    sp.set_playing(True)
    loop.exec()
    app.processEvents()
    elapsed = time.perf_counter() - t0
    points.record_paints = False
    painted = points.painted
    fps = len(painted) / elapsed

    # 2) draw only: replay the recorded frames, each fully repainted
    t0 = time.perf_counter()
    for f in range(n_frames + 1):
        sp.show_frame(f)
        sp.canvas.repaint()
    draw_ms = (time.perf_counter() - t0) / (n_frames + 1) * 1e3

    # 3) compute only: a fresh recording with nothing drawn
    sp.restart()
    t0 = time.perf_counter()
    sp.worker.request(n_frames)
    while sp.available() <= n_frames and time.perf_counter() - t0 < 120:
        time.sleep(0.002)
    compute_ms = (time.perf_counter() - t0) / n_frames * 1e3
    win.close()
    return {"fps": fps, "frames": len(painted), "draw_ms": draw_ms, "compute_ms": compute_ms, "titles": titles,
            "steps": steps}


def bench_lab(n: int = 2000) -> dict:
    from explorer.views.sampler import score_models
    from trainers import fitting
    from trainers.lab import LAB_SAMPLERS, NFE_GRID, run_lab

    state = make_state(100)
    trained, exact, cfg = score_models(state)
    options = {name: fitting.default_options(name, cfg) for name in LAB_SAMPLERS}
    t0 = time.perf_counter()
    result = run_lab(state.density, trained, exact, LAB_SAMPLERS, NFE_GRID, options, n=n)
    return {"seconds": time.perf_counter() - t0, "rows": len(result.rows), "n": n, "samplers": len(LAB_SAMPLERS),
            "nfes": NFE_GRID}


def bench_score_field(app, grid: int = 40, repeats: int = 10) -> dict:
    win = make_window(make_state(100))
    sv = win.views["score"]
    win.tabs.setCurrentWidget(sv)
    sv.grid_n.setValue(grid)
    _process(app, 50)
    full, arrows = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        sv.level.setValue(i % (sv.level.maximum() + 1))       # recompute fields + redraw
        sv.plot_widget.viewport().repaint()
        full.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sv._draw()
        sv.plot_widget.viewport().repaint()
        arrows.append(time.perf_counter() - t0)
    win.close()
    return {"grid": grid, "full_ms": statistics.median(full) * 1e3, "arrows_ms": statistics.median(arrows) * 1e3}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--particles", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--frames", type=int, default=120, help="timeline length (one step per chain per frame)")
    ap.add_argument("--panels", type=int, nargs="+", default=[3, 4])
    ap.add_argument("--skip-lab", action="store_true")
    ap.add_argument("--skip-score", action="store_true")
    args = ap.parse_args(argv)
    app = pg.mkQApp("bench")
    torch.set_num_threads(1)          # as the app does (MainWindow sets it)
    print(describe("explorer benchmark", app.platformName()))
    print("\n## Sampler animation (1 step per chain per frame, all panels on one width-128 depth-3 NCSN MLP, "
          "one batched forward pass per frame)")
    print(f"{'panels':>6}  {'particles':>9}  {'fps (step+redraw)':>17}  {'frames painted':>14}  {'compute/frame':>13}"
          f"  {'draw/frame':>10}")
    for n_panels in args.panels:
        for n in args.particles:
            r = bench_sampler(app, n, args.frames, n_panels)
            print(f"{n_panels:>6}  {n:>9}  {r['fps']:>17.1f}  {r['frames']:>6}/{args.frames + 1:<7}"
                  f"  {r['compute_ms']:>10.1f} ms  {r['draw_ms']:>7.1f} ms", flush=True)
        print("        panels: " + " | ".join(f"{t} ({k} steps)" for t, k in zip(r["titles"], r["steps"])))
    if not args.skip_lab:
        r = bench_lab()
        print(f"\n## Sampler lab: {r['samplers']} samplers × NFE {r['nfes']} × (model, exact), {r['n']} particles")
        print(f"{r['rows']} runs in {r['seconds']:.1f} s", flush=True)
    if not args.skip_score:
        r = bench_score_field(app)
        print(f"\n## Score field {r['grid']}×{r['grid']}")
        print(f"slider move (recompute true + learned field, 80×80 error map, contours, redraw): {r['full_ms']:.1f} ms")
        print(f"arrow redraw only: {r['arrows_ms']:.1f} ms")
    sys.stdout.flush()
    os._exit(0)          # skip PySide6's interpreter teardown


if __name__ == "__main__":
    main()
