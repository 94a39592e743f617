"""Crash safety of image runs (SIGKILL at any moment resumes from the newest good checkpoint; readers
skip a torn last line of progress.jsonl) and bf16 autocast on the CPU."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainers.image import checkpoints as ck
from trainers.image import progress as events
from trainers.image.config import load_config
from trainers.image.evaluate import training_summary
from trainers.image.train import TrainCore, train

ROOT = Path(__file__).resolve().parents[3]
# log and checkpoint every few steps, so random kills land mid-step, mid-checkpoint and mid-line
TINY = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "train.batch_size=16", "train.warmup=3", "train.log_every=1", "train.ckpt_every=3",
        "train.sample_every=0", "train.keep_ckpts=2", "train.threads=1", "ddpm.T=10"]
N_STEPS = 240


def loss_lines(run):
    return [r for r in events.read_records(run / "progress.jsonl") if "loss" in r]


def _launch(run: Path, resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "trainers.image", "train", "--config", "ddpm_digits", "--out", str(run),
            "--quiet", *TINY, f"train.n_steps={N_STEPS}"] + (["--resume"] if resume else [])
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_run_killed_at_random_moments_resumes_to_the_same_end(tmp_path):
    run = tmp_path / "run"
    rng = random.Random(11)
    kills = 0
    for attempt in range(4):
        proc = _launch(run, resume=attempt > 0)
        log = run / "progress.jsonl"
        deadline = time.time() + 120                 # wait until this process is training
        while time.time() < deadline and proc.poll() is None:
            recs = events.read_records(log)
            if recs and recs[-1].get("event") != events.START and any(r.get("event") == events.START for r in recs):
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
        # what a reader sees right after the kill: only whole records, whatever was cut
        assert all(isinstance(r, dict) for r in events.read_records(log))
    assert kills >= 3, "the tiny run finished before it could be killed"
    # simulate the worst moments by hand as well: a torn last line and a half-written checkpoint
    with open(run / "progress.jsonl", "a") as f:
        f.write('{"step": 9999, "loss": 0.')
    (run / "checkpoints").mkdir(exist_ok=True)      # under load every kill may come before the first checkpoint
    (run / "checkpoints" / ".ckpt_99999999.pt.abc.tmp").write_bytes(b"PK\x03")
    assert training_summary(run)["state"] == "running or killed"

    proc = _launch(run, resume=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert not list((run / "checkpoints").glob(".*.tmp"))
    steps = [r["step"] for r in loss_lines(run)]
    assert steps == list(range(1, N_STEPS + 1))            # the log reads as one run
    assert training_summary(run) == {"logged_step": N_STEPS, "last_loss": loss_lines(run)[-1]["loss"],
                                     "total_steps": N_STEPS, "state": "done"}

    # exactly the uninterrupted run: same losses and the same final EMA weights
    cfg = load_config("ddpm_digits", TINY + [f"train.n_steps={N_STEPS}"])
    straight = train(cfg, tmp_path / "straight", quiet=True)
    assert torch.allclose(torch.tensor([r["loss"] for r in loss_lines(run)]),
                          torch.tensor(straight["losses"]), rtol=1e-5, atol=1e-6)
    a, _ = ck.load_latest(run)
    b, _ = ck.load_latest(tmp_path / "straight")
    assert a["step"] == b["step"] == N_STEPS
    for k in a["ema"]:
        assert torch.allclose(a["ema"][k], b["ema"][k], atol=1e-6), k


def test_readers_skip_a_torn_last_line(tmp_path):
    from trainers.image.runs import ProgressTail

    log = tmp_path / "progress.jsonl"
    log.write_text(json.dumps({"event": "start", "step": 0}) + "\n" + json.dumps({"step": 1, "loss": 0.5})
                   + "\n" + '{"step": 2, "lo')
    assert [r.get("step") for r in events.read_records(log)] == [0, 1]
    assert [r.get("step") for r in ProgressTail(log).poll()[0]] == [0, 1]
    # the resumed trainer rewrites the log without the torn line
    events.ProgressLog(log, truncate_after=1).close()
    assert log.read_text().endswith('"loss": 0.5}\n') and len(log.read_text().splitlines()) == 2


def test_bf16_autocast_trains_on_the_cpu(tmp_path):
    cfg = load_config("ddpm_digits", TINY + ["train.precision=bf16", "train.n_steps=4", "train.ckpt_every=0"])
    core = TrainCore(cfg, torch.device("cpu"), log=lambda m: None)
    assert core.use_amp and core.amp_dtype is torch.bfloat16
    seen = set()
    conv = next(m for m in core.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    loss, _ = core.step(x, torch.Generator().manual_seed(0), 1e-3)
    assert seen == {torch.bfloat16} and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in core.model.parameters())     # fp32 master weights
    out = train(cfg, tmp_path / "bf16", quiet=True)
    assert out["finished"] and len(out["losses"]) == 4
    assert all(torch.isfinite(torch.tensor(out["losses"])))
