"""A real two-process DDP run on gloo (issue #24): two ranks of ``train()``, each in its own process
(forked from a clean fork server, so torch is imported once) with torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR/PORT), killed with SIGKILL after a checkpoint, resumed, and compared with an
uninterrupted two-process run: the rank-averaged loss of every step and the final EMA weights
are the same."""
from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
from pathlib import Path

import pytest
import torch

from trainers.image import checkpoints as ck
from trainers.image import progress as events
from trainers.image.config import load_config
from trainers.image.train import train

ROOT = Path(__file__).resolve().parents[3]
N_STEPS = 12
TINY = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "model.dropout=0.0", "train.batch_size=16", "train.warmup=3", "train.log_every=1",
        "train.ckpt_every=3", "train.sample_every=0", "train.keep_ckpts=2", "train.threads=1",
        "train.device=cpu", "train.precision=fp32", "ddpm.T=10", f"train.n_steps={N_STEPS}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(run: Path, rank: int, port: int, resume: bool) -> None:
    """One rank, forked from the fork server (torch already imported there): torchrun's environment,
    then train()."""
    os.environ.update({"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    train(load_config("ddpm_digits", TINY), run, quiet=True, resume=resume)


def launch(run: Path, resume: bool = False) -> list:
    # Ranks fork from a fresh fork server (torch and the trainer imported there once), not from this
    # process: by the time the whole suite reaches this test, pytest's process has Qt, torch and worker
    # threads, and a child forked from it can deadlock on a lock one of them held (a rank hung in CI).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "trainers.image.train", "trainers.image.datasets"])
    port = free_port()
    procs = [ctx.Process(target=_rank, args=(run, rank, port, resume), daemon=True) for rank in (0, 1)]
    for p in procs:
        p.start()
    return procs


def wait(procs, timeout=120):
    for p in procs:
        p.join(timeout)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive and [p.exitcode for p in procs] == [0, 0], [p.exitcode for p in procs]


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in events.read_records(run / "progress.jsonl") if "loss" in r]


@pytest.mark.slow
def test_two_rank_gloo_run_killed_and_resumed_matches_the_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    wait(launch(straight))
    recs = events.read_records(straight / "progress.jsonl")
    start = next(r for r in recs if r.get("event") == events.START)
    assert start["world_size"] == 2 and recs[-1]["event"] == events.DONE
    ref = losses(straight)
    assert [s for s, _ in ref] == list(range(1, N_STEPS + 1))

    run = tmp_path / "killed"
    procs = launch(run)
    deadline = time.time() + 120
    while time.time() < deadline and not ck.list_checkpoints(run):
        assert all(p.is_alive() for p in procs), [p.exitcode for p in procs]
        time.sleep(0.005)
    for p in procs:                       # both ranks die at once (SIGKILL), mid-run
        p.kill()
    for p in procs:
        p.join(60)
    killed_at = ck.list_checkpoints(run)[-1][0]
    assert 3 <= killed_at < N_STEPS
    assert events.read_records(run / "progress.jsonl")[-1].get("event") != events.DONE

    wait(launch(run, resume=True))
    got = losses(run)
    assert [s for s, _ in got] == list(range(1, N_STEPS + 1))      # one run's log, each step once
    torch.testing.assert_close(torch.tensor([l for _, l in got]), torch.tensor([l for _, l in ref]),
                               rtol=1e-6, atol=0)
    a, _ = ck.load_latest(straight)
    b, _ = ck.load_latest(run)
    assert a["step"] == b["step"] == N_STEPS
    for k in a["ema"]:
        torch.testing.assert_close(a["ema"][k], b["ema"][k], rtol=1e-6, atol=1e-7)
