"""Independent numerical checks of the DDPM maths (docs/math.md §5): each quantity is derived here
another way than the code computes it, in float64, from the schedule's β table only.

- The ELBO weights λ_t of ``ddpm_elbo_weights``: the KL between the true posterior
  q(x_{t−1}|x_t, x₀) and the model's Gaussian p_θ(x_{t−1}|x_t), each built by Bayes' rule
  (product of the two Gaussians q(x_{t−1}|x₀) and q(x_t|x_{t−1})) and compared in full
  (variance terms included); λ_t ‖ε − ε_θ‖² must be its ε_θ-dependent part.
- Tweedie's x̂₀ (``StepOutput.denoised``) and the DDPM sampler's last step, against E[x₀|x_t] of a
  Gaussian data distribution in closed form, with the exact score.
- ``DDPMSampler(clip_denoised=c)``: one step by hand from the schedule tables.

All CPU, fixed seeds, a few milliseconds; tolerances are stated at each check (float32 code against
float64 references).
"""
import math

import pytest
import torch

from trainers.methods import ddpm_elbo_weights
from trainers.samplers import DDIMSampler, DDPMSampler
from trainers.schedules import DDPMSchedule
from trainers.score_models import ScoreFunction

T = 50
DIM = 3


def tables(schedule: DDPMSchedule):
    """(β, α, ᾱ, ᾱ_prev) in float64, from the β table alone."""
    beta = schedule.betas.double()
    alpha = 1 - beta
    ab = torch.cumprod(alpha, 0)
    return beta, alpha, ab, torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])


def bayes_posterior(x0, xt, t, schedule):
    """q(x_{t−1} | x_t, x₀) ∝ N(x_{t−1}; √ᾱ_{t−1} x₀, (1−ᾱ_{t−1})) · N(x_t; √α_t x_{t−1}, β_t):
    precision = 1/(1−ᾱ_{t−1}) + α_t/β_t, mean = var · (√ᾱ_{t−1} x₀/(1−ᾱ_{t−1}) + √α_t x_t/β_t).
    At t = 0 (ᾱ_{−1} = 1) the posterior is the point x₀: (x₀, 0)."""
    beta, alpha, _, ab_prev = (float(v[t]) for v in tables(schedule))
    if ab_prev == 1.0:
        return x0.clone(), 0.0
    var = 1 / (1 / (1 - ab_prev) + alpha / beta)
    mean = var * (math.sqrt(ab_prev) * x0 / (1 - ab_prev) + math.sqrt(alpha) * xt / beta)
    return mean, var


