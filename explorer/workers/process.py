"""Child processes of the image trainer CLI, driven by Qt signals (never waited on), and an image
run followed live through its ``progress.jsonl``.

``ChildProcess`` is one ``python -m trainers.image ...`` process (``QProcess`` with
``sys.executable``, never a thread: torch's thread count is process-wide and a long run must not
share the GUI's interpreter). ``ChildQueue`` runs several such processes one after another
(the tab's "Rate checkpoints"). ``ImageRun`` is a training process plus a timer that tails
``RUN_DIR/progress.jsonl`` (``explorer.run_files.ProgressTail`` reads only the new bytes; the event
names are ``trainers.image.progress``'s). Both report through signals carrying data; no widget
here.
"""
from __future__ import annotations

import codecs
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore

from trainers.image import progress as events
from trainers.image import run_layout as layout
from trainers.image import runs as run_files

from .. import runs

POLL_MS = 250            # progress.jsonl poll period
# Stop sends SIGTERM: the trainer finishes its step, writes a checkpoint and exits. A child still
# alive this much later (a stuck process) gets SIGKILL.
KILL_AFTER_MS = 30_000


@dataclass(frozen=True)
class ProcessExit:
    """How a child process ended: ``code`` is its exit status (-1 when it crashed, was killed or
    could not start); ``stopped``: ``stop()`` asked for it; its whole stdout and stderr texts."""
    code: int
    stopped: bool
    stdout: str
    stderr: str


@dataclass(frozen=True)
class RunExit:
    """How a training process ended; ``message`` says why it failed ("" when it finished or was
    stopped): the trainer's ``failed`` event, else its stderr's last error line."""
    run_dir: Path
    code: int
    stopped: bool
    message: str = ""


class _DetachableProcess(QtCore.QProcess):
    def mark_detached(self) -> None:
        # ~QProcess kills a child it still counts as running; marked not running, the child is left
        # alone. (Its stdout/stderr pipes close with us: the trainer then writes to /dev/null.)
        self.setProcessState(QtCore.QProcess.ProcessState.NotRunning)


class ChildProcess(QtCore.QObject):
    """One child process of the trainer CLI.

    ``output`` carries the command line, then stdout and stderr text as it arrives; ``exited``
    carries a ``ProcessExit``. The stdout and stderr texts stay readable after the exit.
    """

    output = QtCore.Signal(str)
    exited = QtCore.Signal(object)       # ProcessExit

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        # A child QObject: if the owner is destroyed with the child still running, ~QProcess
        # kills it.
        self.proc = _DetachableProcess(self)
        self.proc.setProgram(sys.executable)
        if hasattr(QtCore.QProcess, "setUnixProcessParameters"):     # Qt >= 6.6
            # its own session: closing the terminal the explorer was started from (SIGHUP) or
            # Ctrl+C there does not reach a run left running in the background
            self.proc.setUnixProcessParameters(QtCore.QProcess.UnixProcessFlag.CreateNewSession)
        env = QtCore.QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")          # live log lines
        self.proc.setProcessEnvironment(env)
        self.proc.readyReadStandardOutput.connect(self._read_stdout)
        self.proc.readyReadStandardError.connect(self._read_stderr)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)
        self.kill_timer = QtCore.QTimer(self, singleShot=True, interval=KILL_AFTER_MS)
        self.kill_timer.timeout.connect(self.proc.kill)
        self.stdout = self.stderr = ""
        self.stopping = False
        self.decoders = self._new_decoders()

    @staticmethod
    def _new_decoders() -> list:
        return [codecs.getincrementaldecoder("utf-8")("replace") for _ in range(2)]

    def start(self, args: list[str]) -> None:
        """Start ``sys.executable args``; a failure to start is reported through ``exited``."""
        self.stdout = self.stderr = ""
        self.decoders = self._new_decoders()
        self.stopping = False
        self.proc.setArguments(args)
        self.output.emit(f"$ {self.command_line()}\n")
        self.proc.start()

    def is_running(self) -> bool:
        return self.proc.state() != QtCore.QProcess.ProcessState.NotRunning

    def pid(self) -> int:
        return self.proc.processId()

    def stop(self) -> None:
        """SIGTERM (the trainer checkpoints and exits), SIGKILL after ``KILL_AFTER_MS``."""
        if self.is_running():
            self.stopping = True
            self.proc.terminate()
            self.kill_timer.start()

    def stop_and_wait(self, timeout_ms: int = KILL_AFTER_MS) -> bool:
        """SIGTERM, then wait (blocking) until the child has checkpointed and exited; True if it
        did. One that takes longer is left to finish on its own (never killed: it is writing its
        checkpoint)."""
        if not self.is_running():
            return True
        self.stopping = True
        self.proc.terminate()
        if self.proc.waitForFinished(timeout_ms):
            return True
        self.detach()
        return False

    def detach(self) -> None:
        """Let the child outlive this object (and the explorer): no more signals from it, and no
        kill when the QProcess is destroyed."""
        if self.is_running():
            self.kill_timer.stop()
            for sig in (self.proc.readyReadStandardOutput, self.proc.readyReadStandardError,
                        self.proc.finished, self.proc.errorOccurred):
                sig.disconnect()
            self.proc.mark_detached()

    def command_line(self) -> str:
        return shlex.join([Path(self.proc.program()).name, *self.proc.arguments()])

    def _read_stdout(self) -> None:
        text = self.decoders[0].decode(self.proc.readAllStandardOutput().data())
        self.stdout += text
        self._emit(text)

    def _read_stderr(self) -> None:
        text = self.decoders[1].decode(self.proc.readAllStandardError().data())
        self.stderr += text
        self._emit(text)

    def _emit(self, text: str) -> None:
        if text:
            self.output.emit(text)

    def _on_finished(self, code: int, status: QtCore.QProcess.ExitStatus) -> None:
        self.kill_timer.stop()
        self._read_stdout()
        self._read_stderr()
        crashed = status == QtCore.QProcess.ExitStatus.CrashExit
        self.exited.emit(ProcessExit(-1 if crashed else code, self.stopping, self.stdout,
                                     self.stderr))

    def _on_error(self, error: QtCore.QProcess.ProcessError) -> None:
        if error == QtCore.QProcess.ProcessError.FailedToStart:   # no finished signal follows
            self.stderr += (f"error: could not start {self.proc.program()}: "
                            f"{self.proc.errorString()}\n")
            self.exited.emit(ProcessExit(-1, False, self.stdout, self.stderr))


