"""The quality-vs-steps lab: whose error is a bad sample — the sampler's, the prior's or the model's?

Each chosen sampler runs at each budget of network evaluations (NFE) from up to four sources:

- "exact·exact-start": the exact score from exact draws of p_σ₀ (the noised density at the chain's
  first level; `samplers.exact_prior_sample`): no prior mismatch, no model error, so its error is
  the sampler's discretisation error alone;
- "exact": the exact score from the sampler's Gaussian prior start (`samplers.prior_sample`; the
  model's start when a model is given, so that both rows share it): adds the prior mismatch;
- "model": the trained model from the same start particles with the same noise as "exact": adds the
  model's error;
- "model·exact-start" (optional): the model from the exact start of "exact·exact-start".

`LabResult.decomposition()` attributes the error per sampler and NFE, paired over seeds:
discretisation = ED(exact·exact-start), prior = ED(exact) − ED(exact·exact-start), model = ED(model)
− ED(exact), ED the energy distance (`metrics.energy_distance`, the unbiased U-statistic: 0 on
average for exact samples, so it can be slightly negative).

Every cell is repeated over `seeds` K seeds, each with a fresh reference sample, fresh start
particles, a fresh noise stream and fresh exact draws; rows carry the mean, the sd (ddof = 1) and
the per-seed values. "Reached" means: the K-seed mean energy distance is at most `threshold`, the
`quantile` (0.95) of the mean over K seeds of the energy distance of an independent exact sample of
the same size to that seed's reference. It is estimated from `null_draws` such exact samples per
seed by resampling: the quantile of 4000 means of one draw picked at random from each seed's pool.
It is conditional on the K references drawn (an exact sampler's K-seed mean, against these
references, exceeds it with probability 1 − quantile), which is the comparison the rows make.
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from .. import fitting
from ..metrics import energy_distance, mean_pairwise_distance, mode_weight_error
from ..samplers import (SAMPLERS, ChainState, SamplerOptions, advance_together, build_sampler, exact_prior_sample,
                       prior_sample, sampler_class)
from ..score_models import ScoreModel

NFE_GRID = (5, 10, 20, 50, 100, 200, 1000)
LAB_SAMPLERS = tuple(SAMPLERS)
EXACT_START, EXACT, MODEL, MODEL_EXACT_START = "exact·exact-start", "exact", "model", "model·exact-start"
SOURCES = (EXACT_START, EXACT, MODEL, MODEL_EXACT_START)
NULL_DRAWS = 20       # independent exact samples per seed: the null distribution of the energy distance
QUANTILE = 0.95       # "reached": the K-seed mean is below this quantile of K-seed means of exact samples
RESAMPLES = 4000      # resampled K-seed means of null draws that estimate the quantile


@dataclass
class LabRow:
    sampler: str
    source: str                    # one of SOURCES
    nfe_target: int
    nfe: int                       # evaluations actually spent (a sampler's steps come in whole units)
    steps: int
    energy_distance: float         # mean over the seeds (nan when a chain diverged)
    energy_distance_sd: float      # sd over the seeds (ddof = 1; nan with one seed)
    mode_weight_error: float       # mean total variation of the mode weights
    mode_weight_error_sd: float
    n_seeds: int                   # seeds whose chain finished (diverged ones are left out)
    error: str = ""                # the divergence message, if any seed diverged
    energy_distances: list[float] = field(default_factory=list)     # per seed
    mode_weight_errors: list[float] = field(default_factory=list)


CSV_FIELDS = [f for f in LabRow.__dataclass_fields__ if f not in ("energy_distances", "mode_weight_errors")]


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values or not all(math.isfinite(v) for v in values):
        return math.nan, math.nan
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else math.nan


@dataclass
class LabResult:
    rows: list[LabRow] = field(default_factory=list)
    n: int = 0
    seeds: int = 1                  # K: each cell's repeats
    seed: int = 0                   # the base seed the K seeds derive from
    threshold: float = 0.0          # QUANTILE of K-seed means of exact-sample energy distances
    quantile: float = QUANTILE
    null_draws: int = 0             # exact samples behind the threshold, over all seeds
    floor: float = 0.0              # mean energy distance of an exact sample (≈ 0: the U-statistic is unbiased)
    floor_sd: float = 0.0           # sd of one exact sample's energy distance
    floor_max: float = 0.0          # the largest of the null draws
    floor_mode_weight_error: float = 0.0      # mean mode-weight TV of an exact sample
    threshold_mode_weight_error: float = 0.0  # QUANTILE of K-seed means of that TV
    seconds: float = 0.0
    notes: dict = field(default_factory=dict)    # sampler → range note of the model, if it extrapolates

    def sources(self) -> list[str]:
        present = {r.source for r in self.rows}
        return [s for s in SOURCES if s in present]

    def cells(self, sampler: str, source: str) -> list[LabRow]:
        return sorted((r for r in self.rows if r.sampler == sampler and r.source == source), key=lambda r: r.nfe)

    def curve(self, sampler: str, source: str) -> tuple[list[int], list[float], list[float]]:
        """(NFE spent, mean energy distance, its sd) of one sampler and source, by NFE."""
        rows = self.cells(sampler, source)
        return [r.nfe for r in rows], [r.energy_distance for r in rows], [r.energy_distance_sd for r in rows]

    def nfe_to_reach(self, sampler: str, source: str, threshold: float | None = None) -> int | None:
        """The smallest NFE at which the mean energy distance is ≤ threshold (default `self.threshold`;
        None: never within the NFE tried)."""
        limit = self.threshold if threshold is None else threshold
        for r in self.cells(sampler, source):
            if not r.error and r.energy_distance <= limit:
                return r.nfe
        return None

    def decomposition(self) -> list[dict]:
        """Per sampler and NFE target, the energy distance split by cause, each a mean ± sd of the
        per-seed (paired) values: discretisation = exact·exact-start, prior = exact − exact·exact-start,
        model = model − exact (only with a model). nan where a chain diverged."""
        table = {(r.sampler, r.source, r.nfe_target): r for r in self.rows}
        out = []
        for sampler in dict.fromkeys(r.sampler for r in self.rows):
            for nfe in sorted({r.nfe_target for r in self.rows if r.sampler == sampler}):
                row = {"sampler": sampler, "nfe_target": nfe}
                for name, a, b in (("discretisation", EXACT_START, None), ("prior", EXACT, EXACT_START),
                                   ("model", MODEL, EXACT)):
                    ra, rb = table.get((sampler, a, nfe)), table.get((sampler, b, nfe)) if b else None
                    if ra is None or (b and rb is None):
                        continue
                    per_seed = ([x - y for x, y in zip(ra.energy_distances, rb.energy_distances)] if rb
                                else list(ra.energy_distances))
                    ok = not ra.error and not (rb and rb.error) and len(per_seed) == self.seeds
                    row[name], row[f"{name}_sd"] = _mean_sd(per_seed) if ok else (math.nan, math.nan)
                out.append(row)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "LabResult":
        """The inverse of `to_dict` (the decomposition is recomputed from the rows)."""
        names = set(cls.__dataclass_fields__) - {"rows"}
        return cls(rows=[LabRow(**r) for r in d.get("rows", [])], **{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        head = {k: v for k, v in asdict(self).items() if k != "rows"}
        return {**head, "rows": [asdict(r) for r in self.rows], "decomposition": self.decomposition()}

    def to_csv(self) -> str:
        """One line per sampler × source × NFE: mean and sd over the seeds, the number of seeds, and the
        run's threshold with whether the mean reached it."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_FIELDS + ["seeds", "threshold", "reached"])
        w.writeheader()
        for r in self.rows:
            d = {k: v for k, v in asdict(r).items() if k in CSV_FIELDS}
            w.writerow({**d, "seeds": self.seeds, "threshold": self.threshold,
                        "reached": int(not r.error and r.energy_distance <= self.threshold)})
        return buf.getvalue()


