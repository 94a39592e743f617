"""Runs one guided experiment (`trainers.experiments.Experiment.run`) in a QThread.

Cancel sets a flag that the experiment's progress callback checks: the next progress report raises
`Cancelled` inside `run`, which unwinds it (its `finally` restores torch's thread count). Experiments
report progress between their phases (every 5 % of a training run, before each sampler), so a
cancelled run stops at the end of the phase it is in — a few seconds at most with the default sizes.
"""
from __future__ import annotations

from typing import Callable

from . import job_worker


class Cancelled(Exception):
    """Raised from the progress callback to stop an experiment."""


def run_until_cancelled(experiment, params: dict, progress: Callable[[float, str], None],
                        cancelled: Callable[[], bool]):
    """experiment.run(params) reporting to `progress`; None once a progress report sees cancelled()."""
    def report(frac: float, text: str):
        if cancelled():
            raise Cancelled
        progress(float(frac), str(text))

    try:
        return experiment.run(params, report)
    except Cancelled:
        return None


class ExperimentWorker(job_worker.JobWorker):
    """One experiment with progress and Cancel; done(trainers.experiments.ExperimentResult)."""

    def __init__(self, experiment, params: dict, parent=None):
        super().__init__(run_until_cancelled, dict(experiment=experiment, params=dict(params)), experiment.name,
                         parent)
        self.experiment = experiment