class ChildQueue(QtCore.QObject):
    """Trainer CLI processes run one after another through one ``ChildProcess``.

    ``begun`` carries (index, total) as each starts, ``ended`` (index, ``ProcessExit``) as each
    exits, ``finished`` True once all exited with status 0, False when one failed (the rest are
    not run) or ``cancel()`` stopped the queue. ``output`` is the processes' text.
    """

    begun = QtCore.Signal(int, int)           # index (0-based), total
    ended = QtCore.Signal(int, object)        # index, ProcessExit
    finished = QtCore.Signal(bool)            # every process succeeded
    output = QtCore.Signal(str)

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.child = ChildProcess(self)
        self.jobs: list[list[str]] = []
        self.index = -1                       # the running job's index; -1 when idle
        self.child.output.connect(self.output)
        self.child.exited.connect(self._on_exited)

    def start(self, jobs: list[list[str]]) -> None:
        """Run each argument list of ``jobs`` in turn (nothing when one is already running)."""
        if self.is_running() or not jobs:
            return
        self.jobs, self.index = list(jobs), 0
        self._launch()

    def is_running(self) -> bool:
        return self.index >= 0

    def cancel(self) -> None:
        """Stop the running process (SIGTERM) and drop the ones not started."""
        if self.is_running():
            self.jobs = self.jobs[:self.index + 1]
            self.child.stop()

    def _launch(self) -> None:
        self.begun.emit(self.index, len(self.jobs))
        self.child.start(self.jobs[self.index])       # a failure to start exits at once

    def _on_exited(self, end: ProcessExit) -> None:
        index = self.index
        self.ended.emit(index, end)
        if end.code == 0 and not end.stopped and index + 1 < len(self.jobs):
            self.index = index + 1
            self._launch()
        else:
            self.index = -1
            self.finished.emit(end.code == 0 and not end.stopped and index + 1 == len(self.jobs))