def gaussian_kl(m1, v1, m2, v2):
    """KL(N(m1, v1 I) ‖ N(m2, v2 I)) per row, summed over the dimensions."""
    d = m1.shape[-1]
    return 0.5 * (d * v1 / v2 + ((m1 - m2) ** 2).sum(-1) / v2 - d + d * math.log(v2 / v1))


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_elbo_weights_are_the_mean_part_of_the_kl_between_posterior_and_model(variance):
    schedule = DDPMSchedule.linear(T)
    w = ddpm_elbo_weights(schedule, variance).double()
    beta, _, ab, ab_prev = tables(schedule)
    beta_tilde = (1 - ab_prev) / (1 - ab) * beta
    g = torch.Generator().manual_seed(0)
    x0, eps, eps_model = (torch.randn(64, DIM, generator=g, dtype=torch.float64) for _ in range(3))
    for t in range(1, T):
        # the model's reverse variance σ_t² (β̃ at the first step is 0: the code takes β̃ of the second)
        var_model = float(beta[t] if variance == "beta" else beta_tilde[t])
        xt = ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * eps
        mean_q, var_q = bayes_posterior(x0, xt, t, schedule)
        # p_θ(x_{t−1}|x_t): the posterior with x₀ replaced by the model's x̂₀(ε_θ)
        x0_model = (xt - (1 - ab[t]).sqrt() * eps_model) / ab[t].sqrt()
        mean_p, _ = bayes_posterior(x0_model, xt, t, schedule)
        kl = gaussian_kl(mean_q, var_q, mean_p, var_model)
        kl_at_true_eps = gaussian_kl(mean_q, var_q, mean_q, var_model)     # the constant part
        weighted = w[t] * ((eps - eps_model) ** 2).sum(-1)
        # rtol 1e-5: λ_t is computed from the float32 tables
        torch.testing.assert_close(weighted, kl - kl_at_true_eps, rtol=1e-5, atol=0.0)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_first_elbo_weight_is_the_mean_part_of_the_decoder_nll(variance):
    """t = 0: L_0 = −log N(x₀; μ_θ(x₁), σ₁²) (no KL); its ε_θ-dependent part is ‖x₀ − μ_θ‖²/(2σ₁²)."""
    schedule = DDPMSchedule.linear(T)
    w0 = float(ddpm_elbo_weights(schedule, variance)[0])
    beta, _, ab, ab_prev = tables(schedule)
    var_model = float(beta[0]) if variance == "beta" else float((1 - ab_prev[1]) / (1 - ab[1]) * beta[1])
    g = torch.Generator().manual_seed(1)
    x0, eps, eps_model = (torch.randn(64, DIM, generator=g, dtype=torch.float64) for _ in range(3))
    xt = ab[0].sqrt() * x0 + (1 - ab[0]).sqrt() * eps
    x0_model = (xt - (1 - ab[0]).sqrt() * eps_model) / ab[0].sqrt()
    mean_p, _ = bayes_posterior(x0_model, xt, 0, schedule)
    expected = ((x0 - mean_p) ** 2).sum(-1) / (2 * var_model)
    # rtol 1e-4: λ₀ uses 1 − ᾱ₀ = β₀ ≈ 2e-3 taken from the float32 ᾱ table (error ≈ 2⁻²⁴/β₀ ≈ 3e-5)
    torch.testing.assert_close(w0 * ((eps - eps_model) ** 2).sum(-1), expected, rtol=1e-4, atol=0.0)


# ---------------------------------------------------------------------- Gaussian data, exact score
M, S2 = 0.7, 0.3 ** 2            # data x₀ ~ N(M, S2 · I)


def gaussian_score(y, sigma):
    """∇ log p_σ(y) for p = N(M, S2 I): p_σ = N(M, (S2 + σ²) I)."""
    return -(y - M) / (S2 + sigma.reshape(-1, *([1] * (y.ndim - 1))) ** 2)


def posterior_mean_x0(xt, ab):
    """E[x₀ | x_t] for x₀ ~ N(M, S2), x_t = √ᾱ x₀ + √(1−ᾱ) ε (Gaussian conditioning)."""
    gain = S2 * math.sqrt(ab) / (ab * S2 + 1 - ab)
    return M + gain * (xt - math.sqrt(ab) * M)


@pytest.mark.parametrize("make", [lambda m, s: DDPMSampler(m, s), lambda m, s: DDIMSampler(m, s, eta=0.5),
                                  lambda m, s: DDPMSampler(m, s, timesteps=[40, 25, 10, 3, 0])],
                         ids=["ddpm", "ddim", "ddpm-respaced"])
def test_tweedie_estimate_is_the_posterior_mean_of_gaussian_data(make):
    schedule = DDPMSchedule.linear(T)
    sampler = make(ScoreFunction(gaussian_score), schedule)
    _, _, ab, _ = tables(schedule)
    g = torch.Generator().manual_seed(2)
    for k in range(sampler.n_steps):
        t = sampler.timesteps[k]
        xt = torch.randn(256, DIM, generator=g) * 1.3
        out = sampler.step(xt, k, torch.Generator().manual_seed(k))
        expected = posterior_mean_x0(xt.double(), float(ab[t])).float()
        # float32 code: x̂₀ = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t magnifies ε's rounding (~1e-7) by 1/√ᾱ_t
        # (up to ~300 at t = T−1 here), so atol = 1e-6/√ᾱ_t; rtol 1e-5
        atol = 1e-6 / math.sqrt(float(ab[t]))
        torch.testing.assert_close(out.denoised, expected, rtol=1e-5, atol=atol)


