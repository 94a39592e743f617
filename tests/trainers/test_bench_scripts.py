"""The machinery of benchmarks/bench_guidance.py and benchmarks/bench_flow.py on tiny sizes: the tables have
the expected rows, the numbers are finite, the verdicts and their controls are reported (the figures
themselves are the scripts' full runs, quoted in the README)."""
from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.bench_{name}")


def test_bench_guidance_tiny():
    bg = _load("guidance")
    d, c = bg.densities()["off-centre"]
    assert abs(float(d.mean()[0]) - 2.8) < 0.1 and d.class_weights().tolist() == pytest.approx([0.6, 0.3, 0.1])
    r, vs = bg.bench(d, c, ws=(0.0, 1.0), samplers=("ddpm", "ddim", "pf-ode"), n=48, seeds=2, null_draws=2, grid=96,
                     options={"ddpm": {"nfe": 40}, "ddim": {"nfe": 10}, "pf-ode": {"nfe": 10}})
    assert {(row.sampler, row.w) for row in r.rows} == {(s, w) for s in ("ddpm", "ddim", "pf-ode") for w in (0.0, 1.0)}
    for row in r.rows:
        assert all(math.isfinite(v) for v in row.per_seed["to_tilted"] + row.per_seed["to_conditional"])
        assert len(row.per_seed["to_tilted"]) == 2
    assert math.isfinite(r.threshold_conditional) and all(math.isfinite(t) for t in r.threshold_tilted.values())
    assert [v.claim.split(":")[0] for v in vs] == ["w = 0", "w ≥ 1", "w ≥ 1"]
    table = bg.format_bench(r, vs)
    assert table.count("\n| ddpm | 40 |") == 2 and table.count("control") == 3
    with pytest.raises(ValueError, match="w = 0"):
        bg.verdicts(r, ("ddpm",), (1.0,))


def test_bench_flow_tiny():
    bf = _load("flow")
    d = bf.densities()["off-centre"]
    assert float(d.mean().norm()) > 3 and not d.labelled
    b = bf.bench(d, n=40, seeds=2, steps=15, width=16, batch=32, reflow_steps=10, pairs=64, pair_nfe=4, nfe=4,
                 null_draws=2, progress=None)
    assert set(b.per_seed) == set(bf.FLOWS) and bf.figure_names(4) == ("ed_1", "ed_2", "ed_4", "ed_8", "straightness")
    for flow in bf.FLOWS:
        for fig in bf.figure_names(4):
            assert len(b.per_seed[flow][fig]) == 2 and all(math.isfinite(v) for v in b.per_seed[flow][fig])
    assert math.isfinite(b.threshold)
    vs = bf.verdicts(b)
    assert len(vs) == 3 and all(isinstance(v.control_holds, bool) for v in vs)
    table = bf.format_bench(b, vs)
    assert all(f"| {flow} |" in table for flow in bf.FLOWS)
    with pytest.raises(ValueError, match="seeds ≥ 2"):
        bf.bench(d, seeds=1)
