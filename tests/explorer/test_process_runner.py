"""explorer.workers.process on its own (no tab): real tiny ``python -m trainers.image train`` processes
report their progress records, their end and their failures through signals carrying data."""
from __future__ import annotations

from pathlib import Path

import pytest

from explorer import runs
from explorer.workers import process
from trainers.image import progress as events
from trainers.image import run_layout as layout
from trainers.image import runs as run_files

TINY = ("train.log_every=5 train.sample_every=0 train.ckpt_every=10 train.n_grid=16 "
        "train.batch_size=32 model.ch=16 ddpm.T=100 train.warmup=10").split()
RUN_TIMEOUT_MS = 90_000


class Recorder:
    """Every signal of an ImageRun, in the order it came."""

    def __init__(self, run: process.ImageRun):
        self.calls: list[tuple] = []
        run.started.connect(lambda path: self.calls.append(("started", path)))
        run.progress.connect(lambda recs, reset: self.calls.append(("progress", recs, reset)))
        run.failed.connect(lambda msg, step: self.calls.append(("failed", msg, step)))
        run.finished.connect(lambda end: self.calls.append(("finished", end)))

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]

    def records(self) -> list[dict]:
        return [r for c in self.calls if c[0] == "progress" for r in c[1]]

    def ended(self) -> process.RunExit | None:
        return next((c[1] for c in self.calls if c[0] == "finished"), None)


@pytest.fixture
def image_run():
    run = process.ImageRun()
    yield run
    run.shutdown()


def launch(qtbot, image_run, out: Path, *args: str, config: str | None = "ddpm_digits") -> Recorder:
    seen = Recorder(image_run)
    argv = runs.trainer_argv("train", "--out", str(out), "--quiet",
                             *(["--config", config] if config else []), *args)
    image_run.start(argv, out, resume=False)
    assert image_run.is_running() or seen.ended() is not None
    qtbot.waitUntil(lambda: seen.ended() is not None, timeout=RUN_TIMEOUT_MS)
    return seen


def test_a_tiny_run_delivers_its_progress_records_then_a_clean_finish(qtbot, image_run, tmp_path):
    out = tmp_path / "tiny"
    seen = launch(qtbot, image_run, out, *TINY, "train.n_steps=10")

    assert seen.kinds()[0] == "started" and seen.calls[0][1] == out
    assert seen.kinds()[-1] == "finished" and "failed" not in seen.kinds()
    recs = seen.records()
    assert [r["step"] for r in recs if "loss" in r and "event" not in r] == [5, 10]
    assert recs[0]["event"] == events.START and recs[-1]["event"] == events.DONE
    assert recs == run_files.read_log(out)              # every record once, in file order
    assert seen.ended() == process.RunExit(out, 0, False, "")
    assert not image_run.is_running()


@pytest.mark.parametrize("config, args, message", [
    ("ddpm_digits", ["train.lr=abc"], "train.lr: expected a number"),
    ("ddpm_mnist", ["--data-dir", "no/such/folder"], "does not exist"),
], ids=["bad-override", "missing-dataset-folder"])
def test_a_run_that_cannot_train_delivers_the_trainers_message(qtbot, image_run, tmp_path, config,
                                                               args, message):
    if args[0] == "--data-dir":
        args = ["--data-dir", str(tmp_path / args[1])]
    seen = launch(qtbot, image_run, tmp_path / "bad", *args, config=config)

    [(_, failure, step)] = [c for c in seen.calls if c[0] == "failed"]
    assert message in failure and step is None          # from stderr: no ``failed`` event
    end = seen.ended()
    assert end.code == 2 and not end.stopped and end.message == failure
    assert seen.kinds()[-2:] == ["failed", "finished"]


def test_a_failed_event_is_delivered_after_the_records_before_it(image_run, tmp_path):
    run = tmp_path / "failed"
    log = events.ProgressLog(layout.progress_path(run), truncate_after=-1)
    log.event(events.START, 0, total_steps=10)
    log.write(step=1, loss=1.0, total_steps=10)
    log.failed(RuntimeError("boom at step 2"), 1)
    log.close()
    seen = Recorder(image_run)
    image_run.follow(run)
    image_run.poll()

    assert seen.kinds() == ["progress", "failed"]
    assert [r.get("event", "loss") for r in seen.calls[0][1]] == [events.START, "loss", events.FAILED]
    assert seen.calls[1][1:] == ("boom at step 2", 1)
    # the process's exit keeps the event's message, not its stderr's last line
    image_run.child.exited.emit(process.ProcessExit(1, False, "", "RuntimeError: other\n"))
    assert seen.kinds() == ["progress", "failed", "finished"]
    assert seen.ended() == process.RunExit(run, 1, False, "boom at step 2")


def test_a_process_that_cannot_start_exits_with_the_reason(qtbot, tmp_path):
    child = process.ChildProcess()
    child.proc.setProgram(str(tmp_path / "no-such-python"))
    with qtbot.waitSignal(child.exited, timeout=10_000) as blocker:
        child.start(["-c", "pass"])
    [end] = blocker.args
    assert end.code == -1 and not end.stopped
    assert runs.error_message(end.stderr).startswith("could not start")


def test_a_child_process_hands_over_its_output_and_exit_status(qtbot):
    child = process.ChildProcess()
    text: list[str] = []
    child.output.connect(text.append)
    with qtbot.waitSignal(child.exited, timeout=30_000) as blocker:
        child.start(["-c", "import sys; print('{\"grid\": \"g.png\"}'); "
                           "print('error: nope', file=sys.stderr); sys.exit(3)"])
    [end] = blocker.args
    assert (end.code, end.stopped) == (3, False)
    assert runs.last_json_line(end.stdout) == {"grid": "g.png"}
    assert runs.error_message(end.stderr) == "nope"
    assert text[0].startswith("$ ") and "error: nope" in "".join(text)
