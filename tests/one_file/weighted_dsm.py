"""Example: a training method as one file (docs/adding.md). Dropped into trainers/methods/, it appears
in the 2D command line (`train --objective weighted-dsm --dsm-power λ`), the Training tab's objective
combo and its "Method parameters" form, and checkpoints, with no other edit.

Weighted denoising score matching at one σ: x̃ = x + σz,
    L = E[ w(x̃) · ½‖s_θ(x̃) + z/σ‖² ],   w(x̃) = (1 + ‖x̃‖²)^λ,   λ = dsm_power.
The weight depends on x̃ only, so for each x̃ the minimiser is still E[−z/σ | x̃] = ∇log p_σ(x̃)
(Vincent 2011): the weighting moves where the network spends its capacity (λ > 0: the tails), not
what it learns. λ = 0 is plain DSM, step for step (the same noise draws, the same loss).

`dsm_power` is no field of trainers.fitting.ToyConfig: a 2D config keeps it in `extra`.
Everything else (σ, its levels, target density, divergence advice) is DSM's, by inheritance.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schema import option
from .base import randn_like, register_method, sum_dims
from .dsm import DSM


@register_method
class WeightedDSM(DSM):
    name = "weighted-dsm"
    title = "Weighted denoising score matching (one σ)"
    short = "weighted DSM (one σ)"
    tip = "weighted-dsm: DSM at one σ, each example weighted by (1 + ‖x̃‖²)^λ; still fits the score of p_σ."

    @dataclass
    class Params(DSM.Params):
        dsm_power: float = option(0.5, "Weight power λ", "Each noisy point x̃ weighs (1 + ‖x̃‖²)^λ in the loss "
                                  "(λ > 0: the tails count more; 0: plain DSM).", lo=-2.0, hi=2.0, step=0.1,
                                  decimals=2)

    def loss(self, net, x, generator=None):
        sigma = float(self.params.sigma)
        z = randn_like(x, generator)
        x_noisy = x + sigma * z
        s = net(x_noisy, torch.full((len(x),), sigma, device=x.device)) if getattr(net, "cond", None) == "sigma" \
            else net(x_noisy)
        weight = (1 + sum_dims(x_noisy ** 2)) ** self.params.dsm_power
        return (weight * 0.5 * sum_dims((s + z / sigma) ** 2)).mean()
