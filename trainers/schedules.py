"""Noise schedules: geometric σ levels (NCSN) and discrete-time DDPM β schedules.

DDPM timesteps are 0-based here: index t ∈ [0, T) stands for the paper's t+1, so `alpha_bars[0]`
is ᾱ₁ = α₁ and `alpha_bars_prev[0]` is ᾱ₀ = 1. Every per-timestep quantity is precomputed once
in float64 and stored as float32 (Ho et al. 2020, eqs. 4, 6, 7, 11).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch


def extract(a: torch.Tensor, t: torch.Tensor, x_shape) -> torch.Tensor:
    """a[t] reshaped to (N, 1, ..., 1) so it broadcasts against x of any rank: (N, 2) points or (N, C, H, W)."""
    out = a.to(t.device).gather(0, t.long())
    return out.reshape(len(t), *([1] * (len(x_shape) - 1)))


def geometric_sigmas(sigma_max: float, sigma_min: float, n_levels: int) -> torch.Tensor:
    """σ₁ > σ₂ > … > σ_L, a geometric sequence (Song & Ermon 2019)."""
    if not (sigma_max > sigma_min > 0) or n_levels < 1:
        raise ValueError(f"need sigma_max > sigma_min > 0 and n_levels ≥ 1, got {sigma_max}, {sigma_min}, {n_levels}")
    if n_levels == 1:
        return torch.tensor([float(sigma_max)])
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n_levels))


def karras_sigmas(sigma_max: float, sigma_min: float, n: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: σ_i = (σ_max^{1/ρ} + i/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0 … n−1
    (denser near σ_min for ρ > 1; ρ = 1 is uniform, ρ → ∞ geometric)."""
    if not (sigma_max > sigma_min > 0) or n < 1:
        raise ValueError(f"need sigma_max > sigma_min > 0 and n ≥ 1, got {sigma_max}, {sigma_min}, {n}")
    if n == 1:
        return torch.tensor([float(sigma_max)])
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return ((hi + ramp * (lo - hi)) ** rho).float()


GRIDS = ("geometric", "karras")
VARIANCES = ("beta", "beta_tilde")     # a DDPM reverse step's variance σ_t²: β_t or β̃_t


def check_variance(variance: str) -> str:
    """`variance` if it names a reverse variance (VARIANCES), else a ValueError saying the choices."""
    if variance not in VARIANCES:
        raise ValueError(f"unknown reverse variance {variance!r}; choose {' or '.join(VARIANCES)}")
    return variance


def sigma_grid(kind: str, sigma_max: float, sigma_min: float, n: int, rho: float = 7.0) -> torch.Tensor:
    """n decreasing noise levels from σ_max to σ_min: "geometric" or "karras" (ρ). σ_max is raised to
    just above σ_min when it is not larger (a single-level model has σ_max = σ_min)."""
    sigma_max = max(float(sigma_max), float(sigma_min) * 1.0001)
    if kind == "geometric":
        return geometric_sigmas(sigma_max, sigma_min, n)
    if kind == "karras":
        return karras_sigmas(sigma_max, sigma_min, n, rho)
    raise ValueError(f"unknown σ grid {kind!r}; choose one of {', '.join(GRIDS)}")


def spaced_timesteps(T: int, n: int) -> list[int]:
    """n of the T timesteps, evenly spaced and decreasing, always including T−1 and 0 (n ≥ T: all)."""
    if n < 1:
        raise ValueError("need at least one timestep")
    if n >= T:
        return list(range(T - 1, -1, -1))
    ts = torch.linspace(T - 1, 0, n, dtype=torch.float64).round().long().tolist()
    return sorted(set(ts), reverse=True)


def _linear_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def _cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2)."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def posterior_mean_coefs(beta: torch.Tensor, ab: torch.Tensor, ab_prev: torch.Tensor):
    """(c₀, c_t) of the posterior mean μ̃ = c₀ x₀ + c_t x_t of q(x_{t'} | x_t, x₀), from ᾱ_t = `ab` to
    ᾱ_{t'} = `ab_prev` with β = 1 − ᾱ_t/ᾱ_{t'}: c₀ = √ᾱ_{t'} β/(1−ᾱ_t), c_t = √(1−β)(1−ᾱ_{t'})/(1−ᾱ_t)
    (Ho et al. eq. 7 for consecutive t' = t − 1; a respaced step otherwise). Tensors, elementwise."""
    return ab_prev.sqrt() * beta / (1 - ab), (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)


