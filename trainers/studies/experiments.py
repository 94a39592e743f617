"""Guided experiments: each claim of the lecture reproduced, measured over several seeds, and judged.

An experiment has a name, a title, the claim, the expected outcome in words, the criterion, default
parameters (a dict the user may override, values of the defaults' types), a *negative control* (the same
experiment with the mechanism the claim is about removed: an untrained network, one noise level, no
annealing, no noise, no finite training set …) and a body run once per seed. `run(params, progress,
control=False) -> ExperimentResult` runs the body for seeds seed, seed+1, …, seed+seeds−1, keeps every
per-seed figure, and judges the claim on their means with a margin of t·SE (SE = sd/√seeds over the
seeds, t the one-sided 95 % Student quantile with seeds−1 degrees of freedom): a claim "a < b" holds only
if mean(a) + t·SE(a) < b, so it cannot hold by a seed's luck. Each criterion is one that an untrained
network or a do-nothing sampler does not satisfy, and each control must come out "does not hold".

"Reaches the density" is judged one way throughout: the excess energy distance of a sample over the
median energy distance of exact samples of the same size to the same reference (computed per seed from
`null_reps` exact draws), + t·SE, must be below `reach_share` × the excess of a sample of the
moment-matched Gaussian N(m, Σ) (a model that knows only the mean and covariance): the sample is that
many times closer to the density than the best Gaussian. The exact samples' 95th percentile and the
sampler's start (what a do-nothing sampler scores) are reported beside it.

Every run uses fixed seeds and one torch thread.

This module is the registry (EXPERIMENTS, `register`, the listing order), the runner and the command line.
The experiments themselves live in the `*_experiments.py` files of this folder, one file per group
(objective_, sampling_, solver_, flow_, guidance_experiments), each registering its own; their shared
kit (the trained-model cache, the reference sample) is experiment_kit.py.

    python -m trainers.studies.experiments list
    python -m trainers.studies.experiments run langevin-mode-weights [--json] [--control] [n=4000 seeds=5]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .experiment_kit import Progress, clear_cache    # noqa: F401  (clear_cache: public here, as before)

_T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812}


def t95(df: int) -> float:
    """The one-sided 95 % quantile of Student's t with df degrees of freedom (df > 10: within 0.002)."""
    if df < 1:
        raise ValueError("the t quantile needs at least 1 degree of freedom (2 seeds)")
    return _T95.get(df, 1.645 + 1.6 / df)


class Stats:
    """Per-seed values of named figures: mean, sd (n−1), se = sd/√n and the one-sided 95 % bounds
    mean ± t·se (paired comparisons are per-seed figures of their own, e.g. a difference per seed)."""

    def __init__(self, per_seed: dict[str, list[float]]):
        self.per_seed = per_seed

    def values(self, key: str) -> torch.Tensor:
        return torch.tensor(self.per_seed[key], dtype=torch.float64)

    def n(self, key: str) -> int:
        return len(self.per_seed[key])

    def mean(self, key: str) -> float:
        return float(self.values(key).mean())

    def sd(self, key: str) -> float:
        v = self.values(key)
        return float(v.std()) if len(v) > 1 else float("nan")

    def se(self, key: str) -> float:
        return self.sd(key) / math.sqrt(self.n(key))

    def margin(self, key: str) -> float:
        return t95(self.n(key) - 1) * self.se(key)

    def hi(self, key: str) -> float:
        """mean + t·se: the figure is below this with 95 % confidence."""
        return self.mean(key) + self.margin(key)

    def lo(self, key: str) -> float:
        """mean − t·se: the figure is above this with 95 % confidence."""
        return self.mean(key) - self.margin(key)

    def pm(self, key: str, fmt: str | None = None) -> str:
        """'mean ± sd' for a sentence (by default rounded to the spread's second significant digit)."""
        if fmt is None:
            return format_value(self.mean(key), self.sd(key))
        return f"{self.mean(key):{fmt}} ± {self.sd(key):{fmt}}"


