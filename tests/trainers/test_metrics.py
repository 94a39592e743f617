"""Metrics against closed forms and known distributions."""
import math

import numpy as np
import pytest
import torch

from trainers.densities import GaussianMixture, preset
from trainers.metrics import (bits_per_dim, ddpm_elbo_nats, discretised_gaussian_log_likelihood, energy_distance,
                              fisher_divergence, mean_pairwise_distance, mmd, mode_weight_error,
                              mode_weights)
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
    assert energy_distance(a, b) == pytest.approx(2 * 5.0)           # both within-sample terms are 0
    assert energy_distance(a, b, unbiased=False) == pytest.approx(2 * 5.0)
    d = preset("two_moons")
    g = torch.Generator().manual_seed(0)
    x, y = d.sample(2000, g), d.sample(2000, g)
    same = energy_distance(x, y)
    assert abs(same) < 0.003
    assert energy_distance(x, y + 0.5) > 0.1
    assert mmd(x, y) < 0.1 * mmd(x, y + 0.5)


def _brute_energy(x, y, unbiased):
    """2 mean‖xᵢ−yⱼ‖ − mean‖xᵢ−xⱼ‖ − mean‖yᵢ−yⱼ‖ by explicit loops (i ≠ j within a sample when unbiased)."""
    def within(a):
        pairs = [(i, j) for i in range(len(a)) for j in range(len(a)) if i != j or not unbiased]
        return sum(math.dist(a[i], a[j]) for i, j in pairs) / len(pairs)
    cross = sum(math.dist(p, q) for p in x for q in y) / (len(x) * len(y))
    return 2 * cross - within(x) - within(y)


def test_energy_distance_matches_a_double_loop_both_statistics():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(7, 2, generator=g), torch.randn(5, 2, generator=g) * 2 + 1
    xs, ys = x.double().tolist(), y.double().tolist()
    for unbiased in (True, False):
        assert energy_distance(x, y, unbiased=unbiased) == pytest.approx(_brute_energy(xs, ys, unbiased), rel=1e-6)
        y_self = mean_pairwise_distance(y, unbiased)
        assert energy_distance(x, y, y_self, unbiased=unbiased) == pytest.approx(_brute_energy(xs, ys, unbiased),
                                                                                 rel=1e-6)
    # V − U = mean‖xᵢ−xⱼ‖ (i≠j)/n + the same for y/m, exactly
    gap = energy_distance(x, y, unbiased=False) - energy_distance(x, y)
    assert gap == pytest.approx(mean_pairwise_distance(x) / 7 + mean_pairwise_distance(y) / 5, rel=1e-9)
    with pytest.raises(ValueError, match="at least 2 points"):
        energy_distance(x[:1], y)


def test_the_u_statistic_is_unbiased_for_equal_laws_and_the_v_statistic_is_not():
    """Off-centre, anisotropic, unequal weights; n = m = 60, 400 pairs of samples: the U-statistic's
    mean lies within 4 standard errors of 0, the V-statistic's at (1/n + 1/m) E‖X−X'‖ (within 4 s.e.)
    and many standard errors above 0."""
    d = GaussianMixture([0.6, 0.3, 0.1], [[0.5, -0.3], [8.0, 5.0], [6.0, -2.0]],
                        [[[1.0, 0.3], [0.3, 0.4]], [[0.2, 0.0], [0.0, 1.5]], [[0.5, -0.2], [-0.2, 0.3]]])
    g = torch.Generator().manual_seed(11)
    n, reps = 60, 400
    u, v = [], []
    for _ in range(reps):
        x, y = d.sample(n, g), d.sample(n, g)
        u.append(energy_distance(x, y))
        v.append(energy_distance(x, y, unbiased=False))
    u, v = np.array(u), np.array(v)
    se_u, se_v = u.std(ddof=1) / math.sqrt(reps), v.std(ddof=1) / math.sqrt(reps)
    assert abs(u.mean()) < 4 * se_u
    assert (u < 0).mean() > 0.2                                        # negative values are common
    e_dist = mean_pairwise_distance(d.sample(4000, g))                 # E‖X−X'‖
    assert v.mean() == pytest.approx(2 * e_dist / n, abs=4 * se_v)
    assert v.mean() > 10 * se_v


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


BIN_CENTRES = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1      # 8-bit data in [−1, 1]


@pytest.mark.parametrize("mean, std", [(0.0, 0.01), (0.3, 0.5), (-0.99, 0.003), (1.0, 1e-4),
                                       (0.5, 30.0), (-2.0, 0.2), (0.0, 1e-6)])
