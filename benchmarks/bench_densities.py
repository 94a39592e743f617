"""Exact mixture evaluation at image scale (issue #13): figures only, the tests check correctness.

    python benchmarks/bench_densities.py [--reps 5]

For the flower photo (sklearn's flower.jpg through trainers.densities.from_image, ~1,080 components)
and a 5,000-component mixture: exact score of 10k particles, the 200×200 heat map, stroke-to-redraw
latency in the Density tab (paint one stroke, heat map and contours updated), and the exact-score
sampler rate (annealed Langevin on ExactScore, one step per frame) at 1k and 10k particles.
Torch runs on one thread as in the explorer; the mixture kernel spreads its row blocks over the cores.
Targets on a 2-core CPU: score ≤ 30 ms, stroke-to-redraw ≤ 50 ms, sampler ≥ 30 fps at 1k.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import explorer  # noqa: E402,F401
import numpy as np  # noqa: E402
import torch  # noqa: E402

from trainers import densities  # noqa: E402
from trainers import grid  # noqa: E402


def flower() -> densities.GaussianMixture:
    from PIL import Image
    from sklearn.datasets import load_sample_image

    gray = np.asarray(Image.fromarray(load_sample_image("flower.jpg")).convert("L"), dtype=np.float64) / 255
    return densities.from_image(gray, name="flower")


def big(k: int = 5000) -> densities.GaussianMixture:
    rng = np.random.default_rng(0)
    return densities.from_points(rng.normal(0, 2, (k, 2)), bandwidth=0.15, name=f"kde{k}")


def _ms(fn, reps: int) -> str:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(1e3 * (time.perf_counter() - t))
    return f"{statistics.median(ts):7.1f} ms (best {min(ts):.1f})"


def bench_kernel(d, reps):
    x = d.sample(10_000, torch.Generator().manual_seed(0))
    print(f"  exact score, 10k particles      {_ms(lambda: d.score(x), reps)}")
    print(f"  heat map 200×200 (log p)        {_ms(lambda: grid.density_image(d, d.plot_bounds(), 200), reps)}")
    print(f"  noised(σ) construction          {_ms(lambda: d.noised(0.1), reps)}")


def bench_sampler(d, reps):
    from trainers.samplers import build_sampler
    from trainers.score_models import ExactScore

    model = ExactScore(d, 0.01, 4.0)
    for n in (1000, 10_000):
        s = build_sampler("annealed", model, steps=4, n_levels=10)
        x = s.prior_std * torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
        s.step(x, 0)                              # warm the σ cache
        steps = min(s.n_steps, 20)
        t = time.perf_counter()
        for k in range(steps):
            x = s.step(x, k).x
        dt = (time.perf_counter() - t) / steps
        print(f"  exact-score sampler, {n:>6} particles  {1 / dt:6.1f} steps/s ({1e3 * dt:.1f} ms/frame)")


def bench_strokes(app, d, reps):
    from PySide6 import QtCore

    from explorer.app import MainWindow
    from explorer.state import AppState

    win = MainWindow(AppState(d))
    win.show()
    view = win.views["density"]
    win.tabs.setCurrentWidget(view)
    while view.canvas.busy:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 10)
    app.processEvents()
    lat = []
    rng = np.random.default_rng(1)
    for i in range(max(reps, 5)):
        p = rng.uniform(-3, 3, (2, 2))
        st = densities.Stroke(p, width=0.4, strength=1.0, erase=(i % 3 == 2))
        t = time.perf_counter()
        win.state.apply_stroke(st)
        app.processEvents()
        lat.append(1e3 * (time.perf_counter() - t))
    print(f"  stroke-to-redraw in the window  {statistics.median(lat):7.1f} ms (max {max(lat):.1f}; "
          f"{view.canvas.last_update}, K={win.state.density.n_components})")
    win.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    torch.set_num_threads(1)
    print(f"cores: {os.cpu_count()}, torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
    for d in (flower(), big()):
        print(f"{d.name}: {d.n_components} components")
        bench_kernel(d, a.reps)
        bench_strokes(app, d, a.reps)
        bench_sampler(d, a.reps)


if __name__ == "__main__":
    main()
