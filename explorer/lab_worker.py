"""Runs `trainers.studies.lab.run_lab` in a QThread: the quality-vs-steps lab never blocks the GUI thread."""
from __future__ import annotations

from trainers.studies.lab import run_lab

from .workers import job as job_worker


class LabWorker(job_worker.JobWorker):
    """run_lab over `seeds` seeds with progress (what was just finished) and Cancel;
    done(trainers.studies.lab.LabResult)."""

    def __init__(self, density, model_sm, exact_sm, samplers, nfes, options=None, n: int = 1000, seed: int = 0,
                 seeds: int = 3, parent=None):
        super().__init__(run_lab, dict(density=density, model=model_sm, exact=exact_sm, samplers=list(samplers),
                                       nfes=list(nfes), options=options, n=n, seed=seed, seeds=seeds),
                         "lab", parent)
