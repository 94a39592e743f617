"""Flow matching on the linear path (trainers/flows.py, methods/flow_matching.py, samplers/flow.py):
the exact velocity of a mixture against a Monte-Carlo E[z − x₀ | x_t] and against autograd of log p_t
through the conversion, the conversions both ways, the flow ODE against the VE PF-ODE with the same
exact score, minibatch OT, and the method's loss."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from trainers.densities import GaussianMixture
from trainers.fitting import ToyConfig, method_for
from trainers.flows import (T_MAX, T_SCALE, VelocityScoreModel, coupling_cost, exact_velocity, flow_marginal,
                            linear_path, ot_pair, score_from_velocity, sigma_of_t, velocity_from_score)
from trainers.methods.flow_matching import fm_loss
from trainers.samplers import build_sampler
from trainers.schedules import DDPMSchedule
from trainers.score_models import ExactScore

# off-centre, anisotropic, unequal weights: no symmetry can hide a sign or a transpose
MIX = GaussianMixture([0.2, 0.5, 0.3], [[2.0, 1.0], [-1.5, 0.5], [0.5, -2.5]],
                      [[[0.3, 0.1], [0.1, 0.1]], [[0.05, 0.0], [0.0, 0.4]], [[0.2, -0.05], [-0.05, 0.15]]])


def test_exact_velocity_matches_a_monte_carlo_posterior_mean():
    """E[z − x₀ | x_t = x] by self-normalised importance sampling over x₀ ~ p (weights N(x; (1−t)x₀, t²I));
    the estimate's standard error by the delta method; agreement within 5 SE (and each check has an
    effective sample size above 1000, so the SE is itself reliable)."""
    g = torch.Generator().manual_seed(0)
    x0 = MIX.sample(400_000, g).double()
    for t in (0.35, 0.6, 0.9):
        xs = flow_marginal(MIX, t).sample(4, g).double()
        v = exact_velocity(MIX, xs, t)
        for x, vx in zip(xs, v):
            logw = -((x - (1 - t) * x0) ** 2).sum(1) / (2 * t * t)
            w = torch.softmax(logw, 0)
            assert 1 / (w ** 2).sum() > 1000, "too few effective samples for a reliable SE"
            f = (x - (1 - t) * x0) / t - x0
            est = (w[:, None] * f).sum(0)
            se = ((w[:, None] ** 2) * (f - est) ** 2).sum(0).sqrt()
            assert ((vx - est).abs() <= 5 * se).all(), (t, vx, est, se)


def test_exact_velocity_is_the_score_route_by_autograd():
    """v(x, t) = −(x + t ∇log p_t(x))/(1 − t), ∇log p_t by autograd of the mixture's log-density (the
    reference path, not the score kernel); t = 0 gives −x and t = 1 gives x − E[x₀]."""
    x = flow_marginal(MIX, 0.5).sample(64, torch.Generator().manual_seed(1)).double()
    for t in (0.0, 0.05, 0.3, 0.7, 0.95):
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(flow_marginal(MIX, t).log_prob(xr).sum(), xr)
        expected = -(x + t * grad) / (1 - t)
        torch.testing.assert_close(exact_velocity(MIX, x, t), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(exact_velocity(MIX, x, 0.0), -x, rtol=0, atol=1e-12)
    torch.testing.assert_close(exact_velocity(MIX, x, 1.0), x - MIX.mean(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        exact_velocity(MIX, x, 1.5)


def test_conversions_both_ways_and_the_exact_score_gives_the_exact_velocity():
    g = torch.Generator().manual_seed(2)
    for t in (0.1, 0.5, 0.9):
        sigma = sigma_of_t(t)
        x = flow_marginal(MIX, t).sample(50, g).double()
        y = x / (1 - t)
        s = MIX.noised(sigma).score(y, exact=True)
        v = velocity_from_score(y, sigma, s)
        torch.testing.assert_close(v, exact_velocity(MIX, x, t), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(score_from_velocity(y, sigma, v), s, rtol=1e-9, atol=1e-9)


class PerfectVelocityNet(torch.nn.Module):
    """A 'network' answering the exact velocity at its time input 1000·t (rows grouped by t)."""

    def forward(self, x, c):
        out = torch.empty_like(x)
        t = c / T_SCALE
        for tv in torch.unique(t).tolist():
            m = t == tv
            out[m] = exact_velocity(MIX, x[m].double(), tv).to(x.dtype)
        return out


def test_velocity_score_model_answers_sigma_and_eps_queries_as_the_exact_score():
    sm, exact = VelocityScoreModel(PerfectVelocityNet(), 0.05, 10.0), ExactScore(MIX)
    y = MIX.noised(1.0).sample(100, torch.Generator().manual_seed(3))
    for sigma in (0.1, 1.0, 5.0):
        torch.testing.assert_close(sm.score(y, sigma), exact.score(y, sigma), rtol=2e-3, atol=2e-3)
    sched = DDPMSchedule.from_name("linear", 100)
    for t in (5, 50, 99):
        torch.testing.assert_close(sm.eps(y, t, sched), exact.eps(y, t, sched), rtol=2e-3, atol=2e-3)
    assert sm.range_note([1e-3, 1e3]) == ""          # trained on every t: valid at every σ > 0


def _endpoints(name, sm, y0, steps, **options):
    s = build_sampler(name, sm, options, steps=steps)
    x = y0 / (1 + 20.0) if name == "flow" else y0          # the same point at t = σ/(1+σ), σ = 20
    return s.run(x.clone()).x.double()


def test_flow_ode_and_pf_ode_with_the_exact_score_are_the_same_map():
    """The flow ODE dx/dt = v and the VE PF-ODE dy/dσ = −σ s are one ODE in two clocks (x = y/(1+σ),
    t = σ/(1+σ)): from the same point at σ = 20 both Heun solutions reach the same endpoint. Tolerance:
    each solver's own error, estimated by step halving (|x_N − x_2N|, Heun being 2nd order), times 3,
    plus 1e-4 for float32 and the final Euler step to 0 (σ_min = 2e-3 on the PF-ODE's grid)."""
    sm = ExactScore(MIX)
    y0 = MIX.noised(20.0).sample(300, torch.Generator().manual_seed(4))
    flow_n, flow_2n = (_endpoints("flow", sm, y0, n, sigma_max=20.0, solver="heun") for n in (200, 400))
    pf_n, pf_2n = (_endpoints("pf-ode", sm, y0, n, sigma_max=20.0, sigma_min=2e-3, solver="heun")
                   for n in (200, 400))
    err = (flow_n - flow_2n).norm(dim=1).max() + (pf_n - pf_2n).norm(dim=1).max()
    gap = (flow_2n - pf_2n).norm(dim=1)
    assert gap.max() <= 3 * err + 1e-4, (float(gap.max()), float(err))
    # the control: the two maps are not trivially equal — a different start lands elsewhere
    shuffled = _endpoints("flow", sm, y0.flip(0), 400, sigma_max=20.0, solver="heun")
    assert (shuffled - pf_2n).norm(dim=1).median() > 100 * (3 * err + 1e-4)


def test_flow_sampler_counts_its_evaluations_and_starts_at_the_matched_prior():
    sm = ExactScore(MIX)
    for solver, nfe in (("euler", 7), ("heun", 7), ("midpoint", 8)):
        s = build_sampler("flow", sm, {"solver": solver, "nfe": nfe})
        assert s.nfe == nfe and 0 < len(s.sigmas_used()) <= nfe      # Heun's trial level is the next step's
        calls = []
        orig = sm.evaluate
        sm.evaluate = lambda qs: calls.append(len(qs)) or orig(qs)
        s.run(torch.zeros(5, 2))
        del sm.evaluate
        assert len(calls) == nfe
    s = build_sampler("flow", sm, sigma_max=3.0, steps=4)
    from trainers.samplers import exact_prior_sample, prior_sample
    x = prior_sample(s, torch.randn(200_000, 2, generator=torch.Generator().manual_seed(5))).double()
    pt = flow_marginal(MIX, 0.75)
    assert torch.allclose(x.mean(0), pt.mean(), atol=0.01)
    assert torch.allclose(torch.cov(x.T), pt.covariance(), atol=0.02)
    xe = exact_prior_sample(s, 200_000, torch.Generator().manual_seed(6)).double()
    assert torch.allclose(torch.cov(xe.T), pt.covariance(), atol=0.02)


def test_minibatch_ot_is_an_optimal_permutation_and_never_costs_more():
    g = torch.Generator().manual_seed(7)
    for _ in range(20):
        x0, z = MIX.sample(64, g), torch.randn(64, 2, generator=g)
        zp = ot_pair(x0, z)
        assert torch.equal(zp.sort(0).values, z.sort(0).values)            # a reordering of z
        assert coupling_cost(x0, zp) <= coupling_cost(x0, z) + 1e-9
    x0, z = MIX.sample(6, g), torch.randn(6, 2, generator=g)
    best = min(coupling_cost(x0, z[list(p)]) for p in itertools.permutations(range(6)))
    assert abs(coupling_cost(x0, ot_pair(x0, z)) - best) < 1e-9
    with pytest.raises(ValueError, match="equal-size"):
        ot_pair(x0, z[:5])


def test_fm_loss_is_minimised_by_the_exact_velocity():
    """Same draws: the exact velocity's loss is below a perturbed one's, and both are the mean of the terms."""
    x0 = MIX.sample(500, torch.Generator().manual_seed(8))
    net = PerfectVelocityNet()
    exact = fm_loss(net, x0, torch.Generator().manual_seed(9))
    shifted = fm_loss(lambda x, c: net(x, c) + 0.1, x0, torch.Generator().manual_seed(9))
    assert float(exact) < float(shifted)
    terms, t = fm_loss(net, x0, torch.Generator().manual_seed(9), per_example=True)
    assert float(terms.mean()) == pytest.approx(float(exact)) and bool(((t >= 0) & (t <= 1)).all())
    z = torch.randn(500, 2, generator=torch.Generator().manual_seed(10))
    assert torch.equal(linear_path(x0, z, torch.zeros(500)), x0) and torch.equal(linear_path(x0, z, 1.0), z)


def test_the_fm_method_trains_and_its_model_drives_every_sampler():
    from trainers.fitting import score_model, train
    cfg = ToyConfig(objective="fm", steps=30, width=32, depth=2, batch=64, extra={"coupling": "ot"})
    assert method_for(cfg).params.coupling == "ot" and method_for(cfg).natural_sampler == "flow"
    model, losses = train(cfg, MIX)
    assert len(losses) == 30 and all(map(lambda v: v == v, losses))
    sm = score_model(model, cfg, MIX)
    assert isinstance(sm, VelocityScoreModel)
    # the flow ODE starts at t = T_MAX (x ≈ z), the model and its exact score alike; other samplers use the
    # binding's σ range, as on any other method's model
    exact = score_model(None, cfg, MIX)
    for m in (sm, exact):
        assert build_sampler("flow", m).ts[0] == pytest.approx(T_MAX)
        assert build_sampler("pf-ode", m).sigmas[0] == pytest.approx(float(method_for(cfg, MIX).noise_levels()[0]))
    for name in ("flow", "pf-ode", "ddim", "annealed", "ddpm"):
        s = build_sampler(name, sm, method_for(cfg, MIX).sampler_defaults(name), steps=5)
        assert torch.isfinite(s.run(torch.randn(20, 2)).x).all(), name
    with pytest.raises(ValueError, match="coupling"):
        ToyConfig(objective="fm", extra={"coupling": "sinkhorn"})


def test_velocity_field_study_exact_against_learned():
    """The Score-field tab's velocity view: a perfect velocity model's field and error map match the exact
    one; an NCSN model's velocity goes through the score conversion and is refused at t = 1."""
    from trainers.studies.velocity_field import model_t_range, velocity_error_map, velocity_field
    cfg = ToyConfig(objective="fm")
    bounds = MIX.plot_bounds()
    f = velocity_field(PerfectVelocityNet(), cfg, MIX, 0.4, bounds, 12)
    assert f.true.shape == (144, 2) and f.mean_squared_error < 1e-8
    assert velocity_error_map(PerfectVelocityNet(), cfg, MIX, 0.4, bounds, 8).max() < 1e-3
    assert velocity_field(None, cfg, MIX, 1.0, bounds, 4).learned is None
    assert model_t_range(cfg) == (0.0, 1.0)
    from trainers.nets import build_model
    ncsn = ToyConfig(objective="ncsn")
    net = build_model("mlp", "sigma", 16, 1)
    assert model_t_range(ncsn)[1] < 1
    assert np.isfinite(velocity_field(net, ncsn, MIX, 0.5, bounds, 4).learned).all()
    with pytest.raises(ValueError, match="t in"):
        velocity_field(net, ncsn, MIX, 1.0, bounds, 4)


def test_sigma_and_eps_networks_drive_the_flow_ode_to_the_density():
    """An NCSN-style σ-network and a DDPM-style ε-network (here: the exact score behind each interface)
    drive the flow ODE through the conversion to the same endpoints as the exact score, and there the
    samples match the density (energy distance at sampling noise)."""
    from trainers.metrics import energy_distance
    from trainers.samplers import prior_sample
    from trainers.score_models import EpsScoreModel, SigmaScoreModel
    sched = DDPMSchedule.from_name("linear", 1000)
    exact = ExactScore(MIX)

    def sigma_net(y, sigma):                     # s(y, σ), one σ per call as the samplers ask
        return MIX.noised(float(sigma[0])).score(y)

    def eps_net(x, t):                           # ε(x_t, t) = −σ_t s(x_t/√ᾱ_t, σ_t) at a (fractional) timestep
        return exact.eps(x, int(round(float(t[0]))), sched)

    sigma_model = SigmaScoreModel(sigma_net, 0.01, 20.0).with_data_stats(MIX.mean(), cov=MIX.covariance())
    eps_model = EpsScoreModel(eps_net, sched).with_data_stats(MIX.mean(), cov=MIX.covariance())   # the same start
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(12))
    ref = MIX.sample(2000, torch.Generator().manual_seed(13))
    ends = {}
    for name, sm in (("exact", exact), ("sigma", sigma_model), ("eps", eps_model)):
        s = build_sampler("flow", sm, sigma_max=20.0, steps=60, solver="heun")
        ends[name] = s.run(prior_sample(s, z)).x
    assert (ends["sigma"] - ends["exact"]).norm(dim=1).max() < 1e-3
    assert (ends["eps"] - ends["exact"]).norm(dim=1).median() < 0.05          # ε-net: timesteps rounded
    null = energy_distance(MIX.sample(2000, torch.Generator().manual_seed(14)), ref)
    for name, x in ends.items():
        assert energy_distance(x, ref) < abs(null) + 0.01, name
