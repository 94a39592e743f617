"""The quality-vs-steps lab: is a bad sample the model's fault or the sampler's?

Each chosen sampler runs at each budget of network evaluations (NFE) twice: driven by the trained
model and by the exact score of the density, from the same initial particles and with the same noise.
The exact-score curve is the sampler's own discretisation error; the gap between the two curves is
the model's error. Quality is the energy distance to an exact sample of the density (its floor is
the mean energy distance of independent exact samples to the same reference) and the mode-weight error.
The deterministic samplers (DDIM η = 0, PF-ODE) map the same z to nearly the same points, so their
curves share that one draw's sampling error: read differences below `floor_max` as noise.
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from .metrics import energy_distance, mean_pairwise_distance, mode_weight_error
from .samplers import SAMPLERS, ChainState, SamplerOptions, advance_together, build_sampler, prior_sample
from .score_models import ScoreModel

NFE_GRID = (5, 10, 20, 50, 100, 200, 1000)
FLOOR_SAMPLES = 5     # independent exact samples whose mean energy distance to the reference is the floor
LAB_SAMPLERS = tuple(SAMPLERS)
SOURCES = ("model", "exact")


@dataclass
class LabRow:
    sampler: str
    source: str                # "model" or "exact"
    nfe_target: int
    nfe: int                   # evaluations actually spent (a sampler's steps come in whole units)
    steps: int
    energy_distance: float     # nan when the chain diverged
    mode_weight_error: float
    error: str = ""            # the divergence message, if any


@dataclass
class LabResult:
    rows: list[LabRow] = field(default_factory=list)
    floor: float = 0.0          # mean energy distance of independent exact samples of this size to the reference
    floor_max: float = 0.0      # the largest of those: a single exact sample can land this far
    floor_mode_weight_error: float = 0.0
    n: int = 0
    seconds: float = 0.0
    notes: dict = field(default_factory=dict)    # sampler → range note of the model, if it extrapolates

    def curve(self, sampler: str, source: str) -> tuple[list[int], list[float]]:
        rows = [r for r in self.rows if r.sampler == sampler and r.source == source]
        return [r.nfe for r in rows], [r.energy_distance for r in rows]

    def nfe_to_reach(self, sampler: str, source: str, threshold: float) -> int | None:
        """The smallest NFE at which this sampler's energy distance is ≤ threshold (None: never)."""
        for r in sorted((r for r in self.rows if r.sampler == sampler and r.source == source), key=lambda r: r.nfe):
            if r.energy_distance <= threshold:
                return r.nfe
        return None

    def to_dict(self) -> dict:
        return {"n": self.n, "floor": self.floor, "floor_max": self.floor_max,
                "floor_mode_weight_error": self.floor_mode_weight_error,
                "seconds": self.seconds, "notes": self.notes, "rows": [asdict(r) for r in self.rows]}

    def to_csv(self) -> str:
        buf = io.StringIO()
        names = list(LabRow.__dataclass_fields__)
        w = csv.DictWriter(buf, fieldnames=names)
        w.writeheader()
        for r in self.rows:
            w.writerow(asdict(r))
        return buf.getvalue()


def run_lab(density, model: ScoreModel | None, exact: ScoreModel, samplers=LAB_SAMPLERS, nfes=NFE_GRID,
            options: dict[str, SamplerOptions] | None = None, n: int = 2000, seed: int = 0,
            progress: Callable[[float, str], None] | None = None,
            cancelled: Callable[[], bool] = lambda: False) -> LabResult | None:
    """Every (sampler, NFE, source) run; `model` None runs the exact score only. Samplers on one
    score model step together (one batched forward pass per round). Returns None if cancelled."""
    start = time.perf_counter()
    unknown = [s for s in samplers if s not in SAMPLERS]
    if unknown:
        raise ValueError(f"unknown sampler(s) {', '.join(unknown)}; choose from {', '.join(SAMPLERS)}")
    options = options or {}
    gen = torch.Generator().manual_seed(seed)
    ref = density.sample(n, gen)
    ref_self = mean_pairwise_distance(ref)
    others = [density.sample(n, gen) for _ in range(FLOOR_SAMPLES)]
    z = torch.randn(n, 2, generator=gen)
    floors = [energy_distance(o, ref, ref_self) for o in others]
    result = LabResult(floor=sum(floors) / len(floors), floor_max=max(floors),
                       floor_mode_weight_error=sum(mode_weight_error(o, density) for o in others) / len(others), n=n)
    sources = [("model", model), ("exact", exact)] if model is not None else [("exact", exact)]
    jobs = [(nfe, src, sm) for nfe in nfes for src, sm in sources]
    total_cost = sum(nfe * len(samplers) for nfe, _, _ in jobs)
    done_cost = 0
    for nfe, src, sm in jobs:
        chains, names = [], []
        for name in samplers:
            o = options.get(name) or SamplerOptions()
            sampler = build_sampler(name, sm, o, nfe=nfe, steps=None)
            # the same z and the same noise stream for every sampler and both sources
            chains.append(ChainState(sampler, prior_sample(sampler, z), torch.Generator().manual_seed(seed + 1)))
            names.append(name)
            if src == "model" and name not in result.notes:
                note = sm.range_note(sampler.sigmas_used())
                if note:
                    result.notes[name] = note
        if not advance_together(chains, [c.sampler.n_steps for c in chains], cancelled):
            return None
        for name, c in zip(names, chains):
            x = c.x
            finite = not c.error and bool(torch.isfinite(x).all())
            result.rows.append(LabRow(
                name, src, nfe, c.sampler.nfe, c.sampler.n_steps,
                energy_distance(x, ref, ref_self) if finite else math.nan,
                mode_weight_error(x, density) if finite else math.nan, c.error))
        done_cost += nfe * len(samplers)
        if progress:
            progress(done_cost / total_cost, f"NFE {nfe}, {src} score")
    result.seconds = time.perf_counter() - start
    return result


def format_table(result: LabResult) -> str:
    """The lab as a text table: energy distance per sampler (rows) and NFE (columns), model / exact."""
    nfes = sorted({r.nfe_target for r in result.rows})
    samplers = list(dict.fromkeys(r.sampler for r in result.rows))
    lines = [f"energy distance to an exact sample of {result.n} (floor: independent exact samples give "
             f"{result.floor:.4f} on average, up to {result.floor_max:.4f})",
             f"{'sampler':<10} {'score':<6} " + " ".join(f"{n:>8}" for n in nfes)]
    for s in samplers:
        for src in SOURCES:
            cells = {r.nfe_target: r for r in result.rows if r.sampler == s and r.source == src}
            if cells:
                lines.append(f"{s:<10} {src:<6} " + " ".join(
                    f"{cells[n].energy_distance:>8.4f}" if n in cells and not cells[n].error else f"{'div.':>8}"
                    for n in nfes))
    for s, note in result.notes.items():
        lines.append(f"note ({s}): {note}")
    return "\n".join(lines)