class ImageRun(QtCore.QObject):
    """A ``python -m trainers.image train`` process followed through its run folder's
    ``progress.jsonl``.

    Signals, in order: ``started`` (the run folder, once the process runs), ``progress`` (new
    records and whether the earlier ones are void: the trainer rewrote the file), ``failed`` (the
    trainer's message and the step of its ``failed`` event, or None for a process that exited
    non-zero without one: the message then comes from its stderr), ``finished`` (a ``RunExit``).
    ``output`` carries the process's text as it arrives.
    """

    started = QtCore.Signal(object)           # run folder (Path)
    progress = QtCore.Signal(list, bool)      # new records, reset
    failed = QtCore.Signal(str, object)       # message, step (int) or None
    finished = QtCore.Signal(object)          # RunExit
    output = QtCore.Signal(str)

    def __init__(self, parent: QtCore.QObject | None = None, poll_ms: int = POLL_MS):
        super().__init__(parent)
        self.child = ChildProcess(self)
        self.run_dir: Path | None = None
        self.tail: run_files.ProgressTail | None = None
        self.failure: str | None = None      # the message of this process's ``failed`` event
        self.poll_timer = QtCore.QTimer(self, interval=poll_ms)
        self.poll_timer.timeout.connect(self.poll)
        self.child.output.connect(self.output)
        self.child.exited.connect(self._on_exited)
        self.child.proc.started.connect(lambda: self.started.emit(self.run_dir))

    def start(self, args: list[str], run_dir: Path, resume: bool) -> None:
        """Launch the trainer with ``args`` (``runs.train_args``) and follow ``run_dir``: a resumed
        run's progress starts with its history, a fresh run's with its own first line."""
        self.follow(run_dir, skip_existing=not resume)
        self.poll_timer.start()
        self.child.start(args)         # a failure to start reports back at once, in here

    def follow(self, run_dir: Path, skip_existing: bool = False) -> None:
        """Read ``run_dir``'s progress log from now on (``poll`` reads it)."""
        self.run_dir = Path(run_dir)
        self.tail = run_files.ProgressTail(layout.progress_path(self.run_dir), skip_existing)
        self.failure = None

    def poll(self) -> None:
        """Emit the records appended to progress.jsonl since the last poll (and ``failed`` for a
        ``failed`` event among them)."""
        if self.tail is None:
            return
        records, reset = self.tail.poll()
        if reset:
            self.failure = None
        batch: list[dict] = []
        for rec in records:             # ``failed`` follows the records up to its event
            batch.append(rec)
            kind = rec.get("event")
            if kind == events.START:
                self.failure = None               # an earlier attempt's failure, now resumed
            elif kind == events.FAILED:
                self.failure = str(rec.get("message") or rec.get("error") or "no message")
                self.progress.emit(batch, reset)
                batch, reset = [], False
                self.failed.emit(self.failure, rec.get("step"))
        if batch or reset:
            self.progress.emit(batch, reset)

    def is_running(self) -> bool:
        return self.child.is_running()

    def arguments(self) -> list[str]:
        return self.child.proc.arguments()

    def pid(self) -> int:
        return self.child.pid()

    def stop(self) -> None:
        """Ask the trainer to checkpoint and exit (SIGTERM, SIGKILL after a grace period)."""
        self.child.stop()

    def shutdown(self) -> None:
        """Stop following and stop the process: call before the owner goes away."""
        self.poll_timer.stop()
        self.child.stop()

    def leave_running(self) -> None:
        """Stop following and let the process train on after the explorer exits."""
        if self.is_running():
            pid = self.pid()
            self.poll_timer.stop()
            self.child.detach()
            print(f"image run {self.run_dir} keeps training in the background (pid {pid}); "
                  "its progress is in progress.jsonl", file=sys.stderr)

    def stop_and_wait(self) -> bool:
        """Stop with a checkpoint, waiting for it (blocking); True if the process has exited, else
        it is left to finish its checkpoint on its own."""
        pid = self.pid()
        if self.child.stop_and_wait():
            return True
        print(f"image run {self.run_dir} (pid {pid}) is still writing its checkpoint; "
              "it exits by itself", file=sys.stderr)
        return False

    def _on_exited(self, end: ProcessExit) -> None:
        self.poll_timer.stop()
        self.poll()
        message = ""
        if end.code != 0 and not end.stopped:
            message = self.failure or runs.error_message(end.stderr)
            if self.failure is None:
                self.failed.emit(message, None)
        self.finished.emit(RunExit(self.run_dir, end.code, end.stopped, message))
