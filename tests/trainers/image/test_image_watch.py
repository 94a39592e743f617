"""Watching an image run (issue #12): EMA warm-up, which weights a grid used, cheap preview grids,
the loss per noise level in progress.jsonl, and a stop honoured between sampler steps."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainers.image import progress as events
from trainers.image.__main__ import main
from trainers.image.checkpoints import load_latest
from trainers.image.config import load_config, to_toml
from trainers.image.methods import image_method
from trainers.image.train import ema_decay_at, train

ROOT = Path(__file__).resolve().parents[3]
TINY = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "train.batch_size=16", "train.warmup=3", "train.log_every=2", "train.n_grid=4",
        "train.threads=1"]


def tiny(method="ddpm", *extra):
    more = ["ddpm.T=10"] if method == "ddpm" else ["ncsn.n_levels=3", "ncsn.steps_per_level=3"]
    return load_config(f"{method}_digits", TINY + more + list(extra))


def records(run):
    return events.read_records(run / "progress.jsonl")


def test_ema_warm_up_is_on_by_default_recorded_and_follows_the_formula():
    cfg = tiny()
    assert cfg.train.ema_warmup and "ema_warmup = true" in to_toml(cfg)
    assert ema_decay_at(cfg, 0) == pytest.approx(0.1)
    assert ema_decay_at(cfg, 8) == pytest.approx(0.5)
    assert ema_decay_at(cfg, 10**7) == cfg.train.ema_decay          # capped at train.ema_decay
    assert ema_decay_at(tiny("ddpm", "train.ema_warmup=false"), 0) == cfg.train.ema_decay


def test_resume_with_ema_warm_up_gives_exactly_the_uninterrupted_weights(tmp_path):
    over = ["train.n_steps=6", "train.ckpt_every=3", "train.sample_every=0"]
    cfg = tiny("ddpm", *over)
    train(cfg, tmp_path / "a", quiet=True)
    train(cfg, tmp_path / "b", quiet=True, stop_after=3)
    train(cfg, tmp_path / "b", quiet=True, resume=True)
    a, b = load_latest(tmp_path / "a")[0], load_latest(tmp_path / "b")[0]
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    # the warm-up changes the average: without it the EMA stays near the initialisation
    train(tiny("ddpm", *over, "train.ema_warmup=false"), tmp_path / "c", quiet=True)
    c = load_latest(tmp_path / "c")[0]
    k = next(k for k in a["ema"] if k.endswith("weight"))
    assert torch.equal(a["model"][k], c["model"][k])                # the EMA does not feed back
    # after 6 steps the warm EMA sits near the weights, the plain one near the initialisation
    assert (a["ema"][k] - a["model"][k]).norm() < (c["ema"][k] - c["model"][k]).norm()


@pytest.mark.parametrize("method", ["ddpm", "ncsn"])
def test_loss_per_noise_level_is_logged_every_interval(tmp_path, method):
    cfg = tiny(method, "train.n_steps=4", "train.ckpt_every=0", "train.sample_every=0")
    train(cfg, tmp_path / "r", quiet=True)
    lines = [r for r in records(tmp_path / "r") if "loss" in r]
    assert [r["step"] for r in lines] == [2, 4]
    for r in lines:
        ll = r["level_loss"]
        assert ll["level"] == ("t" if method == "ddpm" else "sigma")
        assert len(ll["at"]) == len(ll["loss"])
        seen = [v for v in ll["loss"] if v is not None]
        assert seen and all(v > 0 for v in seen)
    at = lines[0]["level_loss"]["at"]
    if method == "ddpm":
        assert at == [0.5 + i for i in range(10)]                    # T = 10: one bin per t
    else:
        assert at == pytest.approx(sorted(image_method(cfg).noise_levels().tolist()))


def test_preview_grids_use_the_configured_sampler_and_say_so(tmp_path):
    cfg = tiny("ddpm", "train.n_steps=2", "train.ckpt_every=2", "train.sample_every=2",
               "train.preview_nfe=5")
    assert cfg.train.preview_sampler == "ddim"                      # the bundled DDPM default
    train(cfg, tmp_path / "r", quiet=True)
    [ev] = [r for r in records(tmp_path / "r") if r.get("event") == events.SAMPLES]
    assert ev["sampler"] == "ddim" and ev["nfe"] == 5 and ev["weights"] == "ema"
    assert load_config("ddpm_digits").train.preview_nfe == 50
    assert load_config("ncsn_digits").train.preview_sampler == "annealed"


def test_sample_takes_weights_raw_or_ema_and_says_which(tmp_path, capsys):
    run = tmp_path / "r"
    train(tiny("ddpm", "train.n_steps=2", "train.ckpt_every=2", "train.sample_every=0"), run, quiet=True)
    capsys.readouterr()
    outs = {}
    for w in ("ema", "raw"):
        npy = tmp_path / f"{w}.npy"
        assert main(["sample", "--run", str(run), "--n", "3", "--out", str(npy), "--weights", w,
                     "--device", "cpu"]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["weights"] == w
        import numpy as np
        outs[w] = np.load(npy)
    assert not (outs["ema"] == outs["raw"]).all()                   # same seed, other weights


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_stop_during_a_preview_grid_ends_the_run_with_a_checkpoint(tmp_path):
    """SIGTERM while a slow grid (full 1000-step DDPM chain) is being drawn: the sampler stops
    between two steps, the step is checkpointed and the log ends with 'stopped'."""
    run, err_path = tmp_path / "run", tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "trainers.image", "train", "--config", "ddpm_digits", "--out",
           str(run), "--quiet", "train.n_steps=100000", *TINY, "ddpm.T=1000",
           "train.sample_every=3", "train.ckpt_every=0", "train.n_grid=64",
           "train.preview_sampler=ddpm", "train.preview_nfe=1000"]
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and "drawing a preview grid" not in err_path.read_text():
            assert proc.poll() is None, err_path.read_text()
            time.sleep(0.05)
        time.sleep(0.3)                                  # well inside the grid's 1000 steps
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"stop during a preview grid: process ended {took:.2f} s after SIGTERM")
    text = err_path.read_text()
    assert proc.returncode == 0, text
    assert "abandoned: a stop was requested" in text
    recs = records(run)
    assert recs[-1]["event"] == events.STOPPED and recs[-1]["step"] == 3
    assert not any(r.get("event") == events.SAMPLES for r in recs)
    assert load_latest(run)[0]["step"] == 3