def seed_streams(seed: int, seeds: int) -> list[int]:
    """The K per-seed generator seeds derived from the base seed (seed k is the same for any K ≥ k + 1)."""
    g = torch.Generator().manual_seed(seed)
    return [int(torch.randint(0, 2**62, (1,), generator=g)) for _ in range(seeds)]


def quantile_of_means(pools: list[list[float]], quantile: float = QUANTILE, resamples: int = RESAMPLES,
                      seed: int = 0) -> float:
    """The `quantile` of the mean over K seeds of one value per seed, estimated by resampling: `resamples`
    means of one value drawn at random from each seed's pool (`pools[k]`, the null draws of seed k)."""
    if not pools or not all(pools):
        raise ValueError("every seed needs at least one null draw")
    g = torch.Generator().manual_seed(seed)
    means = torch.zeros(resamples, dtype=torch.float64)
    for pool in pools:
        p = torch.tensor(pool, dtype=torch.float64)
        means += p[torch.randint(0, len(p), (resamples,), generator=g)]
    return float(torch.quantile(means / len(pools), quantile))


@dataclass
class _Seed:
    ref: torch.Tensor
    ref_self: float
    z: torch.Tensor
    noise_seed: int
    start_seed: int
    null_ed: list[float]
    null_mw: list[float]


def references(density, n: int, seeds: int = 1, seed: int = 0) -> list[torch.Tensor]:
    """The K reference samples `run_lab` compares with (seed k's: the first draw of its generator)."""
    return [density.sample(n, torch.Generator().manual_seed(s)) for s in seed_streams(seed, seeds)]


