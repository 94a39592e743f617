"""The training process from outside: stopping it by a signal loses no steps; asking for a GPU it lacks is a clear error."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainers.image import checkpoints as ck

ROOT = Path(__file__).resolve().parents[3]
TINY = ["train.log_every=1", "train.ckpt_every=0", "train.sample_every=0", "train.batch_size=16",
        "model.ch=16", "ddpm.T=50", "train.warmup=5", "train.threads=1"]


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_checkpoints_the_current_step_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainers.image", "train", "--config", "ddpm_digits", "--out", str(run),
           "--quiet", "train.n_steps=100000", *TINY]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(e.get("step", 0) >= 3 and "loss" in e
                                                 for e in _events(run / "progress.jsonl")):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    events = _events(run / "progress.jsonl")
    stopped = [e for e in events if e.get("event") == "stopped"]
    assert len(stopped) == 1 and "stopped by a signal" in err
    step = stopped[0]["step"]
    assert step >= 3 and ck.list_checkpoints(run)[-1][0] == step       # no step lost

    resumed = subprocess.run([sys.executable, "-m", "trainers.image", "train", "--out", str(run), "--resume",
                              "--quiet", f"train.n_steps={step + 2}"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from" in resumed.stderr and f"(step {step})" in resumed.stderr
    assert ck.list_checkpoints(run)[-1][0] == step + 2


def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = subprocess.run([sys.executable, "-m", "trainers.image", "train", "--config", "ddpm_digits", "--out",
                        str(tmp_path / "run"), "--quiet", "train.device=cuda", *TINY, "train.n_steps=2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert "has no CUDA device" in lines[-1] and "train.device=auto" in lines[-1] and "Traceback" not in r.stderr
