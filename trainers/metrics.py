"""Metrics: score error against the exact score, sample quality against a density, DDPM ELBO (and bits/dim)."""
from __future__ import annotations

import math

import torch

from .schedules import DDPMSchedule, extract


def fisher_divergence(score_fn, density, x: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    """E‖s_θ(x) − ∇log p(x)‖² over the points x (samples of p, or a grid with `weights` ∝ p(x))."""
    with torch.no_grad():
        err = ((score_fn(x) - density.score(x).to(x.dtype)) ** 2).sum(1)
    if weights is None:
        return float(err.mean())
    w = weights / weights.sum()
    return float((w * err).sum())


def _mean_dist(x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64)
    for xc in x.split(chunk):
        total += torch.cdist(xc.double(), y.double()).sum()
    return total / (len(x) * len(y))


def mean_pairwise_distance(y: torch.Tensor, unbiased: bool = True) -> float:
    """E‖Y−Y'‖ within one sample: the reference term of `energy_distance`, to compute once.
    unbiased (default): the U-statistic, mean over the n(n−1) pairs i ≠ j; False: the V-statistic,
    mean over all n² pairs, the zero diagonal included (smaller by the factor (n−1)/n)."""
    n = len(y)
    if n < 2 and unbiased:
        raise ValueError("the unbiased mean pairwise distance needs at least 2 points")
    total = float(_mean_dist(y, y)) * n * n        # the diagonal ‖yᵢ − yᵢ‖ is 0
    return total / (n * (n - 1)) if unbiased else total / (n * n)


def energy_distance(x: torch.Tensor, y: torch.Tensor, y_self: float | None = None, unbiased: bool = True) -> float:
    """Székely's energy distance 2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ between the laws of two samples.

    unbiased (default): the U-statistic, the within-sample terms averaged over pairs i ≠ j. Its
    expectation is the population energy distance (0 iff the laws agree), so for two samples of one
    law it scatters around 0 and is often slightly negative. unbiased=False: the V-statistic (all
    pairs, i = j included): ≥ 0, but biased upward by (E‖X−X'‖/n + E‖Y−Y'‖/m) for samples of the
    same law (≈ 0.005 at n = m = 2000 on the presets). Pass `y_self = mean_pairwise_distance(y,
    unbiased)` (the same `unbiased`) when comparing many x against one fixed y."""
    yy = mean_pairwise_distance(y, unbiased) if y_self is None else y_self
    return float(2 * _mean_dist(x, y)) - mean_pairwise_distance(x, unbiased) - yy


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 1.0) -> float:
    """Squared maximum mean discrepancy with a Gaussian kernel exp(−‖a−b‖²/(2h²)) (biased V-statistic)."""
    def k(a, b):
        return torch.exp(-torch.cdist(a.double(), b.double()) ** 2 / (2 * bandwidth**2)).mean()
    return float(k(x, x) + k(y, y) - 2 * k(x, y))


def mode_weights(samples: torch.Tensor, density) -> torch.Tensor:
    """Estimated component weights ŵ_k = mean over samples of the responsibility r_k(x), shape (K,).
    Soft assignment is unbiased for exact samples (E_p[r_k(x)] = w_k), even where components overlap."""
    with torch.no_grad():
        return density.responsibilities(samples.double()).mean(0)


def mode_weight_error(samples: torch.Tensor, density) -> float:
    """Total-variation distance ½Σ|ŵ_k − w_k| between sampled and true mixture weights."""
    return float(0.5 * (mode_weights(samples, density) - density.weights).abs().sum())


def _gauss_kl(mu1, var1, mu2, var2) -> torch.Tensor:
    """KL(N(μ₁, var₁ I) ‖ N(μ₂, var₂ I)) summed over the data dimensions; var may broadcast."""
    kl = 0.5 * (torch.log(var2 / var1) + (var1 + (mu1 - mu2) ** 2) / var2 - 1)
    return kl.reshape(len(kl), -1).sum(1)


def discretised_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, std,
                                        lo: float = -1.0, hi: float = 1.0, bins: int = 256) -> torch.Tensor:
    """log P(x) per element, in float64, under the discretised Gaussian decoder of Ho et al. 2020
    (eq. 13; docs/math.md §5.1): the data take the `bins` values lo + k·Δ, Δ = (hi − lo)/(bins − 1)
    (8-bit images in [−1, 1]: 256 values 2k/255 − 1), and value k gets the mass of N(mean, std²)
    on [lo + (k − ½)Δ, lo + (k + ½)Δ], the outermost bins reaching to −∞ and +∞, so the masses
    sum to 1. x is snapped to the nearest value (pass quantised data); the edges are computed from
    k, so neighbouring bins share them exactly; the CDF difference is taken in the tail where it
    does not cancel, so it stays accurate far from the mean (`torch.special.log_ndtr`)."""
    x, mean = x.double(), mean.double()
    std = torch.as_tensor(std, dtype=torch.float64, device=x.device)
    step = (hi - lo) / (bins - 1)
    k = torch.round((x - lo) / step).clamp(0, bins - 1)
    inf = torch.tensor(math.inf, dtype=torch.float64, device=x.device)
    a = torch.where(k == 0, -inf, (lo + (k - 0.5) * step - mean) / std)          # lower edge, in std units
    b = torch.where(k == bins - 1, inf, (lo + (k + 0.5) * step - mean) / std)    # upper edge
    # log(Φ(b) − Φ(a)) = log Φ(b) + log(1 − Φ(a)/Φ(b)), or the same with −b, −a in the upper tail
    upper = (a + b) > 0          # the bin lies mostly above the mean (a = −∞ and b = ∞ never both)
    hi_edge, lo_edge = torch.where(upper, -a, b), torch.where(upper, -b, a)
    log_hi, log_lo = torch.special.log_ndtr(hi_edge), torch.special.log_ndtr(lo_edge)
    return log_hi + torch.log1p(-torch.exp(log_lo - log_hi))


