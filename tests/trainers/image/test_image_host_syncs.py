"""No host sync inside a training step or a sampler step (issue #24), counted on the CPU.

``hostreads.StepProbe`` counts, per step, every read of a tensor value from Python (``.item()``,
``float``, ``bool``, ``.tolist()``), every data-dependent op and every tensor built from Python
data: what ``torch.cuda.set_sync_debug_mode("error")`` would stop on a GPU. Zero per training step
(logging is outside the count) and zero per sampler step except the periodic divergence check.
Each verdict has a negative control: a step that does read is counted.
"""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.image import train as train_mod
from trainers.image.config import load_config
from trainers.image.hostreads import HostReads, StepProbe
from trainers.image.methods import generate, image_sampler
from trainers.image.unet import build_net
from trainers.samplers import DivergenceError

ROOT = Path(__file__).resolve().parents[3]
TINY = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "model.dropout=0.0", "train.batch_size=8", "train.warmup=2", "train.threads=1",
        "train.ckpt_every=0", "train.sample_every=0", "train.log_every=3", "ddpm.T=20",
        "ncsn.n_levels=4", "ncsn.steps_per_level=3"]


def cifar_folder(root: Path, n: int = 24) -> Path:
    """A CIFAR-10 python-format folder of n random 32x32 images (uint8 batches in training)."""
    root.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).integers(0, 256, (n, 3072), dtype=np.uint8)
    with open(root / "data_batch_1", "wb") as f:
        pickle.dump({b"data": data, b"labels": [0] * n}, f)
    return root


def cifar_cfg(method: str, *extra: str):
    return load_config(f"{method}_cifar10", TINY + ["data.image_size=8", "train.device=cpu",
                                                    "train.n_steps=7", *extra])


def test_the_counter_sees_what_a_gpu_would_sync_on():
    x = torch.randn(5)
    cases = [lambda: x.sum().item(), lambda: float(x[0]), lambda: bool(x[0] > 0),
             lambda: 1 if (x > 0).any() else 0, lambda: x.tolist(), lambda: x[x > 0],
             lambda: torch.as_tensor(0.5), lambda: torch.equal(x, x), lambda: x.nonzero()]
    for f in cases:
        with HostReads() as r:
            f()
        assert r.total >= 1, f
    with HostReads() as r:                 # device-side work only: nothing read back
        y = torch.where(x > 0, x * 2, torch.full_like(x, 0.5)).cumsum(0)
        torch.randn(3, generator=torch.Generator().manual_seed(1))
    assert r.total == 0 and y.shape == (5,)


@pytest.mark.parametrize("method, precision", [("ddpm", "fp32"), ("ncsn", "bf16")])
def test_a_training_step_reads_nothing_back(tmp_path, method, precision):
    """The real train() loop on uint8 CIFAR batches with random flips: zero host reads in each of
    its 7 steps (logging every 3 steps, outside the count); the run still logs its losses."""
    cfg = cifar_cfg(method, f"train.precision={precision}", "data.random_flip=true")
    probe = StepProbe()
    out = train_mod.train(cfg, tmp_path / "run", data_dir=str(cifar_folder(tmp_path / "c")),
                          quiet=True, probe=probe)
    assert out["finished"] and len(out["losses"]) == 3
    assert probe.counts["train"] == [0] * 7, probe.what["train"]


def test_negative_control_a_step_that_reads_is_counted(tmp_path, monkeypatch):
    real = train_mod.TrainCore.step

    def step(self, *a, **k):
        loss, g = real(self, *a, **k)
        float(loss.detach())                # what the logging does, but inside the step
        return loss, g

    monkeypatch.setattr(train_mod.TrainCore, "step", step)
    probe = StepProbe()
    train_mod.train(cifar_cfg("ddpm", "train.n_steps=3"), tmp_path / "run",
                    data_dir=str(cifar_folder(tmp_path / "c")), quiet=True, probe=probe)
    assert probe.counts["train"] == [1, 1, 1]


def test_flips_are_drawn_on_the_device_and_follow_the_step(tmp_path):
    cfg = cifar_cfg("ddpm", "data.random_flip=true")
    x = torch.arange(16 * 3 * 8 * 8, dtype=torch.float32).reshape(16, 3, 8, 8).remainder(256).to(torch.uint8)
    a = train_mod.prepare_batch(x, cfg, 5, 0, torch.device("cpu"))
    b = train_mod.prepare_batch(x, cfg, 5, 0, torch.device("cpu"), torch.Generator())
    c = train_mod.prepare_batch(x, cfg, 6, 0, torch.device("cpu"))
    assert torch.equal(a, b) and not torch.equal(a, c)            # a function of (seed, rank, step)
    ref = x.float() / 255 * 2 - 1
    flipped = [bool(torch.equal(a[i], ref[i].flip(-1))) for i in range(16)]
    assert all(flipped[i] or torch.equal(a[i], ref[i]) for i in range(16))
    assert 0 < sum(flipped) < 16


