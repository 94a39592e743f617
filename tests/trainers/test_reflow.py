"""Rectified flow: reflow's pairs come from the model's own flow ODE, one round lowers the straightness
of the paths (paired over the same z, margin 3 standard errors), and the CLI's reflow / evaluate."""
from __future__ import annotations

import json

import pytest
import torch

from trainers import toy
from trainers.densities import preset
from trainers.fitting import ToyConfig, load_checkpoint, score_model, train
from trainers.flows import straightness
from trainers.samplers import build_sampler, prior_sample
from trainers.studies.reflow import flow_paths, reflow, reflow_pairs

SMALL = dict(density="two_gaussians", objective="fm", steps=600, width=64, depth=2, batch=256, seed=0)


@pytest.fixture(scope="module")
def fm_model():
    cfg, d = ToyConfig(**SMALL), preset("two_gaussians")
    return train(cfg, d)[0], cfg, d


def test_reflow_pairs_are_the_models_own_ode_endpoints(fm_model):
    model, cfg, d = fm_model
    sm = score_model(model, cfg, d)
    pairs = reflow_pairs(sm, 50, nfe=9, seed=3)
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(3))
    s = build_sampler("flow", sm, solver="heun", nfe=9)
    assert torch.equal(pairs[:, 1], z)
    assert torch.equal(pairs[:, 0], s.run(prior_sample(s, z)).x)


def test_straightness_is_zero_on_straight_paths_and_positive_on_curved_ones():
    ts = torch.linspace(1, 0, 11).tolist()
    a, b = torch.randn(5, 2), torch.randn(5, 2)
    path = torch.stack([(1 - t) * a + t * b for t in ts])
    v = torch.stack([b - a] * 10)
    assert float(straightness(path, ts, v).abs().max()) < 1e-10
    bent = v.clone()
    bent[:5] += 1.0
    bent[5:] -= 1.0
    assert float(straightness(path, ts, bent).min()) == pytest.approx(2.0, rel=1e-6)      # ‖±(1, 1)‖² = 2


def test_one_reflow_round_lowers_the_straightness(fm_model):
    """Paired over the same 400 z: S_A − S_B per path, mean − 3 SE > 0; and the Euler 1-step sample moves
    less far from its 100-step end after reflow."""
    model, cfg, d = fm_model
    b, cfg_b, info = reflow(model, cfg, d, steps=300, pairs=2000, nfe=20)
    assert cfg_b.objective == "fm" and info["pairs"] == 2000
    z = torch.randn(400, 2, generator=torch.Generator().manual_seed(11))
    sa = straightness(*flow_paths(score_model(model, cfg, d), z, 50))
    sb = straightness(*flow_paths(score_model(b, cfg_b, d), z, 50))
    diff = sa - sb
    assert float(diff.mean() - 3 * diff.std() / len(diff) ** 0.5) > 0, (float(sa.mean()), float(sb.mean()))


def test_cli_reflow_and_straightness_in_evaluate(fm_model, tmp_path, capsys):
    model, cfg, d = fm_model
    a = tmp_path / "a.pt"
    assert toy.main(["train", "--density", "two_gaussians", "--objective", "fm", "--coupling", "ot", "--steps", "20",
                     "--width", "32", "--depth", "1", "--batch", "64", "--out", str(a)]) == 0
    b = tmp_path / "b.pt"
    assert toy.main(["reflow", "--ckpt", str(a), "--out", str(b), "--steps", "10", "--pairs", "100", "--nfe", "4"]) == 0
    _, cfg_b, _, extra = load_checkpoint(b)
    assert cfg_b.objective == "fm" and cfg_b.extra == {"coupling": "ot"} and extra["reflow"]["rounds"] == 1
    capsys.readouterr()
    assert toy.main(["evaluate", "--ckpt", str(b), "--density", "two_gaussians", "--n", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sampler"] == "flow" and out["straightness"] > 0 and out["straightness_se"] > 0
    n = tmp_path / "n.pt"
    assert toy.main(["train", "--density", "two_gaussians", "--steps", "5", "--width", "16", "--out", str(n)]) == 0
    capsys.readouterr()
    assert toy.main(["reflow", "--ckpt", str(n), "--out", str(tmp_path / "x.pt")]) == 1
    assert "flow-matching" in capsys.readouterr().err


def test_reflow_round_reports_before_and_after_and_returns_none_when_cancelled(fm_model):
    from trainers.studies.reflow import reflow_round
    model, cfg, d = fm_model
    seen = []
    r = reflow_round(model, cfg, d, steps=100, pairs=500, nfe=10, n_eval=200, progress=lambda f, w: seen.append(f))
    assert r.cfg.objective == "fm" and r.info["steps"] == 100 and seen[-1] == 1.0
    assert r.straightness_after["straightness"] < r.straightness_before["straightness"]
    assert r.one_step_after < r.one_step_before
    assert reflow_round(model, cfg, d, steps=100, pairs=500, nfe=10, cancelled=lambda: True) is None
