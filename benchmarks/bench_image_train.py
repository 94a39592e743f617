"""Training throughput (images/s) of every bundled image config, on the CPU and on CUDA.

    python benchmarks/bench_image_train.py                    # all configs, CPU (+ CUDA if present)
    python benchmarks/bench_image_train.py --configs ddpm_cifar10 --device cuda --json

It times ``trainers.image.train.TrainCore.step`` (the real step: loss, backward, clip, Adam,
EMA) on synthetic batches of the config's shape, already on the device: data loading, the
batch's copy and conversion, the flips and the loss-per-level logging are excluded, so its
images/s overstate real training. ``benchmarks/gpu_check.py`` times the real ``train()`` path
(and counts its host syncs); this script is the quick look at the step alone. On the CPU the
big configs run with a small batch (``--cpu-batch``, default 8; the digits configs keep their
own 128) and that batch is printed; images/s at batch 128 would be somewhat higher.
On CUDA each config runs at its own batch (128) with bf16 autocast (``--channels-last`` for that
layout), without and with ``torch.compile``, and reports the peak GPU memory.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.image.config import available_configs, load_config  # noqa: E402
from trainers.image.train import TrainCore  # noqa: E402
from trainers.image.unet import count_params  # noqa: E402


def bench(name: str, device: torch.device, batch: int | None, steps: int, warmup: int,
          compile_: bool = False, precision: str = "bf16", channels_last: bool = False) -> dict:
    over = [f"train.compile={str(compile_).lower()}", f"train.precision={precision}",
            f"train.channels_last={str(channels_last).lower()}"]
    if batch:
        over.append(f"train.batch_size={batch}")
    cfg = load_config(name, over)
    torch.manual_seed(0)
    core = TrainCore(cfg, device)
    b = cfg.train.batch_size
    x = torch.rand(b, cfg.data.channels, cfg.data.image_size, cfg.data.image_size, device=device)
    lo, hi = cfg.data_range
    x = x * (hi - lo) + lo
    g = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def timed(n: int) -> float:
        """Seconds for n real training steps, waiting for the device to finish."""
        t = time.perf_counter()
        for _ in range(n):
            loss, _ = core.step(x, g, cfg.train.lr)
        float(loss.detach())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    t_compile = timed(warmup)      # includes torch.compile's compilation when enabled
    dt = timed(steps)
    out = {"config": name, "device": str(device), "batch": b, "params_M": round(count_params(core.model) / 1e6, 2),
           "images_per_s": round(b * steps / dt, 1), "ms_per_step": round(1000 * dt / steps, 1),
           "steps_timed": steps, "warmup_s": round(t_compile, 1)}
    if device.type == "cuda":
        out.update(precision=precision if core.use_amp else "fp32", compile=compile_,
                   channels_last=core.channels_last,
                   peak_mem_GiB=round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
                   gpu=torch.cuda.get_device_name(device))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=None, help="default: all bundled configs")
    p.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    p.add_argument("--cpu-batch", type=int, default=8, help="CPU batch for the non-digits configs")
    p.add_argument("--cpu-steps", type=int, default=3)
    p.add_argument("--cuda-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--no-compile", action="store_true", help="CUDA: skip the torch.compile runs")
    p.add_argument("--channels-last", action="store_true", help="CUDA: channels_last weights and batches")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.configs or available_configs()
    rows = []

    def emit(r):
        rows.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            extra = ""
            if "peak_mem_GiB" in r:
                extra = (f"  {r['precision']}{' +compile' if r['compile'] else ''}"
                         f"  peak {r['peak_mem_GiB']} GiB  [{r['gpu']}]")
            print(f"{r['config']:14s} {r['device']:6s} batch {r['batch']:4d}  "
                  f"{r['params_M']:6.2f}M params  {r['images_per_s']:9.1f} img/s  "
                  f"{r['ms_per_step']:8.1f} ms/step{extra}", flush=True)

    if args.device in ("all", "cpu"):
        print(f"# CPU, {torch.get_num_threads()} thread(s), fp32, synthetic batches; non-digits "
              f"configs at batch {args.cpu_batch} (not their 128)", flush=True)
        for n in names:
            small = None if n.endswith("_digits") else args.cpu_batch
            emit(bench(n, torch.device("cpu"), small, args.cpu_steps, warmup=1, precision="fp32"))
    if args.device in ("all", "cuda"):
        if not torch.cuda.is_available():
            print("# CUDA: no GPU available here; skipped", flush=True)
        else:
            dev = torch.device("cuda")
            torch.backends.cudnn.benchmark = True
            cl = args.channels_last
            print(f"# CUDA {torch.cuda.get_device_name(dev)}: bf16 autocast"
                  f"{' + channels_last' if cl else ''}, config batch, synthetic batches", flush=True)
            for n in names:
                emit(bench(n, dev, None, args.cuda_steps, warmup=5, channels_last=cl))
                if not args.no_compile:
                    emit(bench(n, dev, None, args.cuda_steps, warmup=10, compile_=True, channels_last=cl))
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