@dataclass
class ExperimentResult:
    name: str
    figures: dict[str, float]      # named measured numbers: the mean over the seeds
    holds: bool                    # the criterion, evaluated on the figures' means and standard errors
    criterion: str                 # the criterion in words
    measured: str                  # one sentence: what was measured (mean ± sd over the seeds)
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    spread: dict[str, float] = field(default_factory=dict)            # sd over the seeds
    per_seed: dict[str, list[float]] = field(default_factory=dict)    # every seed's value
    seeds: list[int] = field(default_factory=list)
    control: bool = False          # True: the negative control ran (the mechanism removed)
    control_what: str = ""         # what the control removes
    labels: dict[str, str] = field(default_factory=dict)             # short labels of the figures

    def label(self, key: str) -> str:
        return self.labels.get(key, key.replace("_", " "))

    def to_dict(self) -> dict:
        return {"name": self.name, "holds": self.holds, "control": self.control, "control_what": self.control_what,
                "criterion": self.criterion, "measured": self.measured, "seeds": self.seeds,
                "figures": self.figures, "spread": self.spread, "per_seed": self.per_seed,
                "labels": self.labels, "params": self.params, "seconds": self.seconds}


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    claim: str
    expected: str
    criterion: str
    control: str                   # what the negative control removes (it must come out "does not hold")
    defaults: dict
    body: Callable = field(repr=False, compare=False)    # body(p, seed, control, progress) -> figures of one seed
    judge: Callable = field(repr=False, compare=False)   # judge(stats, p) -> (holds, measured)
    labels: dict = field(default_factory=dict, repr=False, compare=False)

    def params(self, overrides: dict | None = None) -> dict:
        """The defaults with `overrides` applied; strings are converted to the default's type.
        An unknown key or a value that does not convert raises ValueError naming it."""
        p = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in p:
                raise ValueError(f"{self.name} has no parameter {key!r}; it takes {', '.join(p)}")
            p[key] = _convert(key, value, p[key])
        if p.get("seeds", 2) < 2:
            raise ValueError("seeds must be at least 2 (the verdict uses the spread over seeds)")
        return p

    def run(self, params: dict | None = None, progress: Progress | None = None,
            control: bool = False) -> ExperimentResult:
        """Run the body for each seed (control: with the mechanism removed) and judge the claim."""
        p = self.params(params)
        report = progress or (lambda frac, text: None)
        seeds = [p["seed"] + i for i in range(p["seeds"])]
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        start = time.perf_counter()
        per_seed: dict[str, list[float]] = {}
        try:
            for i, seed in enumerate(seeds):
                def sub(frac, text, i=i, seed=seed):
                    report((i + frac) / len(seeds), f"seed {seed} ({i + 1}/{len(seeds)}): {text}")
                sub(0.0, "start")
                figures = self.body(p, seed, control, sub)
                for key, value in figures.items():
                    per_seed.setdefault(key, []).append(float(value))
            stats = Stats(per_seed)
            holds, measured = self.judge(stats, p)
        finally:
            torch.set_num_threads(before)
        report(1.0, "done")
        if control:
            measured = f"CONTROL ({self.control}): {measured}"
        figures = {k: stats.mean(k) for k in per_seed}
        spread = {k: stats.sd(k) for k in per_seed}
        return ExperimentResult(self.name, figures, bool(holds), self.criterion, measured, p,
                                time.perf_counter() - start, spread, per_seed, seeds, control,
                                self.control if control else "", dict(self.labels))


def _convert(key: str, value, default):
    """`value` as the type of `default` (strings from the command line are parsed)."""
    kind = type(default)
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            if kind is bool:
                if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                    raise ValueError
                return text in ("1", "true", "yes", "on")
            return kind(text)
        except ValueError:
            _bad(key, value, default)
    if kind is bool:
        if not isinstance(value, bool):
            _bad(key, value, default)
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _bad(key, value, default)
        if kind is int and not float(value).is_integer():
            _bad(key, value, default)
        return kind(value)
    if not isinstance(value, kind):
        _bad(key, value, default)
    return value


def _bad(key, value, default):
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        type(default), type(default).__name__)
    raise ValueError(f"{key} must be {kind}, got {value!r}")


# ------------------------------------------------------------------ the registry
EXPERIMENTS: dict[str, Experiment] = {}

# The listing order (the CLI's `list`, the Experiments tab, the explorer's menu): the lecture's, then the
# issues' (#21 flow matching, #22 guidance). An experiment not named here follows these, in the order it
# was registered; a new one needs no edit here.
LISTING = ("score-wrong-without-data", "ssm-needs-noise", "langevin-mode-weights", "noise-levels-fix-both",
           "ddpm-forward-reverse", "ebm-vs-score", "few-steps", "one-model", "memorisation",
           "dpmpp-lower-order-final", "fm-same-map", "reflow-straightens", "ot-straightens",
           "guidance-diversity", "cfg-not-tilted", "autoguidance-modes")


def register(*experiments: Experiment) -> None:
    """Add experiments to EXPERIMENTS (a name taken by another experiment: ValueError), in listing order."""
    for e in experiments:
        if EXPERIMENTS.get(e.name, e) is not e:
            raise ValueError(f"experiment {e.name!r} is registered twice")
        EXPERIMENTS[e.name] = e
    _keep_listing_order()


def _keep_listing_order() -> None:
    rank = {name: i for i, name in enumerate(LISTING)}
    ordered = sorted(EXPERIMENTS.items(), key=lambda item: rank.get(item[0], len(rank)))    # stable sort
    EXPERIMENTS.clear()
    EXPERIMENTS.update(ordered)


def _import_experiment_files() -> None:
    """Every `*_experiments.py` module of this folder registers its experiments when imported
    (objective_, sampling_, solver_, flow_, guidance_experiments, …): a new experiment file needs no
    other edit."""
    import importlib
    import pkgutil
    from pathlib import Path
    for m in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if m.name.endswith("_experiments"):
            importlib.import_module(f"{__package__}.{m.name}")
    _keep_listing_order()     # files that add to EXPERIMENTS directly (EXPERIMENTS.setdefault)