def _draw_seed(density, n: int, seed: int, null_draws: int,
               cancelled: Callable[[], bool] = lambda: False) -> _Seed | None:
    gen = torch.Generator().manual_seed(seed)
    ref = density.sample(n, gen)              # first: `references` relies on it
    z = torch.randn(ref.shape, generator=gen)
    noise_seed, start_seed = (int(torch.randint(0, 2**62, (1,), generator=gen)) for _ in range(2))
    ref_self = mean_pairwise_distance(ref)
    null_ed, null_mw = [], []
    for _ in range(null_draws):
        if cancelled():
            return None
        other = density.sample(n, gen)
        null_ed.append(energy_distance(other, ref, ref_self))
        null_mw.append(mode_weight_error(other, density))
    return _Seed(ref, ref_self, z, noise_seed, start_seed, null_ed, null_mw)


def null_distribution(density, n: int, seeds: int = 1, seed: int = 0, null_draws: int = NULL_DRAWS,
                      quantile: float = QUANTILE) -> tuple[list[list[float]], float]:
    """(per-seed pools of exact-sample energy distances, the threshold) exactly as `run_lab` draws them."""
    draws = [_draw_seed(density, n, s, null_draws) for s in seed_streams(seed, seeds)]
    pools = [d.null_ed for d in draws]
    return pools, quantile_of_means(pools, quantile, seed=seed)


def default_options(samplers, cfg: fitting.ToyConfig) -> dict:
    """{name: options} for run_lab: each sampler's command-line defaults for a model trained with cfg."""
    method = fitting.method_for(cfg)
    return {name: method.sampler_defaults(name) for name in samplers}


def run_lab(density, model: ScoreModel | None, exact: ScoreModel, samplers=LAB_SAMPLERS, nfes=NFE_GRID,
            options: dict[str, SamplerOptions] | None = None, n: int = 2000, seed: int = 0, seeds: int = 1,
            null_draws: int = NULL_DRAWS, quantile: float = QUANTILE, model_exact_start: bool = False,
            progress: Callable[[float, str], None] | None = None,
            cancelled: Callable[[], bool] = lambda: False) -> LabResult | None:
    """Every (seed, sampler, NFE, source) run; `model` None runs the exact score only (sources
    exact·exact-start and exact). `exact` must be the exact score of `density` over the model's σ
    range (and schedule). Chains step together (one batched evaluation per score model and round).
    Returns None if cancelled."""
    start = time.perf_counter()
    for s in samplers:
        sampler_class(s)                       # ValueError naming an unknown one and the choices
    if seeds < 1 or null_draws < 1 or n < 2:
        raise ValueError(f"the lab needs seeds ≥ 1, null_draws ≥ 1 and n ≥ 2 (got {seeds}, {null_draws}, {n})")
    if not 0 < quantile < 1:
        raise ValueError(f"the threshold quantile must lie in (0, 1), got {quantile}")
    options = options or {}
    draws = []
    for s in seed_streams(seed, seeds):
        d = _draw_seed(density, n, s, null_draws, cancelled)
        if d is None:
            return None
        draws.append(d)
    pools = [d.null_ed for d in draws]
    all_null = torch.tensor([v for p in pools for v in p], dtype=torch.float64)
    all_mw = [v for d in draws for v in d.null_mw]
    result = LabResult(n=n, seeds=seeds, seed=seed, quantile=quantile, null_draws=len(all_null),
                       threshold=quantile_of_means(pools, quantile, seed=seed),
                       floor=float(all_null.mean()), floor_sd=float(all_null.std()) if len(all_null) > 1 else 0.0,
                       floor_max=float(all_null.max()), floor_mode_weight_error=sum(all_mw) / len(all_mw),
                       threshold_mode_weight_error=quantile_of_means([d.null_mw for d in draws], quantile, seed=seed))
    sources = [(EXACT_START, exact, "exact"), (EXACT, exact, "prior")]
    if model is not None:
        sources.append((MODEL, model, "prior"))
        if model_exact_start:
            sources.append((MODEL_EXACT_START, model, "exact"))
    values: dict[tuple[str, str, int], list] = {}     # (sampler, source, nfe) → [(ed, mw, error, nfe, steps)]
    total_cost = seeds * sum(nfes) * len(samplers) * len(sources)
    done_cost = 0
    for k, d in enumerate(draws):
        for nfe in nfes:
            chains, keys = [], []
            for name in samplers:
                o = options.get(name) or SamplerOptions()
                built = {src: build_sampler(name, sm, o, nfe=nfe, steps=None) for src, sm, _ in sources}
                # the Gaussian start of the model's sampler when there is a model (both rows share it)
                prior = prior_sample(built[MODEL if model is not None else EXACT], d.z)
                exact_start = exact_prior_sample(built[EXACT_START], n, torch.Generator().manual_seed(d.start_seed))
                for src, sm, kind in sources:
                    sampler = built[src]
                    x0 = (prior if kind == "prior" else exact_start).clone()
                    # the same noise stream for every sampler and source
                    chains.append(ChainState(sampler, x0, torch.Generator().manual_seed(d.noise_seed)))
                    keys.append((name, src, nfe))
                    if sm is model and name not in result.notes:
                        note = sm.range_note(sampler.sigmas_used())
                        if note:
                            result.notes[name] = note
            if not advance_together(chains, [c.sampler.n_steps for c in chains], cancelled):
                return None
            for key, c in zip(keys, chains):
                finite = not c.error and bool(torch.isfinite(c.x).all())
                ed = energy_distance(c.x, d.ref, d.ref_self) if finite else math.nan
                mw = mode_weight_error(c.x, density) if finite else math.nan
                error = c.error or ("" if finite else "non-finite particles")
                values.setdefault(key, []).append((ed, mw, error, c.sampler.nfe, c.sampler.n_steps))
            done_cost += nfe * len(samplers) * len(sources)
            if progress:
                progress(done_cost / total_cost, f"seed {k + 1}/{seeds}, NFE {nfe}")
    for name in samplers:
        for src, _, _ in sources:
            for nfe in nfes:
                cells = values[(name, src, nfe)]
                eds, mws = [c[0] for c in cells], [c[1] for c in cells]
                errors = [c[2] for c in cells if c[2]]
                ed, ed_sd = _mean_sd(eds)
                mw, mw_sd = _mean_sd(mws)
                result.rows.append(LabRow(name, src, nfe, cells[0][3], cells[0][4], ed, ed_sd, mw, mw_sd,
                                          sum(math.isfinite(v) for v in eds),
                                          f"{len(errors)}/{seeds} seeds: {errors[0]}" if errors else "", eds, mws))
    result.seconds = time.perf_counter() - start
    return result