@dataclass
class DDPMSchedule:
    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor
    alpha_bars_prev: torch.Tensor
    sqrt_alpha_bars: torch.Tensor
    sqrt_one_minus_alpha_bars: torch.Tensor
    posterior_variance: torch.Tensor       # β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t) β_t
    posterior_mean_coef_x0: torch.Tensor   # √ᾱ_{t−1} β_t / (1−ᾱ_t)
    posterior_mean_coef_xt: torch.Tensor   # √α_t (1−ᾱ_{t−1}) / (1−ᾱ_t)
    kind: str = "linear"

    @classmethod
    def from_betas(cls, betas: torch.Tensor, kind: str = "custom") -> "DDPMSchedule":
        b = betas.double()
        if b.ndim != 1 or len(b) < 1 or not torch.all((b > 0) & (b < 1)):
            raise ValueError("betas must be a 1-D sequence in (0, 1)")
        a = 1 - b
        ab = torch.cumprod(a, 0)
        ab_prev = torch.cat([torch.ones(1, dtype=b.dtype), ab[:-1]])
        coef_x0, coef_xt = posterior_mean_coefs(b, ab, ab_prev)
        f = lambda v: v.float()  # noqa: E731
        return cls(
            betas=f(b), alphas=f(a), alpha_bars=f(ab), alpha_bars_prev=f(ab_prev),
            sqrt_alpha_bars=f(ab.sqrt()), sqrt_one_minus_alpha_bars=f((1 - ab).sqrt()),
            posterior_variance=f((1 - ab_prev) / (1 - ab) * b),
            posterior_mean_coef_x0=f(coef_x0),
            posterior_mean_coef_xt=f(coef_xt),
            kind=kind)

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float | None = None, beta_end: float | None = None) -> "DDPMSchedule":
        """β linear from beta_start to beta_end. Without them, Ho et al.'s 1e-4 → 0.02 for T = 1000,
        rescaled by 1000/T for other T (Nichol & Dhariwal) so ᾱ_T stays ≈ 0; given values are used as is."""
        scale = 1000 / T
        start = beta_start if beta_start is not None else 1e-4 * scale
        end = beta_end if beta_end is not None else min(0.02 * scale, 0.999)
        return cls.from_betas(_linear_betas(T, start, end), "linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008) -> "DDPMSchedule":
        return cls.from_betas(_cosine_betas(T, s), "cosine")

    @classmethod
    def from_sigmas(cls, sigmas: torch.Tensor, kind: str = "from σ") -> "DDPMSchedule":
        """The VP schedule whose timesteps have the VE noise levels `sigmas` (increasing):
        ᾱ_t = 1/(1+σ_t²), β_t = 1 − ᾱ_t/ᾱ_{t−1}. Lets a σ-model drive DDPM/DDIM on its own range."""
        s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if len(s) < 1 or not torch.all(s > 0) or not torch.all(s[1:] > s[:-1]):
            raise ValueError("sigmas must be positive and increasing")
        ab = 1 / (1 + s**2)
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        return cls.from_betas(1 - ab / ab_prev, kind)

    @classmethod
    def from_name(cls, kind: str, T: int = 1000) -> "DDPMSchedule":
        makers = {"linear": cls.linear, "cosine": cls.cosine}
        if kind not in makers:
            raise ValueError(f"unknown β schedule {kind!r}; choose one of {', '.join(makers)}")
        return makers[kind](T)

    @property
    def T(self) -> int:
        return len(self.betas)

    def to(self, device) -> "DDPMSchedule":
        return DDPMSchedule(**{f.name: (getattr(self, f.name).to(device) if f.name != "kind" else self.kind)
                               for f in fields(self)})

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε  (eq. 4)."""
        return extract(self.sqrt_alpha_bars, t, x0.shape) * x0 + extract(self.sqrt_one_minus_alpha_bars, t, x0.shape) * noise

    def posterior_mean(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """μ̃_t(x_t, x_0) of q(x_{t−1} | x_t, x_0)  (eq. 7)."""
        return extract(self.posterior_mean_coef_x0, t, xt.shape) * x0 + extract(self.posterior_mean_coef_xt, t, xt.shape) * xt

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t."""
        return (xt - extract(self.sqrt_one_minus_alpha_bars, t, xt.shape) * eps) / extract(self.sqrt_alpha_bars, t, xt.shape)

    def eps_mean(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """μ_θ(x_t, t) = (x_t − β_t/√(1−ᾱ_t) ε_θ) / √α_t  (eq. 11)."""
        coef = extract(self.betas, t, xt.shape) / extract(self.sqrt_one_minus_alpha_bars, t, xt.shape)
        return (xt - coef * eps) / extract(self.alphas, t, xt.shape).sqrt()

    def eps_to_score(self, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """s(x_t, t) = −ε/√(1−ᾱ_t)."""
        return -eps / extract(self.sqrt_one_minus_alpha_bars, t, eps.shape)

    def score_to_eps(self, score: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -score * extract(self.sqrt_one_minus_alpha_bars, t, score.shape)

    def sigma(self, t: torch.Tensor, variance: str, x_shape) -> torch.Tensor:
        """σ_t of the reverse step: √β_t ("beta") or √β̃_t ("beta_tilde")."""
        table = {"beta": self.betas, "beta_tilde": self.posterior_variance}
        return extract(table[check_variance(variance)], t, x_shape).sqrt()
