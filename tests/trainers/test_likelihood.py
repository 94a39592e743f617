"""The PF-ODE log-density (docs/math.md §10) against the exact log-density of a noised mixture."""
import pytest
import torch

from trainers.densities import preset
from trainers.likelihood import _drift_and_divergence, pf_ode_log_density
from trainers.score_models import ExactScore


@pytest.mark.parametrize("name", ["eight_gaussians", "two_moons"])
def test_exact_score_reproduces_the_exact_log_density(name):
    """With the exact score, 60 Heun steps from σ_min = 0.05 to σ_max = 40: mean error < 0.02 nats,
    worst point < 0.1 nats (the N(0, σ_max² I) end approximation costs ~d·var/(2σ_max²) ≈ 0.005)."""
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
