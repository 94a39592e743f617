"""A run that fails mid-training ends progress.jsonl with a ``failed`` event and leaves no handle
open; the run-folder layout and the event names live in one module each."""
import ast
import json
import os
from pathlib import Path

import pytest
import torch

from trainers.image import progress as events
from trainers.image import run_layout as layout
from trainers.image import runtime
from trainers.image import train as train_mod
from trainers.image.checkpoints import list_checkpoints
from trainers.image.config import load_config
from trainers.image.datasets import DatasetError

ROOT = Path(__file__).resolve().parents[3]
TINY = ["model.ch=16", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "train.batch_size=16", "train.warmup=3", "train.log_every=1", "train.threads=1", "ddpm.T=10"]


def tiny(**over):
    return load_config("ddpm_digits", TINY + [f"{k}={v}" for k, v in over.items()])


def records(run: Path) -> list[dict]:
    return [json.loads(l) for l in layout.progress_path(run).read_text().splitlines()]


def open_files_under(folder: Path) -> list[str]:
    """Files under ``folder`` this process holds open (Linux /proc)."""
    fds = Path("/proc/self/fd")
    out = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder.resolve())):
            out.append(target)
    return out


class FakeWriter:
    """Stands in for TensorBoard's SummaryWriter (not installed here): records close()."""
    instances: list = []

    def __init__(self):
        self.closed = False
        FakeWriter.instances.append(self)

    def add_scalar(self, *a):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def fail_at_step_3(monkeypatch):
    """TrainCore.step raises on its third call (so two steps complete)."""
    real, calls = train_mod.TrainCore.step, []

    def step(self, x, gen, lr, step=None, labels=None):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom in the loss at step 3")
        return real(self, x, gen, lr, step, labels)

    monkeypatch.setattr(train_mod.TrainCore, "step", step)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to list open files")
def test_a_failing_step_ends_the_log_with_a_failed_event_and_closes_everything(
        tmp_path, monkeypatch, fail_at_step_3):
    from tqdm import tqdm

    FakeWriter.instances = []
    monkeypatch.setattr(train_mod, "_tensorboard", lambda run_dir: FakeWriter())
    threads = torch.get_num_threads()
    run = tmp_path / "run"
    cfg = tiny(**{"train.n_steps": 6, "train.ckpt_every": 2, "train.sample_every": 0,
                  "train.threads": 2})
    with pytest.raises(RuntimeError, match="boom in the loss"):
        train_mod.train(cfg, run, quiet=False)           # with a progress bar

    recs = records(run)
    assert recs[-1] == {"event": events.FAILED, "step": 2, "message": "boom in the loss at step 3",
                        "error": "RuntimeError"}
    assert [r["step"] for r in recs if "loss" in r] == [1, 2]
    assert [s for s, _ in list_checkpoints(run)] == [2]
    assert open_files_under(run) == []                   # progress.jsonl closed
    assert [w.closed for w in FakeWriter.instances] == [True]
    assert len(getattr(tqdm, "_instances", ())) == 0     # the bar was closed
    assert torch.get_num_threads() == threads            # train.threads undone


def test_a_dataset_that_fails_mid_run_is_reported_and_its_stream_closed(tmp_path, monkeypatch):
    closed = []

    def failing_stream(ds, batch, seed, start_step, rank=0, world=1, num_workers=0, with_labels=False):
        try:
            for step in range(start_step, start_step + 2):
                yield torch.rand(batch, 1, 8, 8)
            raise DatasetError("batch 3: data/train-images.idx3 is truncated")
        finally:
            closed.append(True)

    monkeypatch.setattr(train_mod, "batch_stream", failing_stream)
    run = tmp_path / "run"
    cfg = tiny(**{"train.n_steps": 6, "train.ckpt_every": 0, "train.sample_every": 0})
    with pytest.raises(DatasetError):
        train_mod.train(cfg, run, quiet=True)
    last = records(run)[-1]
    assert last["event"] == events.FAILED and last["error"] == "DatasetError"
    assert last["message"] == "batch 3: data/train-images.idx3 is truncated" and last["step"] == 2
    assert closed == [True]


def test_resuming_a_failed_run_drops_its_failed_event(tmp_path, monkeypatch, fail_at_step_3):
    run = tmp_path / "run"
    cfg = tiny(**{"train.n_steps": 4, "train.ckpt_every": 2, "train.sample_every": 0})
    with pytest.raises(RuntimeError):
        train_mod.train(cfg, run, quiet=True)
    monkeypatch.undo()                                    # the step works again
    out = train_mod.train(cfg, run, quiet=True, resume=True)
    assert out["start_step"] == 2 and out["finished"]
    recs = records(run)
    assert events.FAILED not in [r.get("event") for r in recs]
    assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3, 4]
    assert recs[-1]["event"] == events.DONE


def test_a_failure_before_the_run_starts_writes_no_log(tmp_path):
    """Bad input found while setting up (here a missing dataset folder) is reported by the CLI on
    stderr (exit status 2); no run folder is made for it."""
    run = tmp_path / "run"
    with pytest.raises(DatasetError, match="does not exist"):
        train_mod.train(load_config("ddpm_mnist"), run, data_dir=str(tmp_path / "nowhere"),
                        quiet=True)
    assert not run.exists()


def test_ddp_is_torn_down_without_a_barrier_when_the_run_fails(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "setup_distributed", lambda pref: runtime.DistInfo(0, 2, 0))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: calls.append("destroy"))
    with pytest.raises(ValueError):
        with runtime.distributed("cpu"):
            raise ValueError("rank 0 failed")
    assert calls == ["destroy"]                # no barrier: the other ranks may never arrive
    calls.clear()
    with runtime.distributed("cpu"):
        pass
    assert calls == ["barrier", "destroy"]


def test_progress_log_knows_its_event_names(tmp_path):
    log = events.ProgressLog(tmp_path / layout.PROGRESS, truncate_after=-1)
    with pytest.raises(ValueError, match="unknown progress event 'finished'"):
        log.event("finished", 3)
    log.failed(KeyError(), 3)                       # no message: the type name stands in
    log.close()
    assert records(tmp_path)[-1]["message"] == "KeyError"


def _string_constants(path: Path) -> set[str]:
    """String literals of a module other than its docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs}


@pytest.mark.parametrize("module", ["explorer/runs.py", "explorer/views/image_runs.py",
                                    "trainers/image/train.py", "trainers/image/checkpoints.py"])
def test_run_folder_names_are_spelled_only_in_run_layout(module):
    names = {layout.CONFIG, layout.PROGRESS, layout.CHECKPOINTS, layout.SAMPLES, layout.DRAWN,
             layout.TENSORBOARD}
    literals = _string_constants(ROOT / module)
    assert not names & literals
    assert not [s for s in literals if s.startswith(("ckpt_", "step_"))]