def _cell(r: LabRow | None) -> str:
    if r is None:
        return ""
    if r.error:
        return "div."
    return f"{r.energy_distance:.4f}" + (f"±{r.energy_distance_sd:.4f}" if math.isfinite(r.energy_distance_sd) else "")


def format_table(result: LabResult) -> str:
    """The lab as text: energy distance (mean ± sd over the seeds) per sampler and source (rows) and NFE
    (columns), the NFE at which each reaches the threshold, and the error decomposition."""
    nfes = sorted({r.nfe_target for r in result.rows})
    samplers = list(dict.fromkeys(r.sampler for r in result.rows))
    sources = result.sources()
    table = {(r.sampler, r.source, r.nfe_target): r for r in result.rows}
    w = 16
    lines = [f"energy distance (U-statistic) to an exact reference sample of n = {result.n}: mean ± sd over "
             f"{result.seeds} seed(s) from base seed {result.seed}",
             f"threshold {result.threshold:.4f} = {result.quantile:.0%} quantile of the {result.seeds}-seed mean of an "
             f"independent exact sample's energy distance ({result.null_draws} null draws; one exact sample: "
             f"{result.floor:.4f} ± {result.floor_sd:.4f})",
             f"{'sampler':<10} {'source':<18} " + " ".join(f"{n:>{w}}" for n in nfes)]
    for s in samplers:
        for src in sources:
            if any((s, src, n) in table for n in nfes):
                lines.append(f"{s:<10} {src:<18} " + " ".join(f"{_cell(table.get((s, src, n))):>{w}}" for n in nfes))
    lines.append("")
    lines.append(f"NFE to reach the threshold {result.threshold:.4f} ('—': not within the NFE tried)")
    lines.append(f"{'sampler':<10} " + " ".join(f"{src:>18}" for src in sources))
    for s in samplers:
        lines.append(f"{s:<10} " + " ".join(f"{str(result.nfe_to_reach(s, src) or '—'):>18}" for src in sources))
    lines.append("")
    lines.append("error decomposition, mean ± sd of per-seed differences: discretisation = exact·exact-start; "
                 "prior = exact − exact·exact-start; model = model − exact")
    parts = [p for p in ("discretisation", "prior", "model") if any(p in row for row in result.decomposition())]
    lines.append(f"{'sampler':<10} {'NFE':>5} " + " ".join(f"{p:>{w}}" for p in parts))
    for row in result.decomposition():
        lines.append(f"{row['sampler']:<10} {row['nfe_target']:>5} " + " ".join(
            f"{_pm(row.get(p), row.get(p + '_sd')):>{w}}" for p in parts))
    for s, note in result.notes.items():
        lines.append(f"note ({s}): {note}")
    return "\n".join(lines)


def _pm(mean, sd) -> str:
    if mean is None:
        return ""
    if not math.isfinite(mean):
        return "div."
    return f"{mean:.4f}" + (f"±{sd:.4f}" if sd is not None and math.isfinite(sd) else "")
