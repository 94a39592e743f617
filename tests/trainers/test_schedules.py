"""DDPM schedules and σ levels against the closed forms of docs/math.md §4–§5 (and diffusers, where installed)."""
import math

import pytest
import torch

from trainers.densities import GaussianMixture
from trainers.schedules import DDPMSchedule, extract, geometric_sigmas


def test_geometric_sigmas():
    s = geometric_sigmas(1.0, 0.01, 10)
    assert s[0] == pytest.approx(1.0) and s[-1] == pytest.approx(0.01)
    ratios = s[1:] / s[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 0.01 ** (1 / 9)))
    with pytest.raises(ValueError):
        geometric_sigmas(0.01, 1.0, 10)


def test_linear_schedule_matches_paper():
    s = DDPMSchedule.linear(1000)
    assert float(s.betas[0]) == pytest.approx(1e-4) and float(s.betas[-1]) == pytest.approx(0.02)
    ab = torch.cumprod(1 - s.betas.double(), 0)
    torch.testing.assert_close(s.alpha_bars.double(), ab, rtol=1e-6, atol=0)
    assert float(s.alpha_bars[-1]) < 1e-4        # x_T is nearly pure noise


def test_cosine_schedule_follows_its_alpha_bar_curve():
    T, sv = 1000, 0.008
    s = DDPMSchedule.cosine(T, sv)
    f = lambda t: math.cos((t / T + sv) / (1 + sv) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 100, 500, 900):
        assert float(s.alpha_bars[t]) == pytest.approx(f(t + 1) / f(0), rel=1e-4)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_posterior_matches_spec_and_bayes_rule(kind):
    s = DDPMSchedule.from_name(kind, 200)
    b, a, ab, abp = (v.double() for v in (s.betas, s.alphas, s.alpha_bars, s.alpha_bars_prev))
    # docs/math.md §5 closed forms (tables are stored in float32, hence rtol 2e-4)
    torch.testing.assert_close(s.posterior_variance.double(), (1 - abp) / (1 - ab) * b, rtol=2e-4, atol=1e-9)
    torch.testing.assert_close(s.posterior_mean_coef_x0.double(), abp.sqrt() * b / (1 - ab), rtol=2e-4, atol=1e-9)
    torch.testing.assert_close(s.posterior_mean_coef_xt.double(), a.sqrt() * (1 - abp) / (1 - ab), rtol=2e-4, atol=1e-9)
    # independently, Bayes: q(x_{t-1}|x_t,x_0) ∝ N(x_t; √α x_{t-1}, β) N(x_{t-1}; √ᾱ_{t-1} x_0, 1−ᾱ_{t-1})
    t = torch.arange(1, 200)
    prec = a[t] / b[t] + 1 / (1 - abp[t])
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(len(t), 2, generator=g, dtype=torch.float64)
    xt = torch.randn(len(t), 2, generator=g, dtype=torch.float64)
    mean = (a[t].sqrt()[:, None] * xt / b[t][:, None] + abp[t].sqrt()[:, None] * x0 / (1 - abp[t])[:, None]) / prec[:, None]
    # the mean sums two float32-stored coefficient products, each good to ~2e-4 relative (see above)
    torch.testing.assert_close(s.posterior_mean(x0.float(), xt.float(), t).double(), mean, rtol=4e-4, atol=1e-5)
    torch.testing.assert_close(s.posterior_variance[t].double(), 1 / prec, rtol=1e-4, atol=1e-9)


def test_eps_mean_equals_posterior_mean_of_predicted_x0():
    s = DDPMSchedule.linear(100)
    g = torch.Generator().manual_seed(0)
    t = torch.randint(1, 100, (50,), generator=g)
    xt, eps = torch.randn(50, 2, generator=g), torch.randn(50, 2, generator=g)
    torch.testing.assert_close(s.eps_mean(xt, t, eps), s.posterior_mean(s.predict_x0(xt, t, eps), xt, t),
                               rtol=1e-4, atol=1e-4)


def test_extract_broadcasts_over_any_rank():
    a = torch.arange(10.0)
    t = torch.tensor([1, 3])
    assert extract(a, t, (2, 2)).shape == (2, 1)
    assert extract(a, t, (2, 3, 8, 8)).shape == (2, 1, 1, 1)
    assert extract(a, t, (2, 3, 8, 8)).flatten().tolist() == [1.0, 3.0]


def test_eps_score_relation_is_the_conditional_mean_of_the_noise():
    """E[ε | x_t] = −√(1−ᾱ_t) ∇log q_t(x_t): regress ε on x_t by Monte Carlo for Gaussian data."""
    s = DDPMSchedule.linear(1000)
    t_idx, mu, var = 300, torch.tensor([1.5, -0.5], dtype=torch.float64), 0.3
    data = GaussianMixture([1.0], mu[None].numpy(), [[[var, 0], [0, var]]])
    g = torch.Generator().manual_seed(0)
    n = 400_000
    x0 = mu + math.sqrt(var) * torch.randn(n, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.full((n,), t_idx)
    xt = s.q_sample(x0.float(), t, eps.float()).double()
    # least-squares fit ε ≈ xt W + c (exact, as everything is Gaussian)
    X = torch.cat([xt, torch.ones(n, 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(X, eps).solution
    q = data.ddpm_marginal(float(s.alpha_bars[t_idx]))
    probe = torch.tensor([[0.3, 0.2], [-1.0, 2.0]], dtype=torch.float64)
    implied = s.score_to_eps(q.score(probe).float(), torch.full((2,), t_idx)).double()
    fitted = torch.cat([probe, torch.ones(2, 1, dtype=torch.float64)], 1) @ coef
    torch.testing.assert_close(fitted, implied, atol=0.01, rtol=0)
    torch.testing.assert_close(s.eps_to_score(implied.float(), torch.full((2,), t_idx)).double(), q.score(probe),
                               atol=1e-4, rtol=1e-4)


def test_matches_diffusers_ddpm_scheduler():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", variance_type="fixed_small")
    s = DDPMSchedule.linear(1000)
    torch.testing.assert_close(s.alpha_bars, ref.alphas_cumprod.float(), rtol=1e-5, atol=1e-7)
    for t in (1, 10, 500, 999):
        assert float(s.posterior_variance[t]) == pytest.approx(float(ref._get_variance(t)), rel=1e-3)
    # one reverse step without noise: the posterior mean from ε (clip off)
    ref.config.clip_sample = False
    xt, eps = torch.randn(4, 2), torch.randn(4, 2)
    ref.set_timesteps(1000)
    t = 500
    out = ref.step(eps, t, xt, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s.predict_x0(xt, torch.full((4,), t), eps), out.pred_original_sample, rtol=1e-4, atol=1e-4)
    mean = s.eps_mean(xt, torch.full((4,), t), eps)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))    # the noise diffusers drew
    torch.testing.assert_close(out.prev_sample, mean + s.posterior_variance[t].sqrt() * z, rtol=1e-3, atol=1e-4)


def test_linear_schedule_rescales_only_its_defaults():
    short = DDPMSchedule.linear(100)
    assert float(short.betas[0]) == pytest.approx(1e-3) and float(short.betas[-1]) == pytest.approx(0.2)
    assert float(short.alpha_bars[-1]) < 1e-4
    explicit = DDPMSchedule.linear(100, 1e-4, 0.02)
    assert float(explicit.betas[0]) == pytest.approx(1e-4) and float(explicit.betas[-1]) == pytest.approx(0.02)
