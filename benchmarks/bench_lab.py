"""The README's lab figures: `python -m trainers.toy lab --seeds K --json` with the exact score on a
centred and an off-centre density (three anisotropic modes, weights 0.6 / 0.3 / 0.1; the second is
the first moved 8 units from the origin), optionally with a briefly trained NCSN model, and the
three-way decomposition plot of the off-centre density (docs/lab_decomposition.png).

    python benchmarks/bench_lab.py --out /tmp/labbench                  # exact score, K = 5, n = 2000
    python benchmarks/bench_lab.py --out /tmp/labbench --train-steps 3000 --png docs/lab_decomposition.png

Each lab runs as the CLI does (a subprocess of `python -m trainers.toy lab`); the JSON, CSV and text
table of each land in --out. The plot adds, for comparison, the exact score from the old origin-centred
start N(0, σ_max² I) (trainers.studies.lab.run_lab with a score model that carries no data mean), so the prior
error the matched start removes is visible.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainers.densities import GaussianMixture      # noqa: E402
from trainers.studies.lab import EXACT, EXACT_START, MODEL, LabResult, format_table, run_lab   # noqa: E402
from trainers.score_models import ExactScore        # noqa: E402

WEIGHTS = [0.6, 0.3, 0.1]
MEANS = [[-1.2, 0.8], [1.8, -0.4], [0.2, -2.2]]
COVS = [[[0.5, 0.25], [0.25, 0.2]], [[0.15, 0.0], [0.0, 0.6]], [[0.3, -0.1], [-0.1, 0.1]]]
SHIFT = (5.6, 5.7)           # |shift| ≈ 8.0
PLOT_SAMPLERS = ("ddim", "pf-ode", "ddpm")
ORIGIN = "exact, origin start"


def densities() -> dict[str, GaussianMixture]:
    centred = GaussianMixture(WEIGHTS, MEANS, COVS, name="three modes, centred")
    off = GaussianMixture(WEIGHTS, [[x + SHIFT[0], y + SHIFT[1]] for x, y in MEANS], COVS,
                          name="three modes, 8 units off-centre")
    return {"centred": centred, "off-centre": off}


def cli_lab(args: list[str], out: Path, tag: str, reuse: bool = False) -> LabResult:
    cmd = [sys.executable, "-m", "trainers.toy", "lab", *args, "--json", "--csv", str(out / f"{tag}.csv")]
    if reuse and (out / f"{tag}.json").exists():
        print(f"== {tag}: reusing {out / f'{tag}.json'}", flush=True)
        return LabResult.from_dict(json.loads((out / f"{tag}.json").read_text()))
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    result = LabResult.from_dict(json.loads(proc.stdout))
    (out / f"{tag}.json").write_text(proc.stdout)
    table = format_table(result)
    (out / f"{tag}.txt").write_text(" ".join(cmd[1:]) + "\n\n" + table + "\n")
    print(f"== {tag}: {' '.join(cmd[2:])}  ({time.perf_counter() - start:.0f} s)\n{table}\n", flush=True)
    return result


def origin_start(density, args, ckpt: Path | None = None) -> LabResult:
    """The exact score from the legacy start N(0, σ_max² I): a copy of the exact score without data stats
    drives the "model" rows, so its rows are the exact score from the origin-centred start. With a
    checkpoint, over its σ range (and options), as `trainers.toy lab --ckpt` runs the exact score."""
    import copy

    from trainers.fitting import load_checkpoint, noise_levels, score_model, sigmas_from_extra
    from trainers.samplers import SamplerOptions

    options = None
    if ckpt is None:
        exact = ExactScore(density)
    else:
        _, cfg, _, extra = load_checkpoint(ckpt)
        sigmas = sigmas_from_extra(extra)
        exact = score_model(None, cfg, density, sigmas if sigmas is not None else noise_levels(cfg, density))
        o = SamplerOptions(variance=cfg.ddpm_variance, n_levels=cfg.n_levels, n_timesteps=cfg.n_timesteps)
        options = {s: o for s in PLOT_SAMPLERS}
    legacy = copy.copy(exact)
    legacy.data_mean = legacy.data_var = None
    if hasattr(legacy, "data_cov"):
        legacy.data_cov = None
    return run_lab(density, legacy, exact, PLOT_SAMPLERS, args.nfe_list, options, n=args.n, seed=args.seed,
                   seeds=args.seeds)


def plot(path: Path, main: LabResult, origin: LabResult, model: LabResult | None, title: str) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    import pyqtgraph as pg
    from PySide6 import QtCore, QtWidgets

    from explorer.views.parts import axes

    QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    pg.setConfigOptions(background="w", foreground="k", antialias=True)
    win = pg.GraphicsLayoutWidget()
    win.resize(1500, 620)
    win.addLabel(title, row=0, col=0, colspan=len(PLOT_SAMPLERS), size="11pt")
    curves = [(main, EXACT_START, "exact score, exact p_σmax start (discretisation)", (230, 140, 0), QtCore.Qt.DotLine),
              (main, EXACT, "exact score, matched Gaussian start (+ prior)", (0, 110, 220), QtCore.Qt.DashLine),
              (origin, EXACT, "exact score, old N(0, σ_max²I) start (+ prior)", (200, 30, 30), QtCore.Qt.DashDotLine)]
    if model is not None:
        curves.append((model, MODEL, "trained model, matched start (+ model)", (40, 160, 60), QtCore.Qt.SolidLine))
    floor = max(1e-4, main.threshold / 10)
    legend = pg.LegendItem(colCount=2, labelTextSize="9pt")
    named = set()
    for col, name in enumerate(PLOT_SAMPLERS):
        p = win.addPlot(row=1, col=col, axisItems=axes.items())
        p.setLogMode(x=True, y=True)
        p.showGrid(x=True, y=True, alpha=0.15)
        p.setTitle({"ddim": "DDIM (η = 0)", "pf-ode": "PF-ODE (Heun)", "ddpm": "DDPM"}[name])
        p.setLabel("bottom", "network evaluations (NFE)")
        if col == 0:
            p.setLabel("left", f"energy distance (mean ± sd, {main.seeds} seeds)")
        targets = sorted({r.nfe_target for r in main.rows})
        p.getAxis("bottom").setTicks([[(math.log10(t), str(t)) for t in targets], []])
        for result, src, label, color, style in curves:
            rows = result.cells(name, src)
            if not rows:
                continue
            x = np.array([r.nfe for r in rows], float)
            y = np.array([r.energy_distance for r in rows], float)
            sd = np.nan_to_num(np.array([r.energy_distance_sd for r in rows], float))
            edge = pg.mkPen(0, 0, 0, 0)
            lo, hi = pg.PlotDataItem(x, np.maximum(y - sd, floor), pen=edge), pg.PlotDataItem(x, np.maximum(y + sd, floor), pen=edge)
            p.addItem(lo)
            p.addItem(hi)
            p.addItem(pg.FillBetweenItem(lo, hi, brush=pg.mkBrush(*color, 50)))
            item = p.plot(x, np.maximum(y, floor), pen=pg.mkPen(color, width=2.5, style=style), symbol="o",
                          symbolSize=6, symbolBrush=color, symbolPen=None)
            if label not in named:
                legend.addItem(item, label)
                named.add(label)
        # below the threshold: a K-seed mean that exact samples reach 95 % of the time
        low, high = pg.PlotDataItem([3, 1500], [floor / 1.5] * 2, pen=pg.mkPen(0, 0, 0, 0)), \
            pg.PlotDataItem([3, 1500], [main.threshold] * 2, pen=pg.mkPen(0, 0, 0, 0))
        p.addItem(low)
        p.addItem(high)
        p.addItem(pg.FillBetweenItem(low, high, brush=pg.mkBrush(120, 120, 120, 40)))
        p.setXRange(math.log10(4), math.log10(1300), padding=0)
        p.addItem(pg.InfiniteLine(pos=math.log10(main.threshold), angle=0,
                                  pen=pg.mkPen(90, 90, 90, width=1.5, style=QtCore.Qt.DotLine),
                                  label=f"threshold {main.threshold:.2g}", labelOpts={"position": 0.15, "color": "k"}))
    shade = pg.PlotDataItem(pen=pg.mkPen(0, 0, 0, 0), fillLevel=0, fillBrush=pg.mkBrush(120, 120, 120, 60))
    legend.addItem(shade, f"below the threshold: as close as exact samples (means ≤ {floor:.2g} drawn at {floor:.2g})")
    win.addItem(legend, row=2, col=0, colspan=len(PLOT_SAMPLERS))
    win.show()
    QtWidgets.QApplication.processEvents()
    tmp = path.with_name(path.name + ".tmp")
    if not win.grab().save(str(tmp), "PNG"):
        raise OSError(f"could not write {path}")
    os.replace(tmp, path)
    print(f"saved {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/labbench"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--nfe", default="5,10,20,50,100,200,1000")
    ap.add_argument("--samplers", default=None, help="comma-separated (default: all)")
    ap.add_argument("--model-samplers", default=None, help="samplers of the trained model's lab (default: --samplers)")
    ap.add_argument("--train-steps", type=int, default=0, help="also train an NCSN model this long on the off-centre density")
    ap.add_argument("--png", type=Path, default=None, help="write the decomposition plot (off-centre density) here")
    ap.add_argument("--only", choices=["centred", "off-centre"], default=None)
    ap.add_argument("--reuse", action="store_true", help="load a lab's JSON from --out where it exists instead of rerunning")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)          # as the CLI does: small 2D batches gain nothing from threads
    args.nfe_list = [int(v) for v in args.nfe.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    common = ["--seeds", str(args.seeds), "--seed", str(args.seed), "--n", str(args.n), "--nfe", args.nfe]
    if args.samplers:
        common += ["--samplers", args.samplers]
    results = {}
    for tag, d in densities().items():
        path = args.out / f"{tag}.density.json"
        d.save(path)
        if args.only and tag != args.only:
            continue
        results[tag] = cli_lab(["--density", str(path), *common], args.out, f"exact-{tag}", args.reuse)
    model = None
    if args.train_steps:
        ckpt = args.out / "ncsn-off-centre.pt"
        if not (args.reuse and ckpt.exists()):
            subprocess.run([sys.executable, "-m", "trainers.toy", "train", "--density",
                            str(args.out / "off-centre.density.json"), "--objective", "ncsn",
                            "--steps", str(args.train_steps), "--seed", str(args.seed),
                            "--out", str(ckpt)], cwd=ROOT, check=True)
        model_args = ["--samplers", args.model_samplers] if args.model_samplers else []
        model = cli_lab(["--ckpt", str(ckpt), *common, *model_args], args.out, "model-off-centre", args.reuse)
    if args.png:
        off = densities()["off-centre"]
        ckpt = args.out / "ncsn-off-centre.pt" if model is not None else None
        origin_path = args.out / ("origin-start-off-centre" + ("-ckpt" if ckpt else "") + ".json")
        origin = (LabResult.from_dict(json.loads(origin_path.read_text())) if args.reuse and origin_path.exists()
                  else origin_start(off, args, ckpt))
        origin_path.write_text(json.dumps(origin.to_dict()))
        print(f"== exact score from the origin-centred start (off-centre)\n{format_table(origin)}\n")
        # with a model, every curve from its lab (one σ range); else the exact-score lab
        plot(args.png, model or results["off-centre"], origin, model,
             f"Off-centre density (three modes 0.6 / 0.3 / 0.1, 8 units from the origin), n = {args.n}, "
             f"{args.seeds} seeds: where each sampler's error comes from")
    return 0


if __name__ == "__main__":
    sys.exit(main())
