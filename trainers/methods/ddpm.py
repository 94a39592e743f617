"""DDPM ε-prediction, Ho et al. 2020 (docs/math.md §6)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schedules import VARIANCES, DDPMSchedule, check_variance
from ..schema import option
from ..score_models import ExactScore, Query, from_network
from .base import Level, LossBins, Method, answer, randn_like, register_method, sum_dims


def ddpm_elbo_weights(schedule: DDPMSchedule, variance: str = "beta") -> torch.Tensor:
    """λ_t = β_t² / (2σ_t² α_t (1−ᾱ_t)) of L_{t−1} (Ho et al. eq. 12). With σ_t² = β̃_t the first step's
    β̃ is 0, so it takes β̃ of the second step (the clipping of the reference code)."""
    var = schedule.betas if check_variance(variance) == "beta" else schedule.posterior_variance.clone()
    if variance == "beta_tilde" and schedule.T > 1:
        var[0] = var[1]
    return schedule.betas**2 / (2 * var * schedule.alphas * (1 - schedule.alpha_bars))


def ddpm_loss(model, x0: torch.Tensor, schedule: DDPMSchedule, generator: torch.Generator | None = None,
              weighting: str = "simple", variance: str = "beta", per_example: bool = False):
    """t ~ U{0..T−1}, x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε.
    "simple": L_simple = E‖ε − ε_θ(x_t, t)‖² averaged over elements (the paper's training loss);
    "elbo":   E_t[λ_t ‖ε − ε_θ‖²] with the true-ELBO weights λ_t (summed over dims; ×T gives Σ_t L_{t−1}).
    per_example: return (per-example terms, their t) instead of the mean (loss per timestep)."""
    t = torch.randint(0, schedule.T, (len(x0),), generator=generator, device=x0.device)
    eps = randn_like(x0, generator)
    x_t = schedule.q_sample(x0, t, eps)
    err = (eps - model(x_t, t)) ** 2
    if weighting == "simple":
        terms = err.reshape(len(err), -1).mean(1)          # mean over elements, as L_simple
    elif weighting == "elbo":
        terms = ddpm_elbo_weights(schedule, variance).to(x0.device)[t] * sum_dims(err)
    else:
        raise ValueError(f"unknown DDPM weighting {weighting!r}; choose simple or elbo")
    return (terms, t) if per_example else terms.mean()


@register_method
class DDPM(Method):
    name = "ddpm"
    title = "DDPM ε-prediction"
    short = "DDPM ε-prediction"
    tip = "ddpm: ε-prediction, L_simple = E‖ε − ε_θ(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t)‖²."
    cond = "time"
    level_name = "t"
    natural_sampler = "ddpm"

    @dataclass
    class Params:
        schedule: str = option("linear", "β schedule", "DDPM β schedule. linear: β from 1e-4 to 0.02 (rescaled "
                               "by 1000/T for small T); cosine: Nichol & Dhariwal.",
                               choices=(("linear", "linear β"), ("cosine", "cosine")))
        n_timesteps: int = option(1000, "Timesteps T", "DDPM T, the number of diffusion steps (0-based t in the "
                                  "code, t+1 in labels).", lo=1, hi=100_000, step=10, flag="--timesteps")
        ddpm_weighting: str = option("simple", "Loss weighting", "DDPM loss: L_simple (unweighted ε-MSE) or the "
                                     "ELBO's per-timestep weights.", choices=("simple", "elbo"))
        ddpm_variance: str = option("beta", "Reverse variance", "DDPM reverse variance σ_t² = β_t or β̃_t (used "
                                    "by the ELBO weights and sampling).", choices=VARIANCES)

    def schedule(self) -> DDPMSchedule:
        """The binding's schedule, else the one the parameters name (made once)."""
        if self._schedule is None:
            self._schedule = DDPMSchedule.from_name(self.params.schedule, self.params.n_timesteps)
        return self._schedule

    def loss(self, net, x, generator=None):
        p = self.params
        return ddpm_loss(net, x, self.schedule(), generator, p.ddpm_weighting, p.ddpm_variance)

    def terms(self, net, x, generator=None):
        p = self.params
        return ddpm_loss(net, x, self.schedule(), generator, p.ddpm_weighting, p.ddpm_variance, per_example=True)

    def levels(self):
        sch = self.schedule()
        return [Level(f"t = {t + 1}/{sch.T}  (√(1−ᾱ) = {float(sch.sqrt_one_minus_alpha_bars[t]):.3g})", t=t)
                for t in range(sch.T)]

    def evaluation_levels(self):
        T = self.schedule().T
        return [float(t) for t in torch.linspace(0, T - 1, min(10, T)).round().long()]

    def target_density(self, density, level):
        return density.ddpm_marginal(float(self.schedule().alpha_bars[int(level)]))

    def network_score(self, net):
        return from_network(net, "time", schedule=self.schedule())

    def exact_score(self, density):
        return ExactScore(density, schedule=self.schedule())

    def score_field(self, sm, level):
        """x_t ↦ ∇log q(x_t) = −ε(x_t, t)/√(1−ᾱ_t) at the timestep t = level (VP coordinates)."""
        sch, t = self.schedule(), int(level)

        def field(x):
            return sch.eps_to_score(answer(sm, Query.eps(x, t, sch)),
                                    torch.full((len(x),), t, dtype=torch.long, device=x.device))
        return field

    def own_sampler_defaults(self, name):
        return {"variance": self.params.ddpm_variance, "n_timesteps": self.params.n_timesteps}

    def loss_bins(self):
        """min(20, T) equal bins of the timestep t in [0, T)."""
        T = self.schedule().T
        edges = torch.linspace(0, T, min(20, T) + 1, dtype=torch.float64)
        return LossBins(edges[1:-1], ((edges[:-1] + edges[1:]) / 2).tolist(), log=False,
                        axis="timestep t (1 … T)", offset=1.0)
