"""Flow matching on the linear path, and the one place velocities and scores convert (docs/math.md,
"Flow matching and rectified flow").

Convention: t ∈ [0, 1], t = 0 is the data and t = 1 the noise,

    x_t = (1 − t) x₀ + t z,   z ~ N(0, I),   the regression target z − x₀,
    v(x, t) = E[z − x₀ | x_t = x]   (the velocity whose ODE dx/dt = v carries p_t along t),

and the flow ODE dx/dt = v(x, t), run from t = 1 (x = z) down to t = 0, samples the data.
(TorchCFM and Lipman et al. run time the other way, data at t = 1: t_theirs = 1 − t, u_theirs = −v.)

On this path y = x_t/(1 − t) = x₀ + σ z with σ = t/(1 − t): it is the VE process, so with the VE
score s(y, σ) = ∇_y log p_σ(y) (trainers.score_models) and Tweedie, E[x₀|y] = y + σ² s, E[z|y] = −σ s:

    v = E[z|y] − E[x₀|y] = −y − σ(1 + σ) s(y, σ)        and        s(y, σ) = −(y + v)/(σ(1 + σ)),

or in x itself, with ∇ₓ log p_t(x) = s(y, σ)/(1 − t):  v(x, t) = −(x + t ∇ₓ log p_t(x))/(1 − t).

For a Gaussian mixture p = Σ w_k N(μ_k, Σ_k), p_t is the mixture of N((1 − t)μ_k, C_k),
C_k = (1 − t)²Σ_k + t²I, and with its responsibilities r_k(x) the exact velocity is

    v(x, t) = Σ_k r_k(x) [ −μ_k + (t I − (1 − t) Σ_k) C_k⁻¹ (x − (1 − t) μ_k) ]

(per component E[z|x, k] = t C_k⁻¹(x − m_k), E[x₀|x, k] = μ_k + (1 − t)Σ_k C_k⁻¹(x − m_k)); finite at
t = 1 (v = x − E[x₀]) and at t = 0 (v = −x).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .densities import GaussianMixture
from .score_models import ScoreModel

T_SCALE = 1000.0     # a velocity network's time input is 1000·t (nets.py's sinusoidal "time" embedding)
T_MAX = 0.999        # the flow ODE of a flow-matching model starts here (σ = 999): x_t ≈ z to 1e-3


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) → (N, 1, …, 1) so it broadcasts against x (points or images)."""
    return v.reshape(len(x), *([1] * (x.ndim - 1))).to(x.dtype)


def sigma_of_t(t):
    """σ = t/(1 − t): the VE level of flow time t."""
    return t / (1 - t)


def t_of_sigma(sigma):
    """t = σ/(1 + σ): the flow time of VE level σ."""
    return sigma / (1 + sigma)


def linear_path(x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 − t) x₀ + t z, t of shape (N,) (or a number)."""
    t = _bcast(torch.as_tensor(t, dtype=x0.dtype, device=x0.device).expand(len(x0)), x0)
    return (1 - t) * x0 + t * z


def flow_marginal(density: GaussianMixture, t: float) -> GaussianMixture:
    """p_t, the law of x_t: the mixture of N((1 − t)μ_k, (1 − t)²Σ_k + t²I)."""
    t = float(t)
    eye = torch.eye(density.means.shape[1], dtype=torch.float64)
    return GaussianMixture(density.weights, (1 - t) * density.means, (1 - t) ** 2 * density.covs + t ** 2 * eye,
                           name=density.name, bounds=density.bounds)


def exact_velocity(density: GaussianMixture, x: torch.Tensor, t: float) -> torch.Tensor:
    """v(x, t) = E[z − x₀ | x_t = x] of the mixture in closed form (module docstring), for t ∈ [0, 1];
    computed in float64, returned in x's dtype."""
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"flow time t must lie in [0, 1], got {t}")
    pt = flow_marginal(density, t)
    xd = torch.as_tensor(x).double()
    r = pt.responsibilities(xd)                                   # (N, K)
    eye = torch.eye(xd.shape[1], dtype=torch.float64)
    gain = (t * eye - (1 - t) * density.covs) @ torch.linalg.inv(pt.covs)    # (K, d, d)
    dev = xd[:, None, :] - pt.means[None]                         # (N, K, d)
    vk = -density.means[None] + torch.einsum("kij,nkj->nki", gain, dev)
    return (r[:, :, None] * vk).sum(1).to(torch.as_tensor(x).dtype)


def velocity_from_score(y: torch.Tensor, sigma, score: torch.Tensor) -> torch.Tensor:
    """v at x = y/(1 + σ), t = σ/(1 + σ), from the VE score s(y, σ): v = −y − σ(1 + σ) s."""
    s = _bcast(torch.as_tensor(sigma, dtype=y.dtype, device=y.device).expand(len(y)), y)
    return -y - s * (1 + s) * score


