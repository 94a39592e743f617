"""Same numbers before and after a refactor: small fixed-seed cases run through the public command lines
only (the 2D CLI `trainers.toy`, the image CLI `trainers.image`, the experiments CLI), their numbers
collected into one flat dict {key: value}, compared with a golden file written from an older commit.

    python benchmarks/same_numbers.py                            # print the numbers (JSON)
    python benchmarks/same_numbers.py --write tests/golden_numbers.json
    python benchmarks/same_numbers.py --compare tests/golden_numbers.json   # exit 1 on any difference

Golden values from another checkout: run this file from that checkout (or name it with --repo), e.g.
    cd /tmp/before && python /work/main/benchmarks/same_numbers.py --write golden.json
The code that ran is recorded under "meta" (never compared). Each CLI's main(argv) is called in-process
(one torch thread, as the CLIs set themselves); a case that raises records "<case>/CRASH" instead of its
numbers, so a crash shows as a difference too. Timings, paths and file names are left out.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

# Tolerance: float32 arithmetic. Two equivalent evaluation orders of the same float32 network (its training
# forward pass and its folded inference pass) agree to ~1e-6 relative (observed: ≤ 4e-7 on these cases), so
# rtol 1e-5 accepts float rounding but not a change of formula, seed or RNG draw order, which moves the
# numbers by far more (~1e-3 and up). atol 1e-9 keeps numbers that should be 0 exactly zero.
RTOL, ATOL = 1e-5, 1e-9
# Listings compared as "every old entry is still there, unchanged": an experiment or a config added on
# purpose is not a difference, a changed or lost one is. {key: what separates entries}: the experiments'
# blocks are separated by blank lines, the configs are one a line.
LISTINGS = {"experiments/list": "\n\n", "image/configs": "\n"}

# An off-centre, anisotropic mixture of three unequal components (all away from the origin).
DENSITY = {"kind": "gmm", "name": "golden_tilted", "components": [
    {"weight": 0.5, "mean": [2.0, 1.0], "cov": [[0.30, 0.12], [0.12, 0.10]]},
    {"weight": 0.3, "mean": [-1.5, 2.5], "cov": [[0.05, 0.0], [0.0, 0.40]]},
    {"weight": 0.2, "mean": [0.5, -2.0], "cov": [[0.20, -0.10], [-0.10, 0.15]]},
]}
OBJECTIVES = ["esm", "ssm", "dsm", "ncsn", "ddpm"]
SAMPLERS = ["langevin", "annealed", "ddpm", "ddim", "pf-ode", "pc"]
TRAIN = ["--model", "mlp", "--width", "32", "--depth", "2", "--steps", "150", "--batch", "128", "--seed", "3",
         "--levels", "6", "--timesteps", "100"]
# Train and sample options beyond the defaults (each flag of the CLIs at least once).
TRAIN_VARIANTS = {
    "ssm-gaussian-novr": ["--objective", "ssm", "--ssm-projection", "gaussian", "--no-ssm-vr"],
    "dsm-ebm": ["--objective", "dsm", "--model", "ebm", "--sigma", "0.3"],
    "ncsn-range-ndata": ["--objective", "ncsn", "--sigma-max", "5", "--sigma-min", "0.1", "--n-data", "64"],
    "ddpm-elbo-cosine": ["--objective", "ddpm", "--ddpm-weighting", "elbo", "--ddpm-variance", "beta_tilde",
                         "--schedule", "cosine"],
}
SAMPLE_VARIANTS = {
    "langevin-steps-eps-gauss": ("langevin", ["--steps", "30", "--eps", "0.02", "--init", "gaussian"]),
    "annealed-final-eps": ("annealed", ["--steps", "3", "--eps", "0.0005", "--final-denoise"]),
    "ddpm-beta-tilde": ("ddpm", ["--nfe", "12", "--variance", "beta_tilde"]),
    "ddim-eta": ("ddim", ["--nfe", "12", "--eta", "0.5"]),
    "pf-ode-euler-geometric": ("pf-ode", ["--steps", "8", "--solver", "euler", "--grid", "geometric"]),
    "pc-snr-m2": ("pc", ["--nfe", "12", "--snr", "0.2", "--corrector-steps", "2"]),
}
N = 256
NFE = "12"
# As tests/conftest.py TINY_IMAGE_OVERRIDES: an 8-channel U-Net on the built-in 8x8 digits.
TINY_IMAGE = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
              "train.batch_size=8", "train.warmup=1", "train.threads=1", "train.sample_every=0",
              "train.log_every=1", "train.n_steps=3", "train.ckpt_every=3"]
IMAGE_RUNS = {  # method: (config, overrides, {key: (sampler, sample options)})
    "ddpm": ("ddpm_digits", ["ddpm.T=10"], {
        "ddpm": ("ddpm", []), "ddim-eta": ("ddim", ["--nfe", "5", "--eta", "0.5"]),
        "pc-snr": ("pc", ["--nfe", "6", "--snr", "0.2"]), "pf-ode-euler-raw": ("pf-ode", [
            "--nfe", "6", "--solver", "euler", "--weights", "raw"])}),
    "ncsn": ("ncsn_digits", ["ncsn.n_levels=4", "ncsn.steps_per_level=3"], {
        "annealed": ("annealed", []), "pf-ode-range": ("pf-ode", [
            "--nfe", "6", "--sigma-max", "0.5", "--sigma-min", "0.05"]), "ddim": ("ddim", ["--nfe", "5"])}),
}
EXPERIMENTS = {  # key: (name, key=value overrides, flags); small versions of the shipped experiments
    "langevin-mode-weights": ("langevin-mode-weights", ["n=300", "seeds=2", "langevin_steps=40", "n_levels=4",
                                                        "steps_per_level=10", "null_reps=4"], []),
    "langevin-mode-weights-control": ("langevin-mode-weights", [
        "n=300", "seeds=2", "langevin_steps=40", "n_levels=4", "steps_per_level=10", "null_reps=4"], ["--control"]),
    "ssm-needs-noise": ("ssm-needs-noise", ["steps=60", "width=16", "batch=64", "seeds=2", "n_eval=200"], []),
    "few-steps": ("few-steps", ["steps=60", "width=16", "batch=64", "seeds=2", "n=200", "null_reps=4"], []),
    "score-wrong-without-data": ("score-wrong-without-data", ["steps=60", "width=16", "batch=64", "seeds=2",
                                                              "grid=20"], []),
    "noise-levels-fix-both": ("noise-levels-fix-both", ["steps=60", "width=16", "batch=64", "seeds=2", "n=200",
                                                        "langevin_steps=50", "null_reps=4"], []),
    "ddpm-forward-reverse": ("ddpm-forward-reverse", ["steps=60", "width=16", "batch=64", "seeds=2",
                                                      "n_timesteps=50", "n=200", "n_kl=500", "n_elbo=100",
                                                      "null_reps=4"], []),
    "one-model": ("one-model", ["steps=60", "width=16", "batch=64", "seeds=2", "n=200", "nfe=20",
                                "null_reps=4"], []),
    "one-model-control": ("one-model", ["steps=60", "width=16", "batch=64", "seeds=2", "n=200", "nfe=20",
                                        "null_reps=4"], ["--control"]),
    "memorisation": ("memorisation", ["n_data=20", "steps=100", "fresh_steps=60", "width=16", "batch=64",
                                      "seeds=2", "n=100", "nfe=20"], []),
    "ebm-vs-score": ("ebm-vs-score", ["steps=60", "width=16", "batch=64", "seeds=2", "n_eval=200",
                                      "timing_steps=2", "timing_rounds=1"], []),
}
GUI_TRAIN = {"objective": "ncsn", "n_levels": 6, "width": 32}     # the Training tab's settings changed
GUI_STEPS = 120
GUI_PANELS = [("annealed", {"steps": 4, "n_levels": 5}), ("ddpm", {"steps": 20}), ("ddim", {"steps": 10}),
              ("pf-ode", {"steps": 10})]
DROP = {"seconds", "train_seconds", "elapsed_s", "images_per_s", "eta_s", "path", "checkpoint", "samples", "grid",
        "chain", "run_dir", "run"}
# Figures measured in seconds (and the verdict and text built on them) differ from run to run.
TIMED = re.compile(r"per_second|speed_gain|seconds[^/]*$|ebm-vs-score/(holds|measured)$")


# ---------------------------------------------------------------------------------------------- helpers
def _module(*names):
    """The first of `names` that imports (a CLI the refactor may have moved)."""
    err = None
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as e:
            if not (e.name and name.startswith(e.name)):     # the module exists but an import inside it fails
                raise
            err = e
    raise err


def _call(module: str | tuple, argv: list[str]) -> str:
    """Run module.main(argv) in-process; its stdout. A non-zero exit raises with its stderr."""
    mod = _module(*(module if isinstance(module, tuple) else (module,)))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = mod.main(argv)
        except SystemExit as e:
            rc = e.code
    if rc not in (0, None):
        raise RuntimeError(f"{mod.__name__} {' '.join(argv[:2])}: exit {rc}: {err.getvalue().strip()[-300:]}")
    return out.getvalue()


def _json_line(text: str):
    """The JSON object a --json command printed (the last line that parses, or the whole text)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    raise ValueError(f"no JSON in output: {text[-200:]!r}")


