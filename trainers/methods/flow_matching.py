"""Flow matching on the linear path, Lipman et al. 2023 / Liu et al. 2023 (rectified flow), with
independent or minibatch optimal-transport coupling (Tong et al. 2024); docs/math.md, "Flow matching
and rectified flow".
Paths, the exact velocity and the velocity ↔ score conversion live in trainers/flows.py."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..flows import T_MAX, T_SCALE, VelocityScoreModel, linear_path, ot_pair
from ..schedules import sigma_grid
from ..schema import option
from ..score_models import ExactScore
from .base import Level, LossBins, Method, randn_like, register_method, sum_dims

COUPLINGS = (("independent", "independent"), ("ot", "minibatch OT"))


def fm_loss(net, x0: torch.Tensor, generator: torch.Generator | None = None, coupling: str = "independent",
            z: torch.Tensor | None = None, per_example: bool = False):
    """t ~ U[0, 1], z ~ N(0, I) (or the given z: a reflow pair), x_t = (1 − t) x₀ + t z,
    E‖v_θ(x_t, t) − (z − x₀)‖² (summed over dimensions, averaged over the batch; TorchCFM averages over
    elements too, 1/d of this). coupling "ot": z reordered by the exact OT plan of the minibatch.
    per_example: return (per-example terms, their t) instead of the mean."""
    t = torch.rand(len(x0), generator=generator, device=x0.device, dtype=x0.dtype)
    if z is None:
        z = randn_like(x0, generator)
        if coupling == "ot":
            z = ot_pair(x0, z)
        elif coupling != "independent":
            raise ValueError(f"unknown coupling {coupling!r}; choose independent or ot")
    x_t = linear_path(x0, z, t)
    terms = sum_dims((net(x_t, T_SCALE * t) - (z - x0)) ** 2)
    return (terms, t) if per_example else terms.mean()


@register_method
class FlowMatching(Method):
    """A velocity network v_θ(x, t) (nets.py's "time"-conditioned MLP fed 1000·t). A training batch is
    data (N, d), or coupled pairs (N, 2, d) = [x₀, z] (reflow: trainers.flows / `toy reflow`)."""
    name = "fm"
    title = "Flow matching (linear path)"
    short = "flow matching"
    tip = "fm: x_t = (1−t)x₀ + t z, loss ‖v_θ(x_t, t) − (z − x₀)‖²; sampled by the flow ODE t: 1 → 0."
    cond = "time"
    natural_sampler = "flow"

    @dataclass
    class Params:
        coupling: str = option("independent", "Coupling", "How a minibatch pairs data x₀ with noise z: "
                               "independent, or the exact optimal-transport plan of the minibatch "
                               "(straighter paths from the start).", choices=COUPLINGS)

    def loss(self, net, x, generator=None):
        return self.terms(net, x, generator)[0].mean()

    def terms(self, net, x, generator=None):
        if x.ndim == 3 and x.shape[1] == 2:                  # reflow pairs [x₀, z]
            return fm_loss(net, x[:, 0], generator, z=x[:, 1], per_example=True)
        return fm_loss(net, x, generator, self.params.coupling, per_example=True)

    def _level_values(self) -> list[float]:
        """The binding's σ levels (2D: the config's range), else (images) EDM's range 80 … 0.002, geometric:
        the σ range the other samplers run over on a velocity model (the flow ODE starts at t = 0.999)."""
        sig = self.noise_levels()
        if sig is None:
            sig = sigma_grid("geometric", 80.0, 0.002, 10)
        return [float(s) for s in sig]

    def levels(self):
        return [Level(f"t = {s / (1 + s):.3g}  (σ = {s:.3g})", sigma=s) for s in reversed(self._level_values())]

    def evaluation_levels(self):
        return self._level_values()

    def target_density(self, density, level):
        return density.noised(float(level))

    def network_score(self, net):
        sig = self._level_values()
        return VelocityScoreModel(net, min(sig), max(sig))

    def exact_score(self, density):
        """Over the same σ range as the network's, and its flow ODE starts at the same t = T_MAX."""
        sig = self._level_values()
        sm = ExactScore(density, min(sig), max(sig))
        sm.flow_t_max = T_MAX
        return sm

    def loss_bins(self):
        """10 equal bins of the flow time t ∈ [0, 1]."""
        edges = torch.linspace(0, 1, 11, dtype=torch.float64)
        return LossBins(edges[1:-1], ((edges[:-1] + edges[1:]) / 2).tolist(), log=False,
                        axis="flow time t (0: data, 1: noise)")

