"""``python -m trainers.image {train,sample,evaluate,configs}``: the headless image trainer.

    python -m trainers.image train --config ddpm_digits [--data-dir DIR] [--out RUN_DIR]
                                   [--resume] [section.key=value ...]
    python -m trainers.image sample --run RUN_DIR [--ckpt STEP] [--n 64] [SAMPLER OPTIONS]
                                    --out {GRID.png | SAMPLES.npy | SAMPLES.npz}
                                    [--chain CHAIN.npz | --chain FRAMES_DIR] [--frames 50]
    python -m trainers.image evaluate --run RUN_DIR [--data-dir DIR] [--n N] [SAMPLER OPTIONS]
                                      [--bpd-n 256] [--decoder-variance {reference,beta1}]
                                      [--no-record] [--json]
    python -m trainers.image configs            # list the bundled configs

Sampler options: --sampler NAME (any registry sampler; default: the run's own, ddpm or annealed),
one flag per sampler option, generated from the samplers' schemas (--nfe N, --eta H, --sigma-max S,
…: see ``sample --help``), --weights {ema,raw} (the checkpoint's EMA weights, the default, or its
raw training weights).

``evaluate`` reports a digit judge's figures (digits runs; MNIST runs: a small CNN fitted on the
run's MNIST files, cached in the run folder), bits/dim on held-out images (DDPM runs), FID/IS where
torch-fidelity and its weights are present, and appends a line to RUN_DIR/eval.jsonl.

Multi-GPU: the same ``train`` command under ``torchrun --nproc_per_node=K -m trainers.image``.
Exit status 2 means bad input (config, dataset, checkpoint, sampler options); the message says what
and where. A sampler chain that diverges, or a training loss that becomes NaN/inf, exits with
status 1 and names the step and a remedy. A training run that fails once started ends its
progress.jsonl with a ``failed`` event holding the message. ``--resume`` with a config that differs
from the run's in a field that decides what is trained (method, data, network, schedule, loss,
optimiser, seed; ``config.RESUME_FREE`` lists what may change) is refused before anything loads: one
line naming the fields, exit status 2, and a ``failed`` event in the run's progress.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ..cli import positive_int


def _non_negative_int(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return n


def _device(pref: str):
    import torch

    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def cmd_train(args) -> int:
    from .config import from_dict, load_config, apply_overrides
    from .run_layout import ckpt_dir
    from .train import make_run_dir, train

    if args.config:
        cfg = load_config(args.config, args.overrides)
    elif args.resume and args.out and ckpt_dir(args.out).is_dir():
        from .checkpoints import load_latest

        ckpt, _ = load_latest(args.out)
        cfg = apply_overrides(from_dict(ckpt["config"]), args.overrides)
    else:
        print("error: --config CONFIG is required (a bundled name such as ddpm_digits, or a "
              "TOML path); only --resume --out RUN_DIR may omit it", file=sys.stderr)
        return 2
    run_dir = make_run_dir(cfg, args.out)
    summary = train(cfg, run_dir, data_dir=args.data_dir, resume=args.resume, quiet=args.quiet,
                    stop_after=args.stop_after)
    if summary["checkpoint"]:
        print(f"run dir: {summary['run_dir']}  step {summary['step']}  "
              f"checkpoint {summary['checkpoint']}", file=sys.stderr)
    return 0


OUT_SUFFIXES = (".png", ".npy", ".npz")


def _sampler_overrides(args) -> dict:
    """The sampler options given on the command line (the others: the run's defaults) and the precision."""
    from ..samplers import options_from_args

    return {**options_from_args(args), "precision": "fp32" if getattr(args, "fp32", False) else "auto"}


def _print_note(note: str) -> None:
    if note:
        print(f"note: {note}", file=sys.stderr)


def cmd_sample(args) -> int:
    from .imageio import save_array, save_chain, save_grid, to_unit
    from .methods import generate
    from .runtime import cpu_threads
    from .train import load_run

    suffix = Path(args.out).suffix.lower()
    if suffix not in OUT_SUFFIXES:
        print(f"error: --out {args.out}: unknown file type {suffix or '(none)'!r}; use .png (a grid), "
              f".npy or .npz (the raw samples, float32 (N, C, H, W) in the data range)", file=sys.stderr)
        return 2
    device = _device(args.device)
    cfg, model, ckpt, path = load_run(args.run, args.ckpt, device, weights=args.weights)
    n_frames = args.frames if args.chain else 0
    t0 = time.perf_counter()
    with cpu_threads(cfg.train.threads if device.type == "cpu" else 0):
        gen = generate(cfg, model, args.n, device, seed=args.seed, sampler=args.sampler,
                       batch_size=args.batch_size, record_frames=n_frames, label=args.label,
                       guidance=args.guidance, **_sampler_overrides(args))
    _print_note(gen.note)
    if suffix == ".png":
        msg = {"grid": str(save_grid(to_unit(gen.x, cfg.data_range), args.out))}
    else:
        msg = {"samples": str(save_array(gen.x, args.out))}
    msg.update({"checkpoint": str(path), "step": int(ckpt["step"]), "n": args.n,
                "sampler": gen.sampler, "nfe": gen.nfe, "weights": args.weights,
                **({"class": args.label, "guidance": args.guidance} if args.label is not None else {}),
                "data_range": list(cfg.data_range),
                "seconds": round(time.perf_counter() - t0, 2)})
    if args.chain:
        msg["chain"] = str(save_chain(to_unit(gen.frames, cfg.data_range), gen.frame_steps, gen.labels,
                                      args.chain))
        msg["frames"] = len(gen.frame_steps)
    if gen.note:
        msg["note"] = gen.note
    print(json.dumps(msg))
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_run, format_report

    report = evaluate_run(args.run, data_dir=args.data_dir, n=args.n, step=args.ckpt,
                          device=_device(args.device), seed=args.seed,
                          batch_size=args.batch_size, sampler=args.sampler,
                          weights=args.weights, bpd_n=args.bpd_n, record=not args.no_record,
                          decoder_variance=args.decoder_variance, label=args.label,
                          guidance=args.guidance, **_sampler_overrides(args))
    _print_note(report.get("note", ""))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_configs(args) -> int:
    from .config import CONFIG_DIR, available_configs, load_config

    for name in available_configs():
        cfg = load_config(name)
        print(f"{name:16s} {cfg.method:5s} {cfg.data.dataset:8s} {cfg.data.image_size}px "
              f"batch {cfg.train.batch_size} steps {cfg.train.n_steps}")
    print(f"(in {CONFIG_DIR})")
    return 0


def add_sampler_options(p: argparse.ArgumentParser) -> None:
    """--sampler, every registered sampler's options (trainers.samplers.add_sampler_arguments),
    --weights and --fp32."""
    from ..samplers import SAMPLERS, add_sampler_arguments

    g = p.add_argument_group("sampler options", "each sampler reads its own; unset, they are the run's (its "
                             "DDPM variance and clipping; annealed Langevin on an NCSN run: its ε, T, L and "
                             "final step), else the sampler's defaults")
    g.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                   help="any registry sampler (every sampler works on every run); default: ddpm "
                        "for DDPM runs, annealed (Langevin) for NCSN runs")
    add_sampler_arguments(g)
    p.add_argument("--weights", choices=["ema", "raw"], default="ema",
                   help="the checkpoint's EMA weights (default) or its raw training weights")
    p.add_argument("--fp32", action="store_true",
                   help="sample in fp32 (default: bf16 autocast when the run trained in bf16)")


