"""Explorer drawing speed, offscreen: sampler animation frame rate and score-field redraw time.

    python benchmarks/bench_explorer.py [--particles 1000 10000] [--frames 120]

Sampler animation: the Samplers tab plays a timeline in which every frame advances each of the
three chains by exactly one step (Langevin, annealed Langevin, DDPM), computed in the sampler
thread, while the GUI thread draws the three particle panels, trails and histograms and repaints.
Reported: frames shown per second for the whole loop ("step + redraw", the two overlap on two
cores), and separately the per-frame cost of computing only and of drawing only. The network is
the default width-128 depth-3 MLP (untrained: speed does not depend on the weights), once as an
NCSN σ-model (Langevin and annealed chains use it, DDPM the exact ε) and once as a DDPM t-model
(Langevin and DDPM use it, annealed the exact score).

Score field: time to recompute and redraw a 40×40 arrow grid (true and learned fields, 80×80
error map, contours), as when the noise-level slider moves; and the arrow redraw alone.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import explorer  # noqa: E402,F401  (applies the PySide6 work-around before Qt is used)
import pyqtgraph as pg  # noqa: E402
import torch  # noqa: E402
from PySide6 import QtCore  # noqa: E402

from explorer import core  # noqa: E402
from explorer.app import MainWindow  # noqa: E402
from explorer.state import AppState  # noqa: E402


def _process(app, ms: int = 5):
    app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, ms)


def make_window(objective: str, n_frames: int, chains=("langevin", "annealed", "ddpm")) -> MainWindow:
    state = AppState()
    state.sampler.chains = list(chains)
    tr = state.train
    tr.objective, tr.width, tr.depth, tr.n_timesteps, tr.n_levels = objective, 128, 3, n_frames, 10
    ss = state.sampler
    # one step of every chain per frame
    ss.frames = n_frames
    ss.langevin_steps = n_frames
    ss.n_levels, ss.steps_per_level = 10, max(1, n_frames // 10)
    model = core.build_model(tr)
    model.eval()
    state.set_model(model, tr, step=1)
    win = MainWindow(state)
    win.resize(1400, 860)
    win.show()
    win.tabs.setCurrentWidget(win.views["sampler"])
    return win


def bench_sampler(app, n: int, objective: str, n_frames: int, chains=("langevin", "annealed", "ddpm")) -> dict:
    win = make_window(objective, n_frames, chains)
    sp = win.views["sampler"]
    sp.n.setValue(n)                  # restarts the chains with n particles
    _process(app, 50)
    titles = [sp.panels[i]["title"] for i in sp.active]

    # 1) full loop: the app's own play path (16 ms timer → show_frame → Qt repaints what changed,
    #    in Qt's event loop); a frame counts when panel 1's particle item is painted with it. The
    #    timer caps the rate at ~60 fps.
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
        sp.plots.viewport().repaint()
    draw_ms = (time.perf_counter() - t0) / (n_frames + 1) * 1e3

    # 3) compute only: a fresh recording with nothing drawn
    sp.restart()
    t0 = time.perf_counter()
    sp.worker.request(n_frames)
    while sp.available() <= n_frames and time.perf_counter() - t0 < 120:
        time.sleep(0.002)
    compute_ms = (time.perf_counter() - t0) / n_frames * 1e3
    win.close()
    return {"n": n, "objective": objective, "fps": fps, "frames": len(painted), "draw_ms": draw_ms,
            "compute_ms": compute_ms, "titles": titles}


def bench_score_field(app, grid: int = 40, repeats: int = 10) -> dict:
    win = make_window("ncsn", 100)
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
    ap.add_argument("--parallel", action="store_true", help="step the three chains concurrently (threads)")
    ap.add_argument("--only-three", action="store_true", help="skip the one-chain and score-field parts")
    args = ap.parse_args(argv)
    from explorer.sampler_worker import ChainWorker
    ChainWorker.PARALLEL = args.parallel
    app = pg.mkQApp("bench")
    torch.set_num_threads(1)          # as the app does (MainWindow sets it)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"# explorer benchmark — {platform.machine()}, {os.cpu_count()} CPUs (load average {load:.1f} at start), "
          f"torch {torch.__version__}, 1 intra-op thread, Qt platform {app.platformName()}")
    print(f"\n## Sampler animation (3 chains × 1 step per frame, width-128 depth-3 MLP, "
          f"chains stepped {'concurrently' if args.parallel else 'one after another'})")
    print(f"{'particles':>9}  {'model':<6} {'fps (step+redraw)':>17}  {'frames painted':>14}  {'compute/frame':>13}"
          f"  {'draw/frame':>10}")
    for objective in ("ncsn", "ddpm"):
        for n in args.particles:
            r = bench_sampler(app, n, objective, args.frames)
            print(f"{n:>9}  {objective:<6} {r['fps']:>17.1f}  {r['frames']:>6}/{args.frames + 1:<7}"
                  f"  {r['compute_ms']:>10.1f} ms  {r['draw_ms']:>7.1f} ms")
        print("           chains: " + " | ".join(r["titles"]))
    if args.only_three:
        sys.stdout.flush()
        os._exit(0)
    print("\n## One sampler shown (the other two unchecked), same network")
    print(f"{'particles':>9}  {'chain':<30} {'fps (step+redraw)':>17}  {'compute/frame':>13}  {'draw/frame':>10}")
    for objective, chain in (("ddpm", "ddpm"), ("ncsn", "annealed")):
        for n in args.particles:
            r = bench_sampler(app, n, objective, args.frames, chains=(chain,))
            print(f"{n:>9}  {r['titles'][0][:30]:<30} {r['fps']:>17.1f}  {r['compute_ms']:>10.1f} ms"
                  f"  {r['draw_ms']:>7.1f} ms")
    r = bench_score_field(app)
    print(f"\n## Score field {r['grid']}×{r['grid']}")
    print(f"slider move (recompute true + learned field, 80×80 error map, contours, redraw): {r['full_ms']:.1f} ms")
    print(f"arrow redraw only: {r['arrows_ms']:.1f} ms")
    sys.stdout.flush()
    os._exit(0)          # skip PySide6's interpreter teardown


if __name__ == "__main__":
    main()
