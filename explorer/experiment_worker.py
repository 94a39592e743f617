"""Runs one guided experiment (`trainers.studies.experiments.Experiment.run`) in a QThread.

Cancel sets a flag that the experiment's progress callback checks: the next progress report raises
`Cancelled` inside `run`, which unwinds it (its `finally` restores torch's thread count). Experiments
report progress between their phases (every 5 % of a training run, before each sampler), so a
cancelled run stops at the end of the phase it is in — a few seconds at most with the default sizes.
"""
from __future__ import annotations

from typing import Callable

from .workers import job as job_worker


class Cancelled(Exception):
    """Raised from the progress callback to stop an experiment."""


def run_until_cancelled(experiment, params: dict, progress: Callable[[float, str], None],
                        cancelled: Callable[[], bool], control: bool = False):
    """experiment.run(params, control=control) reporting to `progress`; None once a progress report sees
    cancelled(). control: the experiment's negative control (the mechanism removed)."""
    def report(frac: float, text: str):
        if cancelled():
            raise Cancelled
        progress(float(frac), str(text))

    try:
        return experiment.run(params, report, control)
    except Cancelled:
        return None


class ExperimentWorker(job_worker.JobWorker):
    """One experiment (or, with control, its negative control) with progress and Cancel;
    done(trainers.studies.experiments.ExperimentResult)."""

    def __init__(self, experiment, params: dict, parent=None, control: bool = False):
        super().__init__(run_until_cancelled, dict(experiment=experiment, params=dict(params), control=control),
                         f"{experiment.name}{' (control)' if control else ''}", parent)
        self.experiment = experiment
        self.control = control