def add_class_options(p: argparse.ArgumentParser) -> None:
    """--class and --guidance: a class-conditional run (model.n_classes > 0) sampled for one class,
    with classifier-free guidance."""
    g = p.add_argument_group("class and guidance", "class-conditional runs (model.n_classes > 0, e.g. "
                             "--config ddpm_digits_cond)")
    g.add_argument("--class", dest="label", type=_non_negative_int, default=None, metavar="K",
                   help="draw samples of class K (0 … n_classes − 1); default: unconditional (the null class)")
    g.add_argument("--guidance", type=float, default=0.0, metavar="W",
                   help="classifier-free guidance weight w: (1 + w) s(x|c) − w s(x); 0 (default) is the "
                        "conditional model, −1 the unconditional one (diffusers' guidance_scale = 1 + w); "
                        "needs --class")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainers.image", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a DDPM or NCSN model")
    t.add_argument("--config", help="bundled config name (e.g. ddpm_digits) or a TOML path")
    t.add_argument("--data-dir", help="dataset folder (overrides data.data_dir)")
    t.add_argument("--out", help="run directory (default runs/<name>-<time>)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    t.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. train.lr=1e-3 model.ch=64 n_steps=500")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="draw samples with the EMA (or --weights raw) weights")
    s.add_argument("--run", required=True, help="run directory")
    s.add_argument("--ckpt", type=int, default=None, help="checkpoint step (default newest)")
    s.add_argument("--n", type=int, default=64)
    add_sampler_options(s)
    add_class_options(s)
    s.add_argument("--out", required=True,
                   help="grid.png (a grid of the samples), or .npy / .npz (the raw samples: float32 "
                        "(N, C, H, W) in the run's data range; .npz holds them as 'samples')")
    s.add_argument("--chain", default=None,
                   help="also save the chain x_T -> x_0: a .npz file or a folder of PNG frames")
    s.add_argument("--frames", type=int, default=50, help="about how many chain frames")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--device", default="auto")
    s.set_defaults(fn=cmd_sample)

    e = sub.add_parser("evaluate", help="the digits / MNIST judge, bits/dim (DDPM), FID/IS (when "
                                        "available)")
    e.add_argument("--run", required=True)
    e.add_argument("--data-dir", default=None,
                   help="dataset folder (default: the run's data.data_dir); MNIST runs need the "
                        "training labels (train-labels-idx1-ubyte) there for the judge, and use the "
                        "t10k files as held-out digits when present")
    e.add_argument("--ckpt", type=int, default=None)
    e.add_argument("--n", type=positive_int, default=None,
                   help="samples (default 500 for digits, 1000 for the MNIST judge, 10000 with FID)")
    e.add_argument("--bpd-n", type=_non_negative_int, default=256,
                   help="held-out images for bits/dim of DDPM runs (each costs T network "
                        "evaluations; 0 skips it)")
    e.add_argument("--decoder-variance", choices=["reference", "beta1"], default="reference",
                   help="bits/dim decoder variance: reference = β̃₂ as Ho et al.'s code (default; comparable "
                        "with the papers' figures), beta1 = β₁")
    e.add_argument("--no-record", action="store_true",
                   help="do not append this evaluation to RUN_DIR/eval.jsonl")
    add_sampler_options(e)
    add_class_options(e)
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--batch-size", type=int, default=500)
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.set_defaults(fn=cmd_evaluate)

    c = sub.add_parser("configs", help="list the bundled configs")
    c.set_defaults(fn=cmd_configs)
    return p


class _SurvivingStream:
    """A text stream whose writes never fail: once its pipe is gone (the explorer that started the
    run closed and left it running in the background) output goes to /dev/null, and training goes on."""

    def __init__(self, stream):
        self._s = stream

    def _drop(self):
        self._s = open(os.devnull, "w")

    def write(self, text):
        try:
            return self._s.write(text)
        except (OSError, ValueError):
            self._drop()
            return len(text)

    def flush(self):
        try:
            self._s.flush()
        except (OSError, ValueError):
            self._drop()

    def __getattr__(self, name):
        return getattr(self._s, name)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.fn is not cmd_train:
        return _run(args)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _SurvivingStream(sys.stdout), _SurvivingStream(sys.stderr)
    try:
        return _run(args)
    finally:
        sys.stdout, sys.stderr = saved


def _run(args) -> int:
    from .checkpoints import CheckpointError
    from .config import ConfigError
    from .datasets import DatasetError
    from .train import RunDirError
    from ..samplers import DivergenceError

    try:
        return args.fn(args)
    except (ConfigError, DatasetError, CheckpointError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (DivergenceError, FloatingPointError) as e:      # a chain or the training loss blew up
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; resume with --resume (from the newest checkpoint)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