def test_discretised_decoder_is_a_distribution_over_the_256_bins(mean, std):
    """Per dimension the 256 probabilities sum to 1 and equal the CDF differences Φ(b) − Φ(a) of
    N(mean, std²) over [x − 1/255, x + 1/255], the outer bins open to ±∞ (docs/math.md §5.1)."""
    from scipy.stats import norm

    means = torch.tensor([mean, mean + 0.1, -mean], dtype=torch.float64)       # three dimensions
    x = BIN_CENTRES[:, None].expand(256, 3)
    logp = discretised_gaussian_log_likelihood(x, means.expand(256, 3), std)
    assert logp.dtype == torch.float64 and torch.isfinite(logp).all() and (logp <= 0).all()
    torch.testing.assert_close(logp.exp().sum(0), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)
    k, m = np.arange(256)[:, None], means.numpy()
    upper = np.where(k == 255, np.inf, (2 * k + 1) / 255 - 1)        # bin edges halfway between values
    lower = np.where(k == 0, -np.inf, (2 * k - 1) / 255 - 1)
    # Φ(b) − Φ(a), written with survival functions above the mean where 1 − tiny would cancel
    direct = np.where((upper + lower) / 2 > m, norm.sf(lower, m, std) - norm.sf(upper, m, std),
                      norm.cdf(upper, m, std) - norm.cdf(lower, m, std))
    np.testing.assert_allclose(logp.exp().numpy(), direct, atol=1e-13, rtol=0)
    big = direct > 1e-250                            # where the direct difference does not underflow
    np.testing.assert_allclose(logp.numpy()[big], np.log(direct[big]), rtol=1e-6, atol=1e-9)


def test_discretised_decoder_stays_accurate_far_in_the_tails():
    """Where Φ(b) − Φ(a) underflows in float64 the log-probability is still right (mpmath, 50 digits)."""
    import mpmath

    mpmath.mp.dps = 50
    bins = [128, 230, 0, 255]
    x = torch.tensor(bins, dtype=torch.float64) * 2 / 255 - 1
    mean = torch.tensor([0.9, -0.7, 0.6, -0.6], dtype=torch.float64)
    std = 0.01                                                   # bins 60 to 160 σ from the mean
    got = discretised_gaussian_log_likelihood(x, mean, std)
    for k, mi, gi in zip(bins, mean.tolist(), got.tolist()):
        a = (mpmath.mpf(2 * k - 1) / 255 - 1 - mpmath.mpf(mi)) / std if k > 0 else -mpmath.inf
        b = (mpmath.mpf(2 * k + 1) / 255 - 1 - mpmath.mpf(mi)) / std if k < 255 else mpmath.inf
        xi = 2 * k / 255 - 1
        # Φ(b) − Φ(a) = Φ(−a) − Φ(−b): the lower-tail form keeps the e^(−10⁴) masses representable
        mass = mpmath.ncdf(b) - mpmath.ncdf(a) if xi < mi else mpmath.ncdf(-a) - mpmath.ncdf(-b)
        assert gi == pytest.approx(float(mpmath.log(mass)), rel=1e-9)
    assert (got < -400).all() and torch.isfinite(got).all()


def test_elbo_with_the_discretised_decoder_differs_only_in_its_decoder_term():
    """Same draws (same seed): prior and diffusion terms agree exactly; for a decoder std ≫ the bin
    width Δ = 2/255, P(bin) ≈ density·Δ, so the decoder terms differ by D·log(1/Δ) per example."""
    # on the 256 values, not the two outer ones (whose bins reach to ±∞)
    x0 = torch.randint(1, 255, (500, 2), generator=torch.Generator().manual_seed(0)) / 127.5 - 1
    sched = DDPMSchedule.linear(20)
    eps = lambda x, t: 0.3 * x
    torch.manual_seed(0)
    gauss = ddpm_elbo_nats(eps, sched, x0, decoder_std=0.5)
    torch.manual_seed(0)
    disc = ddpm_elbo_nats(eps, sched, x0, decoder_std=0.5, decoder="discretised")
    assert disc["prior_nats"] == gauss["prior_nats"] and disc["diffusion_nats"] == gauss["diffusion_nats"]
    assert disc["decoder_nats"] - gauss["decoder_nats"] == pytest.approx(2 * math.log(255 / 2), abs=2e-3)
    assert bits_per_dim(disc["elbo_nats"], 2) == pytest.approx(disc["elbo_nats"] / (2 * math.log(2)))
    with pytest.raises(ValueError, match="discretised"):
        ddpm_elbo_nats(eps, sched, x0, decoder="binned")
