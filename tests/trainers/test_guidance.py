"""Guidance as a score-model wrapper (CFG, autoguidance) and the exact tilted target."""
import math

import numpy as np
import pytest
import torch

from trainers import samplers
from trainers.densities import GaussianMixture, preset
from trainers.fitting import initial_for
from trainers.guidance import Guided, TiltedTarget, autoguidance, cfg, exact_cfg
from trainers.metrics import energy_distance
from trainers.schedules import DDPMSchedule
from trainers.score_models import ExactScore, Query


def _density():
    # a labelled mixture no preset or other test uses
    return GaussianMixture([0.2, 0.3, 0.5], [[-1.5, 0.0], [1.0, 1.0], [0.5, -1.0]],
                           np.tile(np.eye(2) * 0.3, (3, 1, 1)), labels=[0, 1, 1], classes=["x", "y"])


@pytest.mark.parametrize("w", [0.0, 1.0, 4.0, -0.5])
def test_guided_exact_score_is_the_tilted_noised_score_by_autograd(w):
    d, c, sigma = _density(), "y", 0.6
    g = exact_cfg(d, c, w)
    x = torch.randn(300, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    xs = x.clone().requires_grad_(True)
    logp = (1 + w) * d.conditional(c).noised(sigma).log_prob(xs) - w * d.noised(sigma).log_prob(xs)
    (grad,) = torch.autograd.grad(logp.sum(), xs)
    torch.testing.assert_close(g.score(x, sigma), grad, rtol=1e-5, atol=1e-5)   # σ is float32 in a Query


def test_cfg_at_w0_is_conditional_and_at_minus_one_unconditional_for_score_and_eps():
    d = _density()
    cond, uncond = ExactScore(d.conditional(1)), ExactScore(d)
    sched = DDPMSchedule.from_name("linear", 100)
    x = torch.randn(50, 2, dtype=torch.float64)
    for q in (Query.score(x, 0.4), Query.eps(x, 30, sched)):
        torch.testing.assert_close(cfg(cond, uncond, 0.0).evaluate([q])[0], cond.evaluate([q])[0])
        torch.testing.assert_close(cfg(cond, uncond, -1.0).evaluate([q])[0], uncond.evaluate([q])[0])
        # ε = −σ s: the same combination in either parameterisation
        mix = cfg(cond, uncond, 2.0).evaluate([q])[0]
        torch.testing.assert_close(mix, 3 * cond.evaluate([q])[0] - 2 * uncond.evaluate([q])[0])


def test_autoguidance_with_bad_equal_good_is_the_plain_model():
    good = ExactScore(preset("tree"))
    x = torch.randn(40, 2, dtype=torch.float64)
    for w in (0.5, 3.0):
        torch.testing.assert_close(autoguidance(good, good, w).score(x, 0.3), good.score(x, 0.3))


def test_guided_keeps_the_models_range_schedule_and_start():
    d = _density()
    sched = DDPMSchedule.from_name("linear", 200)
    g = exact_cfg(d, 0, 2.0, schedule=sched)
    assert g.schedule is sched and (g.sigma_min, g.sigma_max) == (g.model.sigma_min, g.model.sigma_max)
    torch.testing.assert_close(g.data_mean.double(), d.conditional(0).mean().float().double())
    with pytest.raises(ValueError, match="unknown guidance"):
        Guided(g.model, g.reference, 1.0, "classifier")


@pytest.mark.parametrize("name", ["ddpm", "ddim", "pf-ode", "annealed", "dpmpp-2m", "euler-a"])
def test_every_sampler_runs_with_guidance(name):
    g = exact_cfg(_density(), "x", 3.0)
    gen = torch.Generator().manual_seed(0)
    sampler = samplers.build_sampler(name, g, nfe=20)
    x = sampler.run(initial_for(sampler, 200, sampler.default_init, (-4, 4, -4, 4), gen), gen).x
    assert torch.isfinite(x).all() and x.shape == (200, 2)


@pytest.mark.parametrize("w", [0.0, 2.0])
def test_tilted_target_integrates_to_one_and_matches_the_closed_form(w):
    d = _density()
    t = TiltedTarget(d, "y", w, n=400)
    assert t.integral() == pytest.approx(1.0, abs=1e-9)
    assert t.edge_mass() < 1e-8
    fine = TiltedTarget(d, "y", w, n=800)
    assert fine.log_z == pytest.approx(t.log_z, abs=1e-6)            # Z converged on the grid
    if w == 0:
        assert t.log_z == pytest.approx(0.0, abs=1e-6)               # p(x|c) is normalised already
    x = d.conditional("y").sample(100, torch.Generator().manual_seed(1)).double()
    lp = (1 + w) * d.conditional("y").log_prob(x) - w * d.log_prob(x) - t.log_z
    torch.testing.assert_close(t.log_prob(x), lp)


def test_tilted_sampler_matches_its_density():
    """At w = 0 the grid sampler draws p(x|c): its energy distance to exact draws is at the level of
    two exact samples' (the 95th percentile of 20 such pairs); at w = 3 two grid draws agree likewise,
    and the mean moves away from the other class."""
    d, n = _density(), 1500
    gen = torch.Generator().manual_seed(5)
    t0 = TiltedTarget(d, "y", 0.0, n=600)
    cond = d.conditional("y")
    null = sorted(energy_distance(cond.sample(n, gen), cond.sample(n, gen)) for _ in range(20))
    assert energy_distance(t0.sample(n, gen), cond.sample(n, gen)) < null[18]
    # at w = 3 the grid draws' mean equals E_{p_w}[x] by self-normalised importance sampling from
    # p(x|c) with weights (p(x|c)/p(x))^w (an estimate that never uses the grid), within 4 SE
    t3 = TiltedTarget(d, "y", 3.0, n=600)
    a = t3.sample(20_000, gen).double()
    xc = cond.sample(200_000, gen).double()
    lw = 3.0 * (cond.log_prob(xc) - d.log_prob(xc))
    wts = torch.softmax(lw, 0)
    is_mean = (wts[:, None] * xc).sum(0)
    se = a.std(0) / math.sqrt(len(a))
    assert ((a.mean(0) - is_mean).abs() < 4 * se + 0.01).all()
    assert (is_mean - cond.mean()).norm() > 0.03        # and the tilt did move the mean


def test_guidance_study_reports_distances_per_sampler_and_w():
    from trainers.studies.guidance import format_table, run_guidance_study
    d = _density()
    r = run_guidance_study(d, "y", ws=(0.0, 4.0), samplers=("ddpm", "ddim"), n=600, seeds=2, null_draws=4,
                           options={"ddpm": {"n_timesteps": 200}}, grid=300)
    assert len(r.rows) == 4 and set(r.threshold_tilted) == {0.0, 4.0}
    for name in ("ddpm", "ddim"):
        r0, r4 = r.row(name, 0.0), r.row(name, 4.0)
        assert r0.to_conditional < 0.02 and len(r0.per_seed["to_tilted"]) == 2
        assert r4.to_tilted > 5 * r.threshold_tilted[4.0]          # exact CFG at w = 4 misses p_w
        assert r4.class_share >= r0.class_share - 1e-9            # guidance keeps the class
    assert "ED to tilted" in format_table(r)


def test_guidance_study_with_a_model_and_cancel():
    from trainers.studies.guidance import run_guidance_study
    d = _density()
    exact = ExactScore(d)
    r = run_guidance_study(d, 1, ws=(1.0,), samplers=("ddim",), n=200, seeds=2, null_draws=2, grid=200, model=exact)
    again = run_guidance_study(d, 1, ws=(1.0,), samplers=("ddim",), n=200, seeds=2, null_draws=2, grid=200)
    assert r.row("ddim", 1.0).to_tilted == pytest.approx(again.row("ddim", 1.0).to_tilted, rel=1e-4)
    assert run_guidance_study(d, 1, ws=(1.0,), samplers=("ddim",), n=200, seeds=2, null_draws=2, grid=200,
                              cancelled=lambda: True) is None


def test_the_exact_start_of_cfg_at_w0_is_the_class_and_elsewhere_a_matched_gaussian():
    from trainers.samplers.starts import exact_prior_sample
    d = preset("three_classes")
    for w, exact in ((0.0, True), (2.0, False)):
        assert (getattr(exact_cfg(d, "left", w), "density", None) is not None) == exact
    guided = exact_cfg(d, "left", 0.0)

    def start(model):
        return exact_prior_sample(samplers.build_sampler("ddim", model, nfe=10), 500, torch.Generator().manual_seed(0))
    # the same draws as the exact conditional score's own start, not the whole density's
    assert torch.equal(start(guided), start(guided.model))
    assert not torch.allclose(start(guided), start(guided.reference))
