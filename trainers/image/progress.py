"""``RUN_DIR/progress.jsonl``: the training event log, one JSON object per line, appended and
flushed as training goes, for the explorer to tail.

Training lines (no ``"event"`` key): ``step, loss, images_per_s, lr, eta_s, elapsed_s,
total_steps, grad_norm, level_loss`` (loss = mean over the steps since the previous line).
``level_loss`` is the loss per noise level over the same steps: ``{"level": "t" | "sigma",
"at": [bin centres], "loss": [mean loss per bin, null where no example fell]}`` (DDPM: 20 bins of
the timestep; NCSN: one bin per σ level). A reader that only wants the curve keeps the lines that
have ``"loss"``.

Event lines carry ``"event"`` (one of the names below) and ``"step"``:

- ``start``      ``total_steps, device, params, world_size, resumed_from, dataset, n_images, method``
- ``checkpoint`` / ``samples``  ``path`` of the file written; ``samples`` also says how the
                 preview grid was drawn: ``sampler`` (registry name), ``nfe``, ``weights`` ("ema")
                 and ``seconds``. A stop request during a grid abandons it (no event).
- ``stopped``    a signal stopped the run after checkpointing this step (``elapsed_s``)
- ``done``       the run reached ``total_steps`` (``elapsed_s``)
- ``failed``     the run ended with an exception: ``message`` (what went wrong, in words) and
                 ``error`` (the exception's type name). Always the last line of a failed run.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text

START = "start"
CHECKPOINT = "checkpoint"
SAMPLES = "samples"
STOPPED = "stopped"
DONE = "done"
FAILED = "failed"
EVENTS = (START, CHECKPOINT, SAMPLES, STOPPED, DONE, FAILED)


def failure_message(exc: BaseException) -> str:
    """One line saying what went wrong: the exception's message, or its type when it has none."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (a second stop signal); --resume continues from the newest checkpoint"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse_line(line) -> dict | None:
    """One line of the log as a dict, or None for a line that is not one (blank, or cut short by
    a kill: a SIGKILL can land mid-write, leaving a torn last line)."""
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def read_records(path) -> list[dict]:
    """Every whole record of a ``progress.jsonl`` ([] when it does not exist), skipping a torn
    line. A last line without its newline is only trusted when it parses."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    return [r for r in map(parse_line, data.split(b"\n")) if r is not None]


class ProgressLog:
    """The one writer of ``progress.jsonl``.

    ``truncate_after``: None appends to what is there; a negative value starts an empty log (a fresh
    run); a step drops the lines of a killed or failed run that lie after the checkpoint being
    resumed, and its ``failed`` event.
    """

    def __init__(self, path, truncate_after: int | None = None):
        self.path = Path(path)
        if truncate_after is not None and truncate_after < 0:
            atomic_write_text(self.path, "")          # a fresh run: start an empty log
        elif truncate_after is not None and self.path.exists():
            # a torn line (the kill) is dropped; a ``failed`` event ended the process being
            # resumed, so it is not this run's end; lines after the checkpoint are redone
            keep = [json.dumps(rec) for rec in read_records(self.path)
                    if rec.get("step", 0) <= truncate_after and rec.get("event") != FAILED]
            atomic_write_text(self.path, "".join(l + "\n" for l in keep))
        self.f = open(self.path, "a", encoding="utf-8")

    def write(self, **rec) -> None:
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()

    def event(self, name: str, step: int, **fields) -> None:
        if name not in EVENTS:
            raise ValueError(f"unknown progress event {name!r}; one of {', '.join(EVENTS)}")
        self.write(event=name, step=step, **fields)

    def failed(self, exc: BaseException, step: int) -> None:
        self.event(FAILED, step, message=failure_message(exc), error=type(exc).__name__)

    @property
    def closed(self) -> bool:
        return self.f.closed

    def close(self) -> None:
        self.f.close()