def test_ddpm_last_step_adds_no_noise_and_lands_on_the_posterior_mean():
    schedule = DDPMSchedule.linear(T)
    sampler = DDPMSampler(ScoreFunction(gaussian_score), schedule)
    _, _, ab, _ = tables(schedule)
    last = sampler.n_steps - 1
    assert sampler.timesteps[last] == 0
    xt = torch.randn(256, DIM, generator=torch.Generator().manual_seed(3))
    a = sampler.step(xt, last, torch.Generator().manual_seed(10))
    b = sampler.step(xt, last, torch.Generator().manual_seed(11))
    assert torch.equal(a.x, b.x)                                    # no noise at t = 0
    # at t = 0, ᾱ_{−1} = 1, so μ̃(x₁, x̂₀) = x̂₀ = E[x₀|x₁] for the exact score
    expected = posterior_mean_x0(xt.double(), float(ab[0])).float()
    torch.testing.assert_close(a.x, expected, rtol=1e-5, atol=1e-6)
    mean, var = bayes_posterior(a.denoised.double(), xt.double(), 0, schedule)
    assert var == 0.0
    torch.testing.assert_close(a.x.double(), mean, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------- clip_denoised
@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
@pytest.mark.parametrize("t", [30, 5, 0])
def test_clipped_ddpm_step_by_hand_from_the_schedule_tables(variance, t):
    """x̂₀ = clip((x_t − √(1−ᾱ_t) ε)/√ᾱ_t, −c, c), x_{t−1} = μ̃(x_t, x̂₀) + σ_t z with
    μ̃ = posterior_mean_coef_x0[t] x̂₀ + posterior_mean_coef_xt[t] x_t and σ_t² = β_t or β̃_t
    (z = 0 at t = 0). Data N(1, 0.3²) put x̂₀ on both sides of c = 1."""
    clip, mean_data = 1.0, 1.0

    def score(y, sigma):
        return -(y - mean_data) / (S2 + sigma.reshape(-1, 1) ** 2)

    schedule = DDPMSchedule.linear(T)
    model = ScoreFunction(score)
    sampler = DDPMSampler(model, schedule, variance=variance, clip_denoised=clip)
    k = sampler.timesteps.index(t)
    xt = mean_data * schedule.sqrt_alpha_bars[t] + torch.randn(
        512, DIM, generator=torch.Generator().manual_seed(4))
    out = sampler.step(xt, k, torch.Generator().manual_seed(5))

    eps = model.eps(xt, t, schedule)
    x0 = (xt - schedule.sqrt_one_minus_alpha_bars[t] * eps) / schedule.sqrt_alpha_bars[t]
    clipped = x0.clamp(-clip, clip)
    assert 0.05 < float((x0.abs() > clip).float().mean()) < 0.95       # both branches are exercised
    mean = schedule.posterior_mean_coef_x0[t] * clipped + schedule.posterior_mean_coef_xt[t] * xt
    sigma2 = schedule.betas[t] if variance == "beta" else schedule.posterior_variance[t]
    z = torch.randn(xt.shape, generator=torch.Generator().manual_seed(5))
    expected = mean + (sigma2.sqrt() * z if t > 0 else 0.0)
    # float32 tables against the sampler's float64 coefficients: 1e-5 relative, 1e-5 absolute
    torch.testing.assert_close(out.denoised, clipped, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.x, expected, rtol=1e-5, atol=1e-5)
    if t == 0:
        torch.testing.assert_close(out.x, clipped, rtol=1e-5, atol=1e-6)  # μ̃ = x̂₀ at t = 0