def _flatten(prefix: str, obj, out: dict) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in DROP:
                _flatten(f"{prefix}/{k}", v, out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(f"{prefix}/{i}", v, out)
    elif isinstance(obj, float) and not math.isfinite(obj):
        out[prefix] = repr(obj)
    elif not TIMED.search(prefix):
        out[prefix] = obj


def _array_stats(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(len(x), -1)
    d = {"shape": list(x.shape), "mean": flat.mean(0)[:4].tolist(), "std": float(flat.std()),
         "sum": float(flat.sum()), "first": flat[0, :4].tolist(), "last": flat[-1, -4:].tolist()}
    if flat.shape[1] == 2:
        d["cov"] = np.cov(flat.T).reshape(-1).tolist()
    return d


def _state_stats(path: Path) -> dict:
    """A 2D checkpoint's recorded numbers and a fingerprint of its weights (independent of their names)."""
    import torch

    ck = torch.load(path, map_location="cpu", weights_only=True)
    tensors = [t.double() for t in ck["state_dict"].values() if torch.is_tensor(t) and t.is_floating_point()]
    extra = {k: v for k, v in ck.get("extra", {}).items() if k not in DROP and k != "train_points"}
    return {"extra": extra, "n_params": int(sum(t.numel() for t in tensors)),
            "weight_sum": float(sum(t.sum() for t in tensors)),
            "weight_abs_sum": float(sum(t.abs().sum() for t in tensors))}


def _case(out: dict, key: str, fn) -> None:
    """out[key/...] = fn()'s numbers, or out[key/CRASH] = the exception's one line. The global RNGs are
    reset first, so that a case's numbers do not depend on the cases run before it."""
    import random

    import torch

    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    try:
        _flatten(key, fn(), out)
    except Exception as e:  # noqa: BLE001 - a crash is a result here
        where = traceback.extract_tb(e.__traceback__)[-1]
        out[f"{key}/CRASH"] = f"{type(e).__name__}: {str(e)[:300]} (at {where.filename}:{where.lineno})"


# ---------------------------------------------------------------------------------------------- cases
def toy_cases(work: Path, out: dict) -> None:
    toy = "trainers.toy"
    density = work / "golden_tilted.json"
    density.write_text(json.dumps(DENSITY))
    ckpts = {}

    def train(name, args):
        ckpt = ckpts[name] = work / f"{name}.pt"

        def run():
            _call(toy, ["train", "--density", str(density), *TRAIN, *args, "--out", str(ckpt)])
            return _state_stats(ckpt)
        _case(out, f"toy/train/{name}", run)

    def evaluate(name, args=(), key=None):
        _case(out, f"toy/evaluate/{key or name}", lambda: _json_line(_call(toy, [
            "evaluate", "--ckpt", str(ckpts[name]), "--density", str(density), "--n", str(N), "--seed", "5",
            "--json", *args])))

    def sample(key, source, sampler, args=(), seed=7):
        npy = work / f"{key.replace('/', '-')}.npy"

        def run():
            printed = _call(toy, ["sample", *source, "--sampler", sampler, "--n", str(N), "--seed", str(seed),
                                  *args, "--out", str(npy)])
            return {"printed": printed.replace(str(npy), "<out>"), "x": _array_stats(np.load(npy))}
        _case(out, f"toy/sample/{key}", run)

    for obj in OBJECTIVES:
        train(obj, ["--objective", obj])
        evaluate(obj, ["--nll"] if obj == "ddpm" else [])
    for name, args in TRAIN_VARIANTS.items():
        train(name, args)
        evaluate(name, ["--train-set"] if "--n-data" in args else [])
    evaluate("ddpm", ["--sampler", "pc", "--nfe", NFE, "--snr", "0.2"], key="ddpm-pc")
    sources = {"ncsn": ["--ckpt", str(ckpts["ncsn"])], "ddpm": ["--ckpt", str(ckpts["ddpm"])],
               "exact": ["--score", "exact", "--density", str(density)]}
    for source, args in sources.items():
        for sampler in SAMPLERS:
            sample(f"{source}/{sampler}", args, sampler, ["--nfe", NFE])
        for name, (sampler, options) in SAMPLE_VARIANTS.items():
            sample(f"{source}/{name}", args, sampler, options, seed=9)
    sample("exact/pc-exact-start", sources["exact"], "pc", ["--nfe", NFE, "--start", "exact"], seed=8)
    txt = work / "s.txt"
    _case(out, "toy/sample/exact/ddim-txt", lambda: (_call(toy, [
        "sample", *sources["exact"], "--sampler", "ddim", "--nfe", NFE, "--n", "16", "--out", str(txt)]),
        txt.read_text())[1])
    _case(out, "toy/lab/ncsn", lambda: _json_line(_call(toy, [
        "lab", "--ckpt", str(ckpts["ncsn"]), "--samplers", "annealed,pf-ode", "--nfe", "10,20", "--seeds", "2",
        "--n", "128", "--null-draws", "4", "--seed", "2", "--model-exact-start", "--json"])))
    _case(out, "toy/lab/exact", lambda: _json_line(_call(toy, [
        "lab", "--density", str(density), "--samplers", "ddim,pc", "--nfe", "8,16", "--seeds", "2",
        "--n", "128", "--null-draws", "4", "--seed", "1", "--json"])))


def image_cases(work: Path, out: dict) -> None:
    image = "trainers.image.__main__"
    _case(out, "image/configs", lambda: _call(image, ["configs"]).rsplit("(in ", 1)[0])
    for method, (config, extra, samplers) in IMAGE_RUNS.items():
        run = work / f"image-{method}"

        def train(config=config, extra=extra, run=run):
            _call(image, ["train", "--config", config, "--out", str(run), "--quiet", *TINY_IMAGE, *extra])
            rows = [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines() if line.strip()]
            return [{k: v for k, v in r.items() if k not in DROP} for r in rows if "loss" in r or "event" in r]
        _case(out, f"image/train/{method}", train)
        for key, (sampler, options) in samplers.items():
            npy = work / f"image-{method}-{key}.npy"

            def sample(sampler=sampler, options=options, run=run, npy=npy):
                chain = npy.with_suffix(".npz")
                msg = _json_line(_call(image, ["sample", "--run", str(run), "--n", "6", "--sampler", sampler,
                                               *options, "--seed", "4", "--out", str(npy), "--chain", str(chain),
                                               "--frames", "3"]))
                with np.load(chain) as z:
                    frames = {"frames": _array_stats(z["frames"]), "frame_steps": z["frame_steps"].tolist(),
                              "labels": [str(v) for v in z["labels"]]}
                return {"printed": msg, "x": _array_stats(np.load(npy)), "chain_npz": frames}
            _case(out, f"image/sample/{method}/{key}", sample)
        _case(out, f"image/evaluate/{method}", lambda run=run: _json_line(_call(image, [
            "evaluate", "--run", str(run), "--n", "16", "--bpd-n", "4", "--no-record", "--json"])))


def experiment_cases(work: Path, out: dict) -> None:
    cli = ("trainers.studies.experiments", "trainers.experiments")
    _case(out, "experiments/list", lambda: _call(cli, ["list"]))
    for key, (name, params, flags) in EXPERIMENTS.items():
        _case(out, f"experiments/{key}", lambda name=name, params=params, flags=flags: _json_line(_call(
            cli, ["run", name, *params, *flags, "--json"])))


def _wait(app, done, timeout_s: float = 120.0, what: str = "") -> None:
    """Process Qt events until done() (a worker thread's results arrive as queued signals)."""
    t0 = time.perf_counter()
    while not done():
        if time.perf_counter() - t0 > timeout_s:
            raise RuntimeError(f"{what} did not finish in {timeout_s:.0f} s")
        app.processEvents()
        time.sleep(0.002)


def _samplers_tab(app, window, panels) -> dict:
    sp = window.views["sampler"]
    window.tabs.setCurrentWidget(sp)
    for i, (name, source, options) in enumerate(panels):
        sp.set_panel(i, name, source, **options)
    if not sp.wait_for(sp.n_frames, 60):
        raise RuntimeError("the Samplers tab did not finish its chains in 60 s")
    sp.show_frame(sp.n_frames)
    return {"n_frames": sp.n_frames, "metrics": sp.metrics_now(),
            "x": [_array_stats(sp.frame_positions(i)) for i in range(len(panels))]}


def gui_cases(work: Path, out: dict) -> None:
    """The explorer headless (offscreen Qt), driven as its tests drive it: the Samplers tab on the exact
    score of the default density; then in a second window a model trained by the Training tab (a fixed
    step budget), and what the Score-field, Learned-density, History and Samplers tabs show for it.
    Each tab is its own case, so a renamed widget crashes only that one."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])

    def window():
        from explorer.app import MainWindow
        from explorer.state import AppState

        state = AppState()
        state.sampler.n_particles, state.sampler.frames = 300, 10
        w = MainWindow(state)
        w.show()                  # tabs compute when shown, as for a person
        app.processEvents()
        return w

    def close(w):
        w.close()
        app.processEvents()

    w = None
    try:
        w = window()
        _case(out, "gui/samplers", lambda: _samplers_tab(app, w, [(n, "exact", o) for n, o in GUI_PANELS]))
    finally:
        if w is not None:
            close(w)
    w = None
    try:
        w = window()

        def training():
            tv = w.views["training"]
            w.tabs.setCurrentWidget(tv)
            w.state.update_train(**GUI_TRAIN)
            tv.plateau_on.setChecked(False)
            tv.start(max_steps=GUI_STEPS)
            _wait(app, lambda: not tv.is_running(), what="the Training tab")
            _wait(app, lambda: w.state.model_step == GUI_STEPS, 10, "the Training tab's last weights")
            steps, losses = tv.loss_history()
            weights = [t.double() for t in w.state.model.state_dict().values()]
            return {"steps": [int(steps[0]), int(steps[-1]), len(steps)], "loss_sum": float(np.sum(losses)),
                    "loss_first": np.asarray(losses[:3], float).tolist(),
                    "loss_last": np.asarray(losses[-3:], float).tolist(), "model_step": w.state.model_step,
                    "weight_sum": float(sum(t.sum() for t in weights)),
                    "weight_abs_sum": float(sum(t.abs().sum() for t in weights))}
        _case(out, "gui/training", training)

        def score_field():
            sv = w.views["score"]
            w.tabs.setCurrentWidget(sv)
            app.processEvents()
            sv.level.setValue(2)
            app.processEvents()
            return {"text": sv.show_vectors_at(1.0, 0.5), "level": sv.level_label.text(),
                    "model_arrows": _array_stats(np.stack(sv.model_arrows.getData(), 1)),
                    "true_arrows": _array_stats(np.stack(sv.true_arrows.getData(), 1))}
        _case(out, "gui/score", score_field)

        def learned():
            view = w.views["learned"]
            view.n_grid.setValue(16)
            view.n_steps.setValue(10)
            w.tabs.setCurrentWidget(view)
            app.processEvents()
            if view.result is None and not view.is_running():
                view.compute()
            _wait(app, lambda: view.result is not None, what="the Learned-density tab")
            numbers = {k: v for k, v in view.numbers().items() if "seconds" not in k}
            return {"numbers": numbers, "grids": {k: _array_stats(g) for k, g in view.grids().items()}}
        _case(out, "gui/learned", learned)

        def history():
            view = w.views["history"]
            view.n_grid.setValue(16)
            view.n_particles.setValue(300)
            w.tabs.setCurrentWidget(view)
            if not view.settle(120):
                raise RuntimeError(f"the History tab did not settle: {view.status.text()}")
            return {"numbers": view.numbers(), "points": _array_stats(view.points.data()),
                    "density": _array_stats(view.density_img.image)}
        _case(out, "gui/history", history)
        _case(out, "gui/samplers-model", lambda: _samplers_tab(app, w, [
            ("annealed", "model", {"steps": 4, "n_levels": 5}), ("pf-ode", "model", {"steps": 10}),
            ("pc", "model", {"steps": 6}), ("langevin", "exact", {"steps": 20})]))
    finally:
        if w is not None:
            close(w)


CASES = {"toy": toy_cases, "image": image_cases, "experiments": experiment_cases, "gui": gui_cases}


def collect(only: list[str] | None = None) -> dict:
    """{"meta": {...}, "numbers": {key: value}} for every case (or those named in `only`)."""
    import torch
    import trainers

    torch.set_num_threads(1)          # as the CLIs do; the GUI case runs no CLI before it with --only gui
    numbers, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="same_numbers_") as tmp:
        cwd = os.getcwd()
        try:
            os.chdir(tmp)                 # CLIs that write next to cwd write into the temporary folder
            for name, fn in CASES.items():
                if only and name not in only:
                    continue
                t0 = time.perf_counter()
                work = Path(tmp) / name
                work.mkdir()
                fn(work, numbers)
                seconds[name] = round(time.perf_counter() - t0, 2)
        finally:
            os.chdir(cwd)
    explorer = sys.modules.get("explorer")
    meta = {"trainers": str(Path(trainers.__file__).parent),
            "explorer": str(Path(explorer.__file__).parent) if explorer else None, "torch": torch.__version__,
            "numpy": np.__version__, "python": sys.version.split()[0], "seconds": seconds}
    return {"meta": meta, "numbers": numbers}


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return type(a) is type(b) and a == b
    return abs(a - b) <= ATOL + RTOL * abs(b)


def _blocks(listing: str, sep: str = "\n\n") -> list[str]:
    return [b.strip("\n") for b in listing.split(sep) if b.strip()]


def _listing_differences(key: str, new, old) -> list[str]:
    """One line per block of the old listing that the new one lacks or changed (added blocks are fine)."""
    if not isinstance(new, str) or not isinstance(old, str):
        return [] if _same(new, old) else [f"{key}: old {old!r} new {new!r}"]
    sep = LISTINGS.get(key, "\n\n")
    kept = set(_blocks(new, sep))
    return [f"{key}: old entry {b.splitlines()[0]!r} missing or changed" for b in _blocks(old, sep) if b not in kept]


def differences(new: dict, old: dict) -> list[str]:
    """One line per key whose value differs, or that only one side has (numbers dicts); the old numbers
    of a case that crashed in `new` are counted in one line instead of listed; a listing (LISTINGS) differs
    only where an old entry is gone or changed."""
    crashed = [k[: -len("CRASH")] for k in new if k.endswith("/CRASH")]
    lines, lost = [], dict.fromkeys(crashed, 0)
    for key in sorted(set(new) | set(old)):
        if key not in new:
            case = next((c for c in crashed if key.startswith(c)), None)
            if case is not None:
                lost[case] += 1
            else:
                lines.append(f"{key}: only old = {old[key]!r}")
        elif key not in old:
            lines.append(f"{key}: only new = {new[key]!r}")
        elif key in LISTINGS:
            lines += _listing_differences(key, new[key], old[key])
        elif not _same(new[key], old[key]):
            lines.append(f"{key}: old {old[key]!r} new {new[key]!r}")
    lines += [f"{case}*: {n} old numbers missing (the case crashed)" for case, n in lost.items() if n]
    return lines


def below_tolerance(new: dict, old: dict) -> dict:
    """{key: relative difference} of the numbers that differ, but by less than the tolerance."""
    return {k: abs(new[k] - v) / max(abs(v), 1e-300) for k, v in old.items()
            if k in new and new[k] != v and _same(new[k], v) and isinstance(v, (int, float))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", help="write the numbers to this golden JSON file (atomically)")
    p.add_argument("--compare", help="compare with this golden JSON file; exit 1 on any difference")
    p.add_argument("--only", nargs="*", choices=list(CASES), help="run only these groups of cases")
    p.add_argument("--repo", default=".", help="the checkout whose trainers/ and explorer/ run (default: the "
                                                "current folder); recorded under meta")
    a = p.parse_args(argv)
    sys.path.insert(0, str(Path(a.repo).resolve()))
    result = collect(a.only)
    if a.write:
        path = Path(a.write)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        sys.stderr.write(f"wrote {len(result['numbers'])} numbers to {path} ({result['meta']})\n")
    if a.compare:
        old = json.loads(Path(a.compare).read_text())["numbers"]
        if a.only:
            old = {k: v for k, v in old.items() if k.split("/")[0] in a.only}
        diff = differences(result["numbers"], old)
        print("\n".join(diff) if diff else f"same: {len(old)} numbers ({result['meta']})")
        near = below_tolerance(result["numbers"], old)
        if near:
            key, rel = max(near.items(), key=lambda kv: kv[1])
            print(f"note: {len(near)} numbers are not bit-identical but within the tolerance "
                  f"(largest relative difference {rel:.2g}, at {key})")
        return 1 if diff else 0
    if not a.write:
        print(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
