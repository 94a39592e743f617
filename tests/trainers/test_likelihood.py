"""The PF-ODE log-density (docs/math.md §10) against the exact log-density of a noised mixture."""
import numpy as np
import pytest
import torch

from trainers.densities import GaussianMixture, preset
from trainers.likelihood import _drift_and_divergence, pf_ode_log_density, prior_log_prob
from trainers.score_models import ExactScore, ScoreFunction


def three_modes(shift=(0.0, 0.0)) -> GaussianMixture:
    """Three anisotropic modes weighted 0.6 / 0.3 / 0.1 near the origin, moved by `shift` (as in
    test_priors.py)."""
    means = np.array([[-2.0, 0.5], [1.5, 1.5], [0.5, -2.0]]) + np.asarray(shift)
    covs = np.array([[[0.5, 0.3], [0.3, 0.3]], [[0.2, -0.1], [-0.1, 0.6]], [[0.4, 0.0], [0.0, 0.1]]])
    return GaussianMixture([0.6, 0.3, 0.1], means, covs, "three_modes")


@pytest.mark.parametrize("name", ["eight_gaussians", "two_moons"])
def test_exact_score_reproduces_the_exact_log_density(name):
    """With the exact score, 60 Heun steps from σ_min = 0.05 to σ_max = 40: mean error < 0.02 nats,
    worst point < 0.1 nats (the end term is the exact p_σmax: all the error is the ODE's)."""
    d = preset(name)
    y = d.noised(0.05).sample(200, torch.Generator().manual_seed(0))
    got = pf_ode_log_density(ExactScore(d), y, 0.05, 40.0, n_steps=60)
    true = d.noised(0.05).log_prob(y.double())
    assert float((got - true).mean().abs()) < 0.02
    assert float((got - true).abs().max()) < 0.1


def test_hutchinson_divergence_is_unbiased():
    """The mean of Rademacher estimates vᵀ∇(vᵀf) approaches the exact divergence (4000 draws: within
    4 standard errors)."""
    d = preset("two_moons")
    model = ExactScore(d)
    y = d.noised(0.3).sample(8, torch.Generator().manual_seed(1)).repeat(4000, 1)
    _, exact = _drift_and_divergence(model, y[:8], 0.3, "exact", None)
    _, est = _drift_and_divergence(model, y, 0.3, "hutchinson", torch.Generator().manual_seed(2))
    est = est.reshape(4000, 8)
    se = est.std(0) / 4000**0.5
    assert torch.all((est.mean(0) - exact).abs() < 4 * se + 1e-6)


def test_bad_ranges_and_divergences_are_named():
    model = ExactScore(preset("two_moons"))
    with pytest.raises(ValueError, match="sigma_max > sigma_min > 0"):
        pf_ode_log_density(model, torch.zeros(2, 2), 1.0, 0.5)
    with pytest.raises(ValueError, match="unknown divergence 'trace'"):
        pf_ode_log_density(model, torch.zeros(2, 2), 0.1, 1.0, divergence="trace")


OFF_CENTRE = [(0.0, 0.0), (8.0, -6.0)]


@pytest.mark.parametrize("shift", OFF_CENTRE)
def test_exact_score_log_density_with_default_settings_is_right_off_centre(shift):
    """Three anisotropic modes (0.6 / 0.3 / 0.1), centred and moved by (8, −6): the exact score's
    PF-ODE log-density at its defaults (σ from 0.01 to the σ_max rule, 100 Heun steps) is within
    0.01 nats on average and 0.1 at worst of the closed form log p_σmin."""
    d = three_modes(shift)
    model = ExactScore(d)
    noised = d.noised(model.sigma_min)
    y = noised.sample(200, torch.Generator().manual_seed(3))
    err = pf_ode_log_density(model, y) - noised.log_prob(y.double(), exact=True)
    assert float(err.mean().abs()) < 0.01 and float(err.abs().max()) < 0.1


@pytest.mark.parametrize("shift", OFF_CENTRE)
def test_a_model_with_data_moments_closes_with_the_matched_gaussian_and_the_origin_prior_is_wrong(shift):
    """The exact score's field behind a plain score function (which cannot say what p_σmax is): with
    the data's mean and covariance the end term is N(m, C + σ_max²I), within 0.01 nats on average and
    0.1 at worst. Negative control: without them (the legacy N(0, σ_max²I)) the worst point is off by
    more than 0.1 nats even on the centred density (first order in |m|/σ_max), and the mean too when
    the density sits 10 units from the origin."""
    d = three_modes(shift)
    exact = ExactScore(d)
    fn = ScoreFunction(lambda y, s: exact.score_with_grad(y, s), exact.sigma_min, exact.sigma_max)
    noised = d.noised(exact.sigma_min)
    y = noised.sample(200, torch.Generator().manual_seed(4))
    true = noised.log_prob(y.double(), exact=True)
    err = pf_ode_log_density(fn.with_data_stats(d.mean(), cov=d.covariance()), y, n_steps=40) - true
    assert float(err.mean().abs()) < 0.01 and float(err.abs().max()) < 0.1
    fn.data_mean = fn.data_cov = None
    legacy = pf_ode_log_density(fn, y, n_steps=40) - true
    assert float(legacy.abs().max()) > 0.1
    if shift != (0.0, 0.0):
        assert float(legacy.mean().abs()) > 0.1


def test_the_end_terms_are_the_exact_mixture_the_matched_gaussian_and_the_origin_gaussian():
    d = three_modes((8.0, -6.0))
    y = torch.randn(5, 2, dtype=torch.float64) * 3 + d.mean()
    exact = ExactScore(d)
    torch.testing.assert_close(prior_log_prob(exact, y, 7.0), d.noised(7.0).log_prob(y, exact=True))
    fn = ScoreFunction(lambda y, s: -y).with_data_stats(d.mean(), cov=d.covariance())
    c = d.covariance() + 49 * torch.eye(2, dtype=torch.float64)
    want = torch.distributions.MultivariateNormal(d.mean(), c).log_prob(y)
    torch.testing.assert_close(prior_log_prob(fn, y, 7.0), want)
    fn.data_cov = None
    fn.data_var = 2.0
    want = torch.distributions.MultivariateNormal(d.mean(), 51 * torch.eye(2, dtype=torch.float64)).log_prob(y)
    torch.testing.assert_close(prior_log_prob(fn, y, 7.0), want)
    fn.data_mean = None
    want = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64),
                                                  49 * torch.eye(2, dtype=torch.float64)).log_prob(y)
    torch.testing.assert_close(prior_log_prob(fn, y, 7.0), want)
