"""Metrics against closed forms and known distributions."""
import pytest
import torch

from trainers.densities import GaussianMixture, preset
from trainers.metrics import ddpm_elbo_nats, energy_distance, fisher_divergence, mmd, mode_weight_error, mode_weights
from trainers.score_models import ExactScore
from trainers.schedules import DDPMSchedule


def test_fisher_divergence_closed_forms():
    d = preset("two_gaussians")
    x = d.sample(1000, torch.Generator().manual_seed(0)).double()
    assert fisher_divergence(d.score, d, x) == pytest.approx(0.0, abs=1e-12)
    shift = torch.tensor([0.3, -0.4], dtype=torch.float64)
    assert fisher_divergence(lambda y: d.score(y) + shift, d, x) == pytest.approx(0.25)
    w = torch.rand(1000, dtype=torch.float64)
    assert fisher_divergence(lambda y: d.score(y) + shift, d, x, w) == pytest.approx(0.25)


def test_energy_distance_closed_form_and_behaviour():
    a, b = torch.zeros(3, 2), torch.tensor([[3.0, 4.0]]).repeat(5, 1)
    assert energy_distance(a, b) == pytest.approx(2 * 5.0)
    d = preset("two_moons")
    g = torch.Generator().manual_seed(0)
    x, y = d.sample(2000, g), d.sample(2000, g)
    same = energy_distance(x, y)
    assert 0 <= same < 0.01
    assert energy_distance(x, y + 0.5) > 10 * same
    assert mmd(x, y) < 0.1 * mmd(x, y + 0.5)


def test_mode_weights_are_unbiased_for_exact_samples():
    d = preset("eight_gaussians")
    x = d.sample(40_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(mode_weights(x, d), d.weights, atol=0.01, rtol=0)
    skewed = GaussianMixture([0.5, 0.5], [[-3, 0], [3, 0]], [[[0.25, 0], [0, 0.25]]] * 2)
    left_only = torch.tensor([[-3.0, 0.0]]).repeat(100, 1)
    assert mode_weight_error(left_only, skewed) == pytest.approx(0.5, abs=1e-6)


def test_ddpm_elbo_with_exact_eps_bounds_the_true_nll_tightly():
    """With ε* = −√(1−ᾱ)∇log q_t, the ELBO is ≥ the exact NLL and close to it for many steps."""
    d = preset("two_gaussians")
    x0 = d.sample(1000, torch.Generator().manual_seed(0))
    nll = float(-d.log_prob(x0.double()).mean())
    sched = DDPMSchedule.linear(1000)
    torch.manual_seed(0)
    exact = ExactScore(d)
    result = ddpm_elbo_nats(lambda x, t: exact.eps(x, t, sched), sched, x0)
    assert result["prior_nats"] < 1e-3
    assert nll - 0.02 < result["elbo_nats"] < nll + 0.1
    worse = ddpm_elbo_nats(lambda x, t: exact.eps(x, t, sched) * 0.8, sched, x0)
    assert worse["elbo_nats"] > result["elbo_nats"] + 0.1
