"""Stepping several chains at once: chains whose samplers share a ScoreModel have their score queries
answered by one batched forward pass per round (the Samplers tab and the lab run this way)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..score_models import Query
from .base import DivergenceError, Sampler, StepPlan


@dataclass
class ChainState:
    """A chain being advanced: its sampler, state, steps taken and noise generator."""
    sampler: Sampler
    x: torch.Tensor
    generator: torch.Generator | None = None
    k: int = 0
    label: str = ""
    denoised: torch.Tensor | None = None
    nfe: int = 0                       # evaluations spent so far
    error: str = ""


@torch.no_grad()
def advance_together(chains: list[ChainState], targets: list[int], cancelled: Callable[[], bool] = lambda: False):
    """Advance each chain to its target step count. Chains whose samplers share a ScoreModel have their
    score queries answered by one batched forward pass per round. A diverging chain gets `error` set
    and stops; the others go on. Returns False if `cancelled()` became true."""
    plans: dict[int, StepPlan] = {}
    pending: dict[int, Query] = {}

    def start(i: int):
        c = chains[i]
        if c.error or c.k >= targets[i]:
            return
        plans[i] = c.sampler.plan(c.x, c.k, c.generator)
        feed(i, None)

    def feed(i: int, answer):
        c = chains[i]
        try:
            pending[i] = next(plans[i]) if answer is None else plans[i].send(answer)
        except StopIteration as done:
            out = done.value
            c.x, c.label, c.denoised, c.k = out.x, out.label, out.denoised, c.k + 1
            del plans[i]
            pending.pop(i, None)
            start(i)
        except DivergenceError as e:
            c.error = str(e)
            del plans[i]
            pending.pop(i, None)

    for i in range(len(chains)):
        start(i)
    while pending:
        if cancelled():
            return False
        groups: dict[int, list[int]] = {}
        for i in pending:
            groups.setdefault(id(chains[i].sampler.model), []).append(i)
        for ids in groups.values():
            model = chains[ids[0]].sampler.model
            queries = [pending.pop(i) for i in ids]
            answers = model.evaluate(queries)
            for i, a in zip(ids, answers):
                chains[i].nfe += 1
                feed(i, a)
    return True
