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

Lab: trainers.studies.lab.run_lab with all 6 samplers × NFE (5, 10, 20, 50, 100, 200, 1000) × (model, exact
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


SETTINGS = {"switch_interval": None}      # --switch-interval: override the app's GIL switch interval


def make_window(state: AppState) -> MainWindow:
    win = MainWindow(state)
    if SETTINGS["switch_interval"]:
        sys.setswitchinterval(SETTINGS["switch_interval"])
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


def bench_frame_parts(app, n: int = 10000, n_frames: int = 60) -> dict:
    """Where a 3-panel frame at n particles goes: the network alone (three n-row ScoreMLP.infer passes
    at three σ; their matrix products and SiLUs timed alone with the same shapes), and the chains'
    compute per frame alone and while the GUI thread keeps drawing."""
    import torch.nn.functional as F

    state = make_state(n_frames, 3)
    net = state.model
    x = torch.randn(n, 2)
    reps = 20

    @torch.no_grad()
    def timed(fn):
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps * 1e3

    out = {"infer_ms": timed(lambda: [net(x, torch.full((n,), s)) for s in (0.1, 1.0, 5.0)]) if net.infer is None
           else timed(lambda: net.infer([(x, torch.tensor(s)) for s in (0.1, 1.0, 5.0)]))}
    linears = list(net.net)[0::2]
    rows = net.INFER_ROWS
    h = torch.randn(rows, linears[0].out_features)
    first_in = torch.randn(rows, 2)
    chunks = 3 * n / rows

    buf = torch.empty_like(h)

    def matmuls():                     # as infer runs them: into a preallocated buffer
        torch.addmm(linears[0].bias, first_in, linears[0].weight[:, :2].t(), out=buf)
        for lin in linears[1:]:
            torch.addmm(lin.bias, h, lin.weight.t(), out=buf[:, :lin.out_features])
    out["matmul_ms"] = timed(matmuls) * chunks
    flops = 2 * rows * sum(lin.in_features * lin.out_features for lin in linears) * chunks
    out["gflops"] = flops / (out["matmul_ms"] / 1e3) / 1e9
    out["silu_ms"] = timed(lambda: [F.silu(buf, inplace=True) for _ in linears[1:]]) * chunks

    win = make_window(state)
    win.tabs.setCurrentWidget(win.views["sampler"])
    sp = win.views["sampler"]
    sp.n.setValue(n)
    sp.wait_for(n_frames // 3)
    t0, a0 = time.perf_counter(), sp.available()
    sp.worker.request(2 * n_frames // 3)
    while sp.available() <= 2 * n_frames // 3:
        time.sleep(0.001)
    out["compute_alone_ms"] = (time.perf_counter() - t0) / (sp.available() - a0) * 1e3
    t0, a0, shown, draws = time.perf_counter(), sp.available(), 0, 0
    sp.worker.request(n_frames)
    while sp.available() <= n_frames:
        sp.show_frame(shown % a0)
        sp.canvas.repaint()
        shown, draws = shown + 1, draws + 1
    elapsed = time.perf_counter() - t0
    out["compute_drawing_ms"] = elapsed / (sp.available() - a0) * 1e3
    out["draw_ms"] = elapsed / draws * 1e3
    win.close()
    return out


def bench_lab(n: int = 2000) -> dict:
    from explorer.views.sampler import score_models
    from trainers import fitting
    from trainers.studies.lab import LAB_SAMPLERS, NFE_GRID, run_lab

    state = make_state(100)
    trained, exact, cfg = score_models(state)
    options = {name: fitting.method_for(cfg).sampler_defaults(name) for name in LAB_SAMPLERS}
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
    ap.add_argument("--skip-parts", action="store_true", help="skip the breakdown of a 10k-particle frame")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="GIL switch interval in s for the animation (default: the app's 1 ms)")
    ap.add_argument("--eager-sampling", action="store_true",
                    help="sample through the network's forward pass, layer by layer, not ScoreMLP.infer")
    ap.add_argument("--worker-threads", type=int, default=1,
                    help="torch intra-op threads inside the chains' worker thread (the app uses 1)")
    args = ap.parse_args(argv)
    app = pg.mkQApp("bench")
    torch.set_num_threads(1)          # as the app does (MainWindow sets it)
    print(describe("explorer benchmark", app.platformName()))
    SETTINGS["switch_interval"] = args.switch_interval
    if args.switch_interval:
        print(f"GIL switch interval {args.switch_interval * 1e3:g} ms (the app's: 1 ms)")
    if args.eager_sampling:
        from trainers.nets import ScoreMLP
        ScoreMLP.infer = None                  # ScoreModel then concatenates and calls forward
        print("eager sampling: ScoreMLP.infer switched off")
    if args.worker_threads != 1:
        from explorer.workers.chains import ChainWorker
        run = ChainWorker.run

        def run_with_threads(self):
            torch.set_num_threads(args.worker_threads)
            run(self)
        ChainWorker.run = run_with_threads
        print(f"{args.worker_threads} torch threads in the chains' worker (the app uses 1)")
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
    if not args.skip_parts:
        r = bench_frame_parts(app)
        print("\n## Where a 3-panel frame at 10,000 particles goes (one thread)")
        print(f"network, three 10k-row passes: {r['infer_ms']:.1f} ms; with infer's shapes, alone: matrix products "
              f"{r['matmul_ms']:.1f} ms ({r['gflops']:.0f} GFLOP/s), SiLU {r['silu_ms']:.1f} ms")
        print(f"chains' compute per frame: {r['compute_alone_ms']:.1f} ms alone, {r['compute_drawing_ms']:.1f} ms "
              f"while the GUI thread draws (full repaint {r['draw_ms']:.1f} ms a frame)", flush=True)
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
