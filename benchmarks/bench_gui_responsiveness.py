"""How responsive the explorer's GUI thread stays, offscreen (figures only; the tests assert behaviour,
never timings, which depend on the machine and its load).

    python benchmarks/bench_gui_responsiveness.py [--steps 600] [--levels 6]

Training: a 10 ms GUI-thread QTimer runs while the Training tab trains DSM (σ = 0.5, width 64) for
--steps steps (and at least 1.5 s); reported: timer ticks per second, median and longest gap between
ticks, and training steps per second. Aims (were test asserts): ≥ 20 ticks/s, no gap over 0.5 s.

Score field: after 150 NCSN steps with --levels noise levels, the time each move of the level slider
takes (recompute the true and learned fields, redraw). Aim (was a test assert): every move < 0.5 s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import explorer  # noqa: E402,F401  (applies the PySide6 work-around before Qt is used)
import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
import torch  # noqa: E402
from PySide6 import QtCore  # noqa: E402

from explorer.app import MainWindow  # noqa: E402
from explorer.state import AppState  # noqa: E402
from machine import describe  # noqa: E402  (benchmarks/machine.py)


def _window() -> MainWindow:
    state = AppState()
    state.train.width = 64                     # as the tests' window
    state.train.n_timesteps = 50
    win = MainWindow(state)
    win.resize(1400, 860)
    win.show()
    return win


def _process_until(app, done, timeout_s: float = 60.0) -> bool:
    t0 = time.perf_counter()
    while not done() and time.perf_counter() - t0 < timeout_s:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 10)
        time.sleep(0.002)
    return done()


def bench_training(app, n_steps: int) -> dict:
    win = _window()
    tv = win.views["training"]
    win.tabs.setCurrentWidget(tv)
    win.state.update_train(objective="dsm", sigma=0.5)
    ticks = []
    timer = QtCore.QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    tv.start()
    t0 = time.perf_counter()
    _process_until(app, lambda: len(tv.loss_history()[0]) >= n_steps and time.perf_counter() - t0 > 1.5)
    elapsed = time.perf_counter() - t0
    timer.stop()
    steps = len(tv.loss_history()[0])
    tv.stop()
    win.close()
    gaps = np.diff(ticks)
    return {"ticks_per_s": len(ticks) / (ticks[-1] - ticks[0]), "median_gap_ms": float(np.median(gaps)) * 1e3,
            "max_gap_ms": float(gaps.max()) * 1e3, "steps_per_s": steps / elapsed, "steps": steps}


def bench_score_slider(app, n_levels: int) -> dict:
    win = _window()
    tv, sv = win.views["training"], win.views["score"]
    win.tabs.setCurrentWidget(sv)
    win.state.update_train(objective="ncsn", n_levels=n_levels)
    tv.start(max_steps=150)
    _process_until(app, lambda: not tv.is_running())
    times = []
    for i in range(n_levels):
        t0 = time.perf_counter()
        sv.level.setValue(i)
        times.append(time.perf_counter() - t0)
    win.close()
    return {"max_ms": max(times) * 1e3, "median_ms": statistics.median(times) * 1e3, "moves": len(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--levels", type=int, default=6)
    args = ap.parse_args(argv)
    app = pg.mkQApp("bench")
    torch.set_num_threads(1)          # as the app does (MainWindow sets it)
    print(describe("GUI responsiveness", app.platformName()))
    r = bench_training(app, args.steps)
    print(f"\n## 10 ms GUI timer while training DSM ({r['steps']} steps)")
    print(f"ticks/s {r['ticks_per_s']:.1f} (aim ≥ 20) · median gap {r['median_gap_ms']:.1f} ms · "
          f"longest gap {r['max_gap_ms']:.0f} ms (aim < 500) · training {r['steps_per_s']:.0f} steps/s", flush=True)
    r = bench_score_slider(app, args.levels)
    print(f"\n## Score-field level slider, NCSN with {args.levels} levels ({r['moves']} moves)")
    print(f"median {r['median_ms']:.0f} ms · longest {r['max_ms']:.0f} ms (aim < 500)")
    sys.stdout.flush()
    os._exit(0)          # skip PySide6's interpreter teardown


if __name__ == "__main__":
    main()