def score_from_velocity(y: torch.Tensor, sigma, v: torch.Tensor) -> torch.Tensor:
    """The VE score s(y, σ) from the velocity v at x = y/(1 + σ): s = −(y + v)/(σ(1 + σ)) (σ > 0)."""
    s = _bcast(torch.as_tensor(sigma, dtype=y.dtype, device=y.device).expand(len(y)), y)
    return -(y + v) / (s * (1 + s))


class VelocityScoreModel(ScoreModel):
    """A velocity network v_θ(x_t, T_SCALE·t) as a ScoreModel: asked for s(y, σ), it evaluates the net at
    x = y/(1 + σ), t = σ/(1 + σ) and converts (score_from_velocity); asked for ε at a DDPM timestep,
    ε = −σ s. Trained on every t ∈ [0, 1], so valid at every σ > 0. Its default σ range is the binding's
    (that of the other methods' samplers); the flow ODE starts at `flow_t_max` = T_MAX instead (x_t ≈ z)."""
    kind = "flow-matching"
    description = "velocity network (flow matching)"
    flow_t_max = T_MAX

    def __init__(self, net: Callable, sigma_min: float, sigma_max: float):
        super().__init__(sigma_min, sigma_max, valid=(0.0, math.inf))
        self.net = net

    def _prepare(self, q):
        sigma = q.noise_level()
        y = q.x if q.kind == "score" else q.x / _bcast(q.sqrt_alpha_bar(), q.x)
        sig = _bcast(sigma, y)
        x = y / (1 + sig)
        t = (sigma.double() / (1 + sigma.double())).float()

        def finish(v):
            s = score_from_velocity(y, sigma, v)
            return s if q.kind == "score" else -sig * s
        return x, T_SCALE * t, finish

    def _forward(self, inp, cond):
        return self.net(inp, cond)

    def velocity(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """v_θ(x, t) itself (no conversion; t = 1 allowed)."""
        with torch.no_grad():
            return self.net(x, torch.full((len(x),), T_SCALE * float(t), device=x.device))


def model_velocity(sm: ScoreModel, x: torch.Tensor, t: float) -> torch.Tensor:
    """The velocity any ScoreModel implies at (x, t), 0 ≤ t < 1 (a velocity model answers natively)."""
    if isinstance(sm, VelocityScoreModel):
        return sm.velocity(x, t)
    sigma = sigma_of_t(float(t))
    y = x / (1 - t)
    return velocity_from_score(y, sigma, sm.score(y, sigma))


# ------------------------------------------------------------------ couplings
def coupling_cost(x0: torch.Tensor, z: torch.Tensor) -> float:
    """The mean squared distance E‖z − x₀‖² of a coupled minibatch."""
    return float(((z - x0) ** 2).reshape(len(x0), -1).sum(1).mean())


def ot_pair(x0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """z reordered so that (x₀[i], z[i]) is the exact optimal transport plan between the two equal-size
    minibatches (uniform weights) for the squared Euclidean cost: a permutation, found by
    scipy.optimize.linear_sum_assignment (POT's ot.emd gives the same plan on equal-size batches)."""
    from scipy.optimize import linear_sum_assignment
    if len(x0) != len(z):
        raise ValueError(f"minibatch OT pairs equal-size batches, got {len(x0)} and {len(z)}")
    a, b = x0.reshape(len(x0), -1).double(), z.reshape(len(z), -1).double()
    cost = torch.cdist(a, b) ** 2
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    perm = np.empty(len(x0), dtype=np.int64)
    perm[rows] = cols
    return z[torch.from_numpy(perm).to(z.device)]


# ------------------------------------------------------------------ straightness
def straightness(path_x: torch.Tensor, path_t: list[float], velocities: torch.Tensor) -> torch.Tensor:
    """Liu et al.'s straightness along ODE paths, per path: (1/T)∫₀ᵀ ‖(x_T − x_0)/T − v(x_t, t)‖² dt with
    T the path's start time (1, or T_MAX), by the rectangle rule on the solver's grid: path_x (K+1, N, d)
    the states at path_t[0] = T > … > path_t[K] = 0, velocities (K, N, d) the velocity at each step's start.
    0 for a straight path traversed at constant speed."""
    T = path_t[0]
    chord = (path_x[0] - path_x[-1]) / T
    total = torch.zeros(path_x.shape[1], dtype=torch.float64)
    for k in range(len(path_t) - 1):
        dt = path_t[k] - path_t[k + 1]
        total += dt * ((chord - velocities[k]) ** 2).reshape(path_x.shape[1], -1).sum(1).double()
    return total / T
