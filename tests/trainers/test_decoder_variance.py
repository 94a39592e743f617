"""The DDPM decoder variance of the ELBO / bits/dim (issue #19 item 6): by default Ho et al.'s reference
β̃₂ (diffusion_tf/diffusion_utils_2.py, `posterior_log_variance_clipped`: log β̃ with β̃₁ = 0 replaced
by β̃₂, used as the decoder's log-variance at t = 1), β₁ as an option; every result names its choice."""
import math

import numpy as np
import pytest
import torch

from trainers.densities import GaussianMixture
from trainers.metrics import DECODER_VARIANCES, ddpm_decoder_std, ddpm_elbo_nats
from trainers.schedules import DDPMSchedule
from trainers.score_models import ExactScore

# off-centre, unequal weights, correlated: not a preset
DATA = GaussianMixture([0.7, 0.3], [[0.4, -0.2], [-0.5, 0.3]], [[[0.02, 0.005], [0.005, 0.01]], [[0.01, 0.0], [0.0, 0.03]]])


def _reference_clipped_log_variance(betas: np.ndarray) -> np.ndarray:
    """Ho et al.'s `posterior_log_variance_clipped`, written out from their formulas in numpy."""
    ac = np.cumprod(1.0 - betas)
    ac_prev = np.append(1.0, ac[:-1])
    post = betas * (1.0 - ac_prev) / (1.0 - ac)
    return np.log(np.append(post[1], post[1:]))


@pytest.mark.parametrize("T", [1000, 40])
def test_reference_decoder_std_is_ho_et_al_s_clipped_posterior_std_at_t_1(T):
    sched = DDPMSchedule.linear(T)
    betas = sched.betas.double().numpy()
    if T == 1000:
        np.testing.assert_allclose(betas, np.linspace(1e-4, 0.02, T), rtol=1e-6)
    ref = math.exp(0.5 * _reference_clipped_log_variance(betas)[0])
    assert ddpm_decoder_std(sched, "reference") == pytest.approx(ref, rel=1e-6)
    assert ddpm_decoder_std(sched, "beta1") == pytest.approx(math.sqrt(betas[0]), rel=1e-6)
    if T == 1000:       # Ho et al.'s CIFAR-10 schedule: β̃₂ ≈ 0.545 β₁, σ 0.00738 against 0.01
        assert ref / math.sqrt(betas[0]) == pytest.approx(0.7385, abs=1e-3)
    with pytest.raises(ValueError, match="unknown decoder variance 'beta2'; choose reference or beta1"):
        ddpm_decoder_std(sched, "beta2")
    assert DECODER_VARIANCES == ("reference", "beta1")


def _by_hand_decoder_nll(x0, eps_fn, sched, std, noise):
    """−log N(x0; μ_θ(x_1, 1), std² I) with x_1 = √ᾱ₁ x0 + √(1 − ᾱ₁) noise, μ_θ = (x_1 − β₁/√(1 − ᾱ₁) ε)/√α₁."""
    b1 = float(sched.betas[0])
    x1 = math.sqrt(1 - b1) * x0 + math.sqrt(b1) * noise
    mean = (x1 - b1 / math.sqrt(b1) * eps_fn(x1, torch.zeros(len(x0), dtype=torch.long))) / math.sqrt(1 - b1)
    return (0.5 * ((x0 - mean) / std) ** 2 + math.log(std) + 0.5 * math.log(2 * math.pi)).sum(1).double()


