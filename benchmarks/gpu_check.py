"""The one command to run the first time a GPU is present: does the image trainer keep it busy?

    python benchmarks/gpu_check.py --json gpu_check.json            # on the GPU machine (< 8 min, H100)
    python benchmarks/gpu_check.py --tiny --json /tmp/tiny.json       # CPU, tiny configs (CI, < 1 min)

Training: each CIFAR-10 config (ddpm_cifar10, ncsn_cifar10, ncsnv2_cifar10) trains for a few hundred
steps through the real ``trainers.image.train.train()`` (data loading from a CIFAR-10 folder, uint8
batches pinned and copied asynchronously, random flips, loss-per-level logging, the progress log),
in fp32 and bf16, channels_last off and on, and with torch.compile (by default only for
ddpm_cifar10 in bf16: each compile costs about a minute; ``--compile-all`` for the others). It
prints images/s (the median over the logged intervals after the first, which holds cuDNN's
autotuning and compilation), the peak GPU memory and the host synchronisations per training step
that ``torch.cuda.set_sync_debug_mode`` reports (expected: 0 after the first logged interval;
logging is outside the count). Eager training runs first, then sampling, then the compiled runs;
nothing new starts after ``--budget-s`` seconds (400), so the whole check stays under 8 minutes.
Without ``--data-dir`` a synthetic CIFAR-10 folder (random images in the python-pickle format) is
written to a temporary folder: images/s does not depend on the pixels.

Sampling: 256 CIFAR-10 images with the 1000-step DDPM ancestral sampler and DDIM 50 (bf16 autocast
and fp32), and annealed Langevin of the NCSN configs (bf16), each timed to the last sample; the
syncs per step are counted too (expected: 0 except the divergence check every 25 steps).
DPM-Solver++ is not in the sampler registry, so it is reported as absent.

``--tiny`` runs the same code on the CPU with tiny versions of the configs (8x8 images, 8 channels),
a few steps each and no torch.compile, counting host reads per step with ``hostreads.StepProbe``
(every ``.item()``/``float()``/``bool()``/``.tolist()`` and data-dependent op a GPU would sync on).

The JSON (``--json PATH``): {"device", "torch", "tiny", "train": [{"config", "precision",
"channels_last", "compile", "batch", "steps", "images_per_s", "images_per_s_intervals",
"peak_mem_GiB", "syncs_per_step": {"steps", "total", "max_per_step", "what"},
"syncs_after_first_interval"}, ...],
"sample": [{"config", "sampler", "steps", "n", "precision", "seconds", "syncs_per_step",
"syncs_outside_checks"}, ...], "dpm_solver": "...", "all_sync_counts_zero": bool,
"targets": {...}, "skipped": [...]}.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.atomic import atomic_write_text  # noqa: E402
from trainers.image import progress as events  # noqa: E402
from trainers.image.config import load_config  # noqa: E402
from trainers.image.hostreads import CUDASyncProbe, StepProbe  # noqa: E402
from trainers.image.methods import CHECK_EVERY, generate  # noqa: E402
from trainers.image.train import train  # noqa: E402
from trainers.image.unet import build_net  # noqa: E402
from trainers.samplers import SAMPLERS  # noqa: E402

CONFIGS = ("ddpm_cifar10", "ncsn_cifar10", "ncsnv2_cifar10")
DPM_SOLVER = "dpmpp-2m"           # DPM-Solver++ 2M's registry name (trainers/samplers/dpmpp_2m.py)
# (precision, channels_last, compile)
VARIANTS = [("fp32", False, False), ("bf16", False, False), ("bf16", True, False),
            ("fp32", True, False), ("bf16", False, True), ("bf16", True, True)]
DEFAULT_COMPILED = {("ddpm_cifar10", "bf16", False)}     # the rest with --compile-all
TARGETS = {"ddpm_paper_tpu_v3_8_images_per_s": 2690, "aim_h100_images_per_s": 4000,
           "aim_256_samples_1000_steps_s": 10.0}
TINY = ["data.image_size=8", "model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1",
        "model.attn_resolutions=4", "model.dropout=0.0", "train.batch_size=8", "ddpm.T=20",
        "ncsn.n_levels=4", "ncsn.steps_per_level=2", "train.threads=1"]


def write_synthetic_cifar(folder: Path, n: int, seed: int = 0) -> Path:
    """A CIFAR-10 python-version folder (data_batch_1, test_batch) of n random 32x32 RGB images."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, count in (("data_batch_1", n), ("test_batch", min(n, 256))):
        batch = {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, count).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder


def _cuda() -> bool:
    return torch.cuda.is_available()


def train_once(name: str, data_dir: Path, out: Path, precision: str, channels_last: bool,
               compile_: bool, steps: int, log_every: int, tiny: bool) -> dict:
    """One short real training run; images/s from its progress log, syncs per step from a probe."""
    over = (TINY if tiny else []) + [
        f"train.precision={precision}", f"train.channels_last={str(channels_last).lower()}",
        f"train.compile={str(compile_).lower()}", f"train.n_steps={steps + 1}",
        f"train.log_every={log_every}", "train.ckpt_every=0", "train.sample_every=0",
        f"train.device={'cpu' if tiny or not _cuda() else 'cuda'}", "data.num_workers=0"]
    cfg = load_config(name, over)
    probe = CUDASyncProbe() if (_cuda() and not tiny) else StepProbe()
    if compile_:
        torch._dynamo.reset()
    if _cuda() and not tiny:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    train(cfg, out, data_dir=str(data_dir), quiet=True, stop_after=steps, probe=probe)
    wall = time.perf_counter() - t0
    lines = [r for r in events.read_records(out / "progress.jsonl") if "loss" in r]
    ips = [r["images_per_s"] for r in lines]
    later = ips[1:] or ips
    row = {"config": name, "precision": precision, "channels_last": channels_last,
           "compile": compile_, "batch": cfg.train.batch_size, "steps": steps,
           "images_per_s": round(statistics.median(later), 1) if later else None,
           "images_per_s_intervals": [round(v, 1) for v in ips], "wall_s": round(wall, 1),
           "syncs_per_step": probe.summary().get("train", {"steps": 0, "total": 0,
                                                           "max_per_step": 0, "what": {}})}
    # the first logged interval holds cuDNN's autotuning and compilation, which may synchronise
    row["syncs_after_first_interval"] = sum(probe.counts.get("train", [])[log_every:])
    if _cuda() and not tiny:
        row["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def sample_once(name: str, sampler: str, n: int, precision: str, tiny: bool, check_every: int,
                **overrides) -> dict:
    """Time n samples of `sampler` on a freshly built network of config `name` (the time does not
    depend on the weights) and count the host syncs of each step."""
    cfg = load_config(name, (TINY if tiny else []) + [f"train.precision={precision}"])
    device = torch.device("cuda" if _cuda() and not tiny else "cpu")
    model = build_net(cfg).to(device).eval().requires_grad_(False)
    probe = CUDASyncProbe() if device.type == "cuda" else StepProbe()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    gen = generate(cfg, model, n, device, seed=0, sampler=sampler, batch_size=n,
                   precision=precision, probe=probe, check_every=check_every, **overrides)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    counts = probe.counts.get("sample", [])
    steps = len(counts)
    outside = sum(c for k, c in enumerate(counts)
                  if (k + 1) % check_every and k + 1 != steps)
    return {"config": name, "sampler": sampler, "steps": steps, "nfe": gen.nfe, "n": n,
            "precision": precision, "seconds": round(seconds, 3),
            "finite": bool(torch.isfinite(gen.x).all()),
            "syncs_per_step": probe.summary().get("sample", {}), "syncs_outside_checks": outside,
            "check_every": check_every}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="CPU, tiny configs, a few steps (CI)")
    p.add_argument("--data-dir", help="a CIFAR-10 folder (default: a synthetic one in a temp folder)")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--configs", nargs="*", default=list(CONFIGS))
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default 200; tiny 6)")
    p.add_argument("--log-every", type=int, default=None, help="default 40 (tiny 2)")
    p.add_argument("--compile-all", action="store_true",
                   help="compile every config in bf16, channels_last off and on (default: "
                        "ddpm_cifar10 bf16 only)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--n-samples", type=int, default=None, help="default 256 (tiny 4)")
    p.add_argument("--budget-s", type=float, default=400.0,
                   help="skip what would start after this many seconds (default 400)")
    args = p.parse_args(argv)
    tiny = args.tiny
    if not tiny and not _cuda():
        print("# no CUDA device: running the --tiny check on the CPU instead", flush=True)
        tiny = True
    if tiny:
        torch.set_num_threads(1)          # CI's few shared cores: one intra-op thread, no spinning
    steps = args.steps or (6 if tiny else 200)
    log_every = args.log_every or (2 if tiny else 40)
    n_samples = args.n_samples or (4 if tiny else 256)
    t_start = time.perf_counter()
    dev_name = torch.cuda.get_device_name() if _cuda() and not tiny else "cpu"
    print(f"# gpu_check on {dev_name}, torch {torch.__version__}{' (tiny)' if tiny else ''}", flush=True)
    result = {"device": dev_name, "torch": torch.__version__, "tiny": tiny, "train": [],
              "sample": [], "skipped": [], "targets": TARGETS,
              "dpm_solver": ("present" if DPM_SOLVER in SAMPLERS
                             else f"absent: no {DPM_SOLVER!r} (DPM-Solver++) in trainers.samplers.SAMPLERS")}
    if _cuda() and not tiny:
        torch.backends.cuda.matmul.allow_tf32 = True       # fp32 runs as PyTorch users run them
        torch.backends.cudnn.allow_tf32 = True

    def over_budget(what: str) -> bool:
        if time.perf_counter() - t_start > args.budget_s:
            result["skipped"].append(f"{what} (past the {args.budget_s:.0f} s budget)")
            print(f"# skipped {what}: past the {args.budget_s:.0f} s budget", flush=True)
            return True
        return False

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        tmp = Path(tmp)
        data_dir = Path(args.data_dir) if args.data_dir else write_synthetic_cifar(
            tmp / "cifar", 64 if tiny else 5000)
        trains = [(name, v) for name in args.configs for v in VARIANTS]
        trains = [(name, (precision, cl, comp)) for name, (precision, cl, comp) in trains
                  if not (comp and (tiny or args.no_compile
                                    or ((name, precision, cl) not in DEFAULT_COMPILED
                                        and not args.compile_all)))
                  and not (tiny and name != CONFIGS[0] and (cl or precision == "fp32"))]
        ddim = {"nfe": 5 if tiny else 50}
        check_every = 5 if tiny else CHECK_EVERY          # tiny chains are short: read every 5
        samples = []
        if "ddpm_cifar10" in args.configs:
            samples += [("ddpm_cifar10", "ddpm", "bf16", {}), ("ddpm_cifar10", "ddpm", "fp32", {}),
                        ("ddpm_cifar10", "ddim", "bf16", ddim), ("ddpm_cifar10", "ddim", "fp32", ddim)]
        samples += [(c, "annealed", "bf16", {}) for c in args.configs if c.startswith("ncsn")]
        # priority order, for the budget: eager training, sampling, then the compiled runs (a
        # minute of compilation each)
        tasks = ([("train", t) for t in trains if not t[1][2]] + [("sample", t) for t in samples]
                 + [("train", t) for t in trains if t[1][2]])
        for k, (kind, task) in enumerate(tasks):
            if kind == "train":
                name, (precision, cl, comp) = task
                what = f"train {name} {precision}{' channels_last' if cl else ''}{' compile' if comp else ''}"
                if over_budget(what):
                    continue
                row = train_once(name, data_dir, tmp / f"run{k}", precision, cl, comp, steps,
                                 log_every, tiny)
                result["train"].append(row)
                s = row["syncs_per_step"]
                mem = f"  peak {row['peak_mem_GiB']:.2f} GiB" if "peak_mem_GiB" in row else ""
                print(f"{what:52s} {row['images_per_s'] or 0:9.1f} img/s{mem}  syncs/step max "
                      f"{s['max_per_step']} (total {s['total']} over {s['steps']} steps, "
                      f"{row['syncs_after_first_interval']} after the first {log_every})"
                      f"{'  ' + str(s['what']) if s['total'] else ''}", flush=True)
            else:
                name, sampler, precision, over = task
                what = f"sample {name} {sampler} {precision}"
                if over_budget(what):
                    continue
                row = sample_once(name, sampler, n_samples, precision, tiny, check_every, **over)
                result["sample"].append(row)
                print(f"{what:52s} {row['n']} samples x {row['steps']} steps: {row['seconds']:8.2f} s"
                      f"  syncs outside the every-{check_every} check: {row['syncs_outside_checks']}",
                      flush=True)
            gc.collect()
            if _cuda():
                torch.cuda.empty_cache()
    result["all_sync_counts_zero"] = (all(r["syncs_after_first_interval"] == 0 for r in result["train"])
                                      and all(r["syncs_outside_checks"] == 0 for r in result["sample"]))
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    print(f"# all sync counts zero: {result['all_sync_counts_zero']}; {result['seconds']} s; "
          f"DPM-Solver++: {result['dpm_solver']}", flush=True)
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
