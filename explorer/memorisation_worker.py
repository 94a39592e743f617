"""Runs `trainers.studies.memorisation.measure` in a QThread: sampling a model for the memorisation meter never
blocks the GUI thread. The worker gets its own copy of the network, so training may go on meanwhile."""
from __future__ import annotations

import copy

from trainers.studies import memorisation

from .workers import job as job_worker


class MemorisationWorker(job_worker.JobWorker):
    """memorisation.measure with progress (what was just finished) and Cancel; done(Measurement)."""

    def __init__(self, model, cfg, density, points, n: int = 1000, seed: int = 0, parent=None):
        super().__init__(memorisation.measure,
                         dict(model=copy.deepcopy(model), cfg=copy.deepcopy(cfg), density=density,
                              points=points.clone(), n=n, seed=seed),
                         "memorisation meter", parent)
