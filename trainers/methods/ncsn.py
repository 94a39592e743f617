"""NCSN: multi-σ denoising score matching, Song & Ermon 2019 (docs/math.md §5)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schedules import sigma_grid
from ..schema import option
from ..score_models import from_network
from .base import Level, LossBins, Method, randn_like, register_method, sum_dims


def ncsn_loss(model, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
              continuous: bool = False, per_example: bool = False):
    """Song & Ermon 2019, eq. 6: Σᵢ λ(σᵢ) E[½‖s_θ(x̃, σᵢ) + (x̃−x)/σᵢ²‖²] with λ(σ) = σ².
    One level is drawn uniformly per example (an unbiased estimate of the average over levels), so the
    per-example term is ½‖σ s_θ(x̃, σ) + z‖². With `continuous`, σ is drawn log-uniformly from
    [σ_L, σ₁] instead (the L → ∞ limit, as score-SDE's VE training), so the model knows every σ in
    its range and can drive samplers that ask between the L levels (PF-ODE, DDPM, DDIM).
    per_example: return (per-example terms, their σ) instead of the mean (loss per noise level)."""
    sigmas = sigmas.to(x.device, x.dtype)
    if continuous:
        lo, hi = sigmas.min().log(), sigmas.max().log()
        u = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype)
        sigma = torch.exp(lo + u * (hi - lo))
    else:
        sigma = sigmas[torch.randint(0, len(sigmas), (len(x),), generator=generator, device=x.device)]
    sig = sigma.reshape(len(x), *([1] * (x.ndim - 1)))
    z = randn_like(x, generator)
    s = model(x + sig * z, sigma)
    terms = 0.5 * sum_dims((sig * s + z) ** 2)
    return (terms, sigma) if per_example else terms.mean()


@register_method
class NCSN(Method):
    name = "ncsn"
    title = "NCSN: multi-σ denoising score matching"
    short = "NCSN multi-σ"
    tip = "ncsn: multi-σ DSM, λ(σ) = σ², s_θ(x, σ) = net(x, emb log σ)/σ (NCSNv2 scaling)."
    cond = "sigma"
    natural_sampler = "annealed"

    @dataclass
    class Params:
        sigma_max: float = option(
            0.0, "σ₁ (max)", "NCSN σ₁, the largest noise level. 0 = auto: the smallest σ at which the sampler's "
            "Gaussian start N(m, C + σ²I) is within KL 1e-5 nats of the noised density p_σ (docs/math.md §10.1), "
            "computed for the density the model is trained on.", lo=0.0, hi=100.0, step=0.5, decimals=3)
        sigma_min: float = option(0.05, "σ_L (min)", "NCSN σ_L, the smallest noise level.",
                                  lo=0.001, hi=5.0, step=0.01, decimals=3)
        n_levels: int = option(10, "Levels L", "NCSN L: number of geometric noise levels σ₁ > … > σ_L.",
                               lo=1, hi=1000, step=1, flag="--levels")
        ncsn_continuous: bool = option(
            True, "Continuous σ", "NCSN σ ~ log-uniform on [σ_L, σ₁] (the L → ∞ limit), so samplers that ask "
            "between the L levels stay in the trained range; off: only the L levels (Song & Ermon).")

    def noise_levels(self) -> torch.Tensor:
        """σ₁ > … > σ_L: the binding's, else geometric from the parameters (σ₁ = 0: 10)."""
        given = super().noise_levels()
        if given is not None:
            return given
        p = self.params
        return sigma_grid("geometric", p.sigma_max or 10.0, p.sigma_min, p.n_levels)

    def loss(self, net, x, generator=None):
        return ncsn_loss(net, x, self.noise_levels(), generator, self.params.ncsn_continuous)

    def terms(self, net, x, generator=None):
        return ncsn_loss(net, x, self.noise_levels(), generator, self.params.ncsn_continuous, per_example=True)

    def levels(self):
        sig = self.noise_levels()
        return [Level(f"σ{i + 1} = {float(sig[i]):.3g}", sigma=float(sig[i])) for i in reversed(range(len(sig)))]

    def evaluation_levels(self):
        return [float(s) for s in self.noise_levels()]

    def target_density(self, density, level):
        return density.noised(float(level))

    def network_score(self, net):
        return from_network(net, "sigma", sigmas=self.noise_levels(), discrete=not self.params.ncsn_continuous)

    def own_sampler_defaults(self, name):
        return {"n_levels": self.params.n_levels}

    def loss_bins(self):
        """One bin per level, the edges at the geometric means of neighbouring levels."""
        s = self.noise_levels().double().sort().values
        return LossBins((s[:-1] * s[1:]).sqrt(), s.tolist(), log=True, axis="noise level σ (log scale)")

    def divergence_advice(self) -> str:
        return f"raise {self._label('sigma_min')} (now {self.params.sigma_min:g})"