def bits_per_dim(nats_per_example: float, dims: int) -> float:
    """A negative log-likelihood (or −ELBO) in nats per example, in bits per data dimension:
    nats / (D ln 2)."""
    return nats_per_example / (dims * math.log(2))


DECODER_VARIANCES = ("reference", "beta1")


def ddpm_decoder_std(schedule: DDPMSchedule, decoder_variance: str = "reference") -> float:
    """The std of the DDPM decoder p_θ(x_0|x_1) = N(μ_θ(x_1, 1), std²):
    "reference": √β̃₂, β̃₂ = β₂ (1 − ᾱ₁)/(1 − ᾱ₂) — Ho et al.'s code (diffusion_tf/diffusion_utils_2.py:
    `posterior_log_variance_clipped` = log β̃ with its first entry, β̃₁ = 0, replaced by β̃₂, the decoder's
    log-variance at t = 1 for both fixed variances), so bits/dim can be set beside the papers';
    "beta1": √β₁ (the variance of the last step of the DDPM sampler with variance="beta")."""
    if decoder_variance == "reference":
        if schedule.T < 2:
            raise ValueError("the reference decoder variance β̃₂ needs a schedule of at least 2 timesteps")
        return math.sqrt(float(schedule.posterior_variance[1]))
    if decoder_variance == "beta1":
        return math.sqrt(float(schedule.betas[0]))
    raise ValueError(f"unknown decoder variance {decoder_variance!r}; choose reference or beta1")


@torch.no_grad()
def ddpm_elbo_nats(model, schedule: DDPMSchedule, x0: torch.Tensor, variance: str = "beta",
                   decoder_std: float | None = None, decoder: str = "gaussian",
                   data_range: tuple[float, float] = (-1.0, 1.0), decoder_variance: str | None = None) -> dict:
    """The DDPM negative ELBO in nats per example (Ho et al. eq. 5), every term summed exactly over t:
    L_T = KL(q(x_T|x_0) ‖ N(0, I)), L_{t−1} = KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)) for t > 1, and
    L_0 = −log p_θ(x_0|x_1) with mean μ_θ(x_1, 1) and std `decoder_std`, by default the one
    `decoder_variance` names (`ddpm_decoder_std`: "reference" √β̃₂ as Ho et al.'s code, "beta1" √β₁).
    Its default follows the decoder: "reference" for the discretised one (bits/dim comparable with the
    papers'), "beta1" for the Gaussian one (continuous data: q(x_0|x_1) has variance ≈ β₁/α₁ where the
    data are smooth on the scale √β₁, so β₁ gives the tighter bound — with the exact ε on a 2D mixture,
    −ELBO − NLL is 0.04 nats with β₁ and 0.30 with β̃₂). The result says which ("decoder_variance":
    "reference" | "beta1" | "custom", and "decoder_std").
    ``decoder="gaussian"``: L_0 is a Gaussian density — continuous data, so this bounds a density.
    ``decoder="discretised"``: L_0 is the discretised Gaussian on 256 bins spanning `data_range`
    (`discretised_gaussian_log_likelihood`; x0 must be quantised to those bins) — for 8-bit images,
    a bound on a discrete NLL that `bits_per_dim` turns into bits/dim (docs/math.md §5.1).
    Each term uses one draw of x_t ~ q(x_t|x_0) from the global torch RNG."""
    if decoder not in ("gaussian", "discretised"):
        raise ValueError(f"unknown decoder {decoder!r}; choose gaussian or discretised")
    if decoder_variance is None:
        decoder_variance = "reference" if decoder == "discretised" else "beta1"
    dec_std = ddpm_decoder_std(schedule, decoder_variance) if decoder_std is None else float(decoder_std)
    sched = schedule.to(x0.device)
    n = len(x0)
    ab_T = sched.alpha_bars[-1]
    prior = _gauss_kl(sched.sqrt_alpha_bars[-1] * x0, (1 - ab_T).expand_as(x0), torch.zeros_like(x0),
                      torch.ones_like(x0))
    terms = torch.zeros(n, dtype=torch.float64, device=x0.device)
    decoder_nll = torch.zeros(n, dtype=torch.float64, device=x0.device)
    for ti in range(sched.T):
        t = torch.full((n,), ti, dtype=torch.long, device=x0.device)
        x_t = sched.q_sample(x0, t, torch.randn_like(x0))
        mean_theta = sched.eps_mean(x_t, t, model(x_t, t))
        if ti == 0:
            std = dec_std
            if decoder == "discretised":
                nll = -discretised_gaussian_log_likelihood(x0, mean_theta, std, *data_range)
            else:
                nll = 0.5 * ((x0 - mean_theta) / std) ** 2 + math.log(std) + 0.5 * math.log(2 * math.pi)
            decoder_nll = nll.reshape(n, -1).sum(1).double()
            continue
        true_mean = sched.posterior_mean(x0, x_t, t)
        true_var = extract(sched.posterior_variance, t, x0.shape).expand_as(x0)
        model_var = sched.sigma(t, variance, x0.shape).expand_as(x0) ** 2
        terms += _gauss_kl(true_mean, true_var, mean_theta, model_var).double()
    total = prior.double() + terms + decoder_nll
    return {"elbo_nats": float(total.mean()), "prior_nats": float(prior.mean()),
            "diffusion_nats": float(terms.mean()), "decoder_nats": float(decoder_nll.mean()),
            "decoder_variance": decoder_variance if decoder_std is None else "custom", "decoder_std": dec_std}