_import_experiment_files()


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def run(name: str, params: dict | None = None, progress: Progress | None = None,
        control: bool = False) -> ExperimentResult:
    return get(name).run(params, progress, control)


class Cancelled(Exception):
    """Raised from the progress callback to stop an experiment."""


def run_until_cancelled(experiment: Experiment, params: dict, progress: Progress,
                        cancelled: Callable[[], bool], control: bool = False) -> ExperimentResult | None:
    """experiment.run(params, control=control) reporting to `progress`; None once a progress report sees
    cancelled(). The report raises `Cancelled` inside `run`, which unwinds it (its `finally` restores
    torch's thread count); experiments report between their phases (every 5 % of a training run, before
    each sampler), so a cancel takes effect at the end of the phase in flight."""
    def report(frac: float, text: str):
        if cancelled():
            raise Cancelled
        progress(float(frac), str(text))

    try:
        return experiment.run(params, report, control)
    except Cancelled:
        return None


def short_label(result: ExperimentResult, key: str) -> str:
    """A figure's short label: the experiment's own, else its name with spaces."""
    return result.labels.get(key) or key.replace("_", " ")


def format_value(mean: float, sd: float | None = None) -> str:
    """'mean ± sd' rounded to the spread's second significant digit (4 without a spread)."""
    if not math.isfinite(mean):
        return f"{mean}"
    if sd is None or not math.isfinite(sd) or sd <= 1e-12 * max(1.0, abs(mean)):
        return f"{mean:.4g}"
    digits = max(0, min(8, 1 - int(math.floor(math.log10(abs(sd))))))
    if abs(mean) >= 1e5 or (mean != 0 and abs(mean) < 1e-4 and sd < 1e-4):
        return f"{mean:.2e} ± {sd:.1e}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


# ------------------------------------------------------------------ command line


def format_result(result: ExperimentResult) -> str:
    e = EXPERIMENTS[result.name]
    verdict = "holds" if result.holds else "does NOT hold"
    lines = [f"{e.name}: {e.title}" + ("  [NEGATIVE CONTROL]" if result.control else ""),
             f"claim:     {e.claim}", f"expected:  {e.expected}"]
    if result.control:
        lines.append(f"control:   {result.control_what} (must not hold)")
    lines += [f"measured:  {result.measured}", f"criterion: {result.criterion}",
              f"verdict:   {verdict}  (seeds {', '.join(map(str, result.seeds))}; {result.seconds:.1f} s)",
              "figures (mean ± sd over the seeds; per seed):"]
    width = max(len(k) for k in result.figures)
    for k, v in result.figures.items():
        seeds = ", ".join(f"{x:.4g}" for x in result.per_seed.get(k, []))
        lines.append(f"  {k:<{width}}  {format_value(v, result.spread.get(k)):>22}   [{seeds}]")
    return "\n".join(lines)


def _fail(message: str) -> int:
    sys.stderr.write(f"experiments: error: {message}\n")
    return 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one clear line instead of usage + message
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def main(argv=None) -> int:
    parser = _Parser(prog="experiments", description="Guided experiments: each claim reproduced and checked.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="the experiments, their claims and default parameters")
    r = sub.add_parser("run", help="run one experiment headless and print its figures")
    r.add_argument("name")
    r.add_argument("params", nargs="*", help="parameter overrides, key=value")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.add_argument("--control", action="store_true",
                   help="run the negative control (the mechanism removed); it must come out 'does not hold'")
    args, extra = parser.parse_known_args(argv)     # key=value may come before or after --json
    unknown = [a for a in extra if a.startswith("-") or args.command != "run"]
    if unknown:
        return _fail(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "list":
        for e in EXPERIMENTS.values():
            defaults = " ".join(f"{k}={v}" for k, v in e.defaults.items())
            print(f"{e.name}\n  {e.title}\n  claim:    {e.claim}\n  expected: {e.expected}\n"
                  f"  control:  {e.control}\n  defaults: {defaults}\n")
        return 0
    if args.name not in EXPERIMENTS:
        return _fail(f"unknown experiment {args.name!r}; choose one of {', '.join(EXPERIMENTS)}")
    overrides = {}
    for item in [*args.params, *extra]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            return _fail(f"parameters are key=value, got {item!r}")
        overrides[key] = value
    exp = EXPERIMENTS[args.name]
    try:
        exp.params(overrides)
    except ValueError as e:
        return _fail(str(e))
    try:
        result = exp.run(overrides, control=args.control)
    except ValueError as e:          # e.g. an unknown density name
        return _fail(str(e))
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_result(result))
    return 0


if __name__ == "__main__":
    # the imported module's main: experiments registered from other modules (flow_experiments) went into
    # trainers.studies.experiments.EXPERIMENTS, not into this __main__ copy's
    from trainers.studies.experiments import main as _main
    sys.exit(_main())