@pytest.mark.parametrize("method, sampler, extra", [("ddpm", "ddpm", {}), ("ddpm", "ddim", {"nfe": 8}),
                                                     ("ncsn", "annealed", {}), ("ddpm", "pf-ode", {"nfe": 9})])
def test_a_sampler_step_reads_only_at_its_periodic_check(method, sampler, extra):
    """DDPM / DDIM / PF-ODE (Heun, σ-queries of an ε-network) on a DDPM run, annealed Langevin on an
    NCSN run, in bf16 autocast: one read at every 4th step (the divergence verdict) and at the last
    step, none elsewhere."""
    cfg = load_config(f"{method}_digits", TINY + ["train.precision=bf16"])
    net = build_net(cfg).eval()
    probe = StepProbe()
    gen = generate(cfg, net, 3, "cpu", sampler=sampler, probe=probe, check_every=4, **extra)
    counts = probe.counts["sample"]
    n = len(counts)
    assert n == {"ddpm": 20, "ddim": 8, "annealed": 12, "pf-ode": 5}[sampler]
    expected = [1 if (k + 1) % 4 == 0 or k + 1 == n else 0 for k in range(n)]
    assert counts == expected, probe.what["sample"]
    assert torch.isfinite(gen.x).all()
    # negative control: checking every step reads every step
    probe1 = StepProbe()
    generate(cfg, net, 3, "cpu", sampler=sampler, probe=probe1, check_every=1, **extra)
    assert probe1.counts["sample"] == [1] * n


def test_a_diverging_chain_is_still_stopped_and_names_its_first_bad_step():
    cfg = load_config("ddpm_digits", TINY)
    net = build_net(cfg).eval()
    calls = []

    def nan_after_two(x, t):               # finite for two steps, then NaN
        calls.append(1)
        out = net(x, t)
        return out if len(calls) <= 2 else out * float("nan")

    s, _ = image_sampler(cfg, nan_after_two, "ddim", nfe=12)
    s.check_every = 5
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(DivergenceError, match="DDIM diverged at step 2") as e:
        for k in range(s.n_steps):
            x = s.step(x, k).x
    assert e.value.step == 2 and len(calls) == 5        # found at the read after step 4
    calls.clear()
    with pytest.raises(DivergenceError, match="diverged at step 2"):
        generate(cfg, lambda x, t: nan_after_two(x, t), 2, "cpu", sampler="ddim", nfe=12,
                 check_every=100)                   # the last step's read still catches it


@pytest.mark.slow
def test_gpu_check_tiny_runs_on_the_cpu_and_writes_its_json(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--tiny", "--json", str(out),
                           "--configs", "ddpm_cifar10", "ncsnv2_cifar10"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["tiny"] and r["all_sync_counts_zero"] is True and not r["skipped"]
    assert {"train", "sample", "targets", "dpm_solver", "device"} <= set(r)
    assert r["dpm_solver"] == "present"                 # DPM-Solver++ 2M is registered as "dpmpp-2m"
    variants = {(t["config"], t["precision"], t["channels_last"]) for t in r["train"]}
    assert {("ddpm_cifar10", "fp32", False), ("ddpm_cifar10", "bf16", True),
            ("ncsnv2_cifar10", "bf16", False)} <= variants
    for t in r["train"]:
        assert t["images_per_s"] > 0 and t["syncs_per_step"]["total"] == 0
        assert t["syncs_after_first_interval"] == 0
        assert t["syncs_per_step"]["steps"] == t["steps"]
    samplers = {(s["config"], s["sampler"], s["precision"]) for s in r["sample"]}
    assert {("ddpm_cifar10", "ddpm", "bf16"), ("ddpm_cifar10", "ddim", "fp32"),
            ("ncsnv2_cifar10", "annealed", "bf16")} <= samplers
    for s in r["sample"]:
        assert s["seconds"] > 0 and s["syncs_outside_checks"] == 0 and s["finite"]
        assert 0 < s["syncs_per_step"]["total"] <= s["steps"] // s["check_every"] + 1


def test_the_cuda_probe_counts_the_sync_debug_warnings(monkeypatch):
    """What CUDASyncProbe does on a GPU, with torch.cuda.set_sync_debug_mode stubbed: the warnings
    that mode raises inside a step are counted for that step, other warnings are not."""
    import warnings

    from trainers.image.hostreads import CUDASyncProbe

    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    probe = CUDASyncProbe()
    for n in (0, 2):
        with probe.step("train"):
            warnings.warn("an unrelated warning")
            for _ in range(n):
                warnings.warn("called a synchronizing CUDA operation")
    assert probe.counts["train"] == [0, 2] and modes == ["warn", "default"] * 2
    assert probe.summary()["train"]["total"] == 2