@pytest.mark.parametrize("decoder_variance", ["reference", "beta1"])
def test_elbo_decoder_term_uses_the_named_variance_and_says_so(decoder_variance):
    sched = DDPMSchedule.linear(100)
    exact = ExactScore(DATA)
    eps = lambda x, t: exact.eps(x, t, sched)          # noqa: E731
    x0 = DATA.sample(400, torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    r = ddpm_elbo_nats(eps, sched, x0, decoder_variance=decoder_variance)
    std = ddpm_decoder_std(sched, decoder_variance)
    assert r["decoder_variance"] == decoder_variance and r["decoder_std"] == std
    torch.manual_seed(3)
    noise = torch.randn_like(x0)                       # the first draw is x_1's (t = 1 comes first)
    hand = _by_hand_decoder_nll(x0, eps, sched, std, noise)
    assert r["decoder_nats"] == pytest.approx(float(hand.mean()), rel=1e-6)
    # the same seed with the other variance: prior and diffusion terms identical, only the decoder moves
    other = "beta1" if decoder_variance == "reference" else "reference"
    torch.manual_seed(3)
    o = ddpm_elbo_nats(eps, sched, x0, decoder_variance=other)
    assert o["prior_nats"] == r["prior_nats"] and o["diffusion_nats"] == r["diffusion_nats"]
    assert abs(o["decoder_nats"] - r["decoder_nats"]) > 1e-3
    # an explicit std overrides both and is reported as custom
    torch.manual_seed(3)
    c = ddpm_elbo_nats(eps, sched, x0, decoder_std=0.3)
    assert c["decoder_variance"] == "custom" and c["decoder_std"] == 0.3


def test_default_follows_the_decoder_reference_for_discretised_beta1_for_gaussian():
    sched = DDPMSchedule.linear(50)
    x0 = torch.randint(1, 255, (50, 2), generator=torch.Generator().manual_seed(1)) / 127.5 - 1
    for decoder, expected in (("discretised", "reference"), ("gaussian", "beta1")):
        torch.manual_seed(0)
        default = ddpm_elbo_nats(lambda x, t: 0.1 * x, sched, x0, decoder=decoder)
        torch.manual_seed(0)
        named = ddpm_elbo_nats(lambda x, t: 0.1 * x, sched, x0, decoder=decoder, decoder_variance=expected)
        assert default == named and default["decoder_variance"] == expected
    with pytest.raises(ValueError, match="choose reference or beta1"):
        ddpm_elbo_nats(lambda x, t: 0.1 * x, sched, x0, decoder_variance="small")


def test_on_continuous_data_beta1_gives_the_tighter_bound():
    """Why the Gaussian decoder's default is β₁: with the exact ε (T = 1000, Ho et al.'s schedule) the
    bound −ELBO ≥ NLL holds with both, and is tighter with β₁ — q(x_0|x_1) has variance ≈ β₁/α₁."""
    sched = DDPMSchedule.linear(1000)
    exact = ExactScore(DATA)
    x0 = DATA.sample(1000, torch.Generator().manual_seed(0))
    nll = -DATA.log_prob(x0.double())
    gaps = {}
    for v in DECODER_VARIANCES:
        torch.manual_seed(0)
        gaps[v] = ddpm_elbo_nats(lambda x, t: exact.eps(x, t, sched), sched, x0, decoder_variance=v)["elbo_nats"] - float(nll.mean())
    # the decoder terms differ by ½ r²(1/β̃₂ − 1/β₁) − ½ log(β₁/β̃₂) per dimension, r = x_0 − μ_θ with
    # r² ≈ β₁ χ²₁: in expectation ½(ρ − 1) − ½ log ρ, ρ = β₁/β̃₂, with standard error |ρ − 1|/√n (2 dimensions)
    ratio = ddpm_decoder_std(sched, "beta1") ** 2 / ddpm_decoder_std(sched, "reference") ** 2
    expected = 2 * (0.5 * (ratio - 1) - 0.5 * math.log(ratio))
    se = abs(ratio - 1) / math.sqrt(len(x0))
    assert gaps["reference"] - gaps["beta1"] == pytest.approx(expected, abs=4 * se)
    assert -0.02 < gaps["beta1"] < gaps["reference"]


def test_image_report_and_cli_name_the_decoder_variance():
    from trainers.image.__main__ import build_parser
    from trainers.image.evaluate import format_report

    bpd = {"bits_per_dim": 1.5, "elbo_nats": 66.5, "prior_nats": 0.001, "diffusion_nats": 60.0, "decoder_nats": 6.5,
           "n": 16, "source": "held-out digits", "seconds": 1.0}
    base = {"run": "r", "step": 2, "method": "ddpm", "dataset": "digits"}
    assert "σ² = β̃₂ as Ho et al.'s code" in format_report({**base, "bits_per_dim": {**bpd, "decoder_variance": "reference"}})
    assert "σ² = β₁," in format_report({**base, "bits_per_dim": {**bpd, "decoder_variance": "beta1"}})
    assert "σ² = β₁," in format_report({**base, "bits_per_dim": bpd})          # records from before the option
    args = build_parser().parse_args(["evaluate", "--run", "x"])
    assert args.decoder_variance == "reference"
    assert build_parser().parse_args(["evaluate", "--run", "x", "--decoder-variance", "beta1"]).decoder_variance == "beta1"
