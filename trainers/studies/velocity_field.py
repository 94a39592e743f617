"""The velocity field of the linear path at flow time t, as the Score-field tab draws it (issue #21): the
exact velocity v(x, t) = E[z − x₀ | x_t = x] of the density (trainers.flows.exact_velocity) and the
velocity a trained model implies (a flow-matching network's own, or any score model's through
v = −(x + t ∇log p_t)/(1 − t)), on an n × n grid of arrow origins, and the error map ‖v_θ − v‖.
Plain torch and numpy, no Qt. Grid conventions as trainers.studies.score_field.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import fitting, grid
from ..flows import T_MAX, exact_velocity, flow_marginal, model_velocity


@dataclass
class VelocityField:
    """Both velocity fields at flow time t on the arrow grid."""
    t: float
    points: np.ndarray               # (n², 2) arrow origins
    true: np.ndarray                 # (n², 2) the exact v(x, t)
    learned: np.ndarray | None       # (n², 2) the model's; None without a model
    cell: float                      # arrow grid spacing
    target: object                   # p_t (a GaussianMixture: contours, heat)

    @property
    def mean_squared_error(self) -> float | None:
        """Mean ‖v_θ − v‖² over the grid (None without a model)."""
        if self.learned is None:
            return None
        return float(np.mean(np.sum((self.learned - self.true) ** 2, 1)))


def model_t_range(cfg: fitting.ToyConfig) -> tuple[float, float]:
    """The flow times at which a model trained with cfg has a velocity: [0, 1] for a flow-matching model,
    [0, T_MAX] for a score model (t = 1 is σ = ∞)."""
    return (0.0, 1.0) if fitting.method_for(cfg).natural_sampler == "flow" else (0.0, T_MAX)


def learned_velocity(model, cfg: fitting.ToyConfig, density, t: float):
    """x ↦ the velocity the network trained with cfg implies at flow time t (through its ScoreModel)."""
    lo, hi = model_t_range(cfg)
    if not lo <= t <= hi:
        raise ValueError(f"this model has a velocity for t in [{lo:g}, {hi:g}], not at t = {t:g}")
    sm = fitting.score_model(model, cfg, density)
    return lambda x: model_velocity(sm, x, float(t))


def velocity_field(model, cfg: fitting.ToyConfig, density, t: float, bounds, n: int) -> VelocityField:
    """The exact and (with a model trained with cfg) the learned velocity at t on an n × n grid over bounds."""
    pts = grid.grid_points(bounds, n)
    true = grid.field_on_grid(lambda x: exact_velocity(density, x.double(), t), pts)
    learned = None if model is None else grid.field_on_grid(learned_velocity(model, cfg, density, t), pts)
    return VelocityField(t=float(t), points=pts.numpy().astype(np.float64), true=true, learned=learned,
                         cell=(bounds[1] - bounds[0]) / n, target=flow_marginal(density, t))


def velocity_error_map(model, cfg: fitting.ToyConfig, density, t: float, bounds, n: int,
                       weighted: bool = False) -> np.ndarray:
    """‖v_θ − v‖ on an n × n grid (row 0 = ymin); weighted: times p_t(x)/max p_t."""
    fine = grid.grid_points(bounds, n)
    err = np.linalg.norm(grid.field_on_grid(learned_velocity(model, cfg, density, t), fine)
                         - grid.field_on_grid(lambda x: exact_velocity(density, x.double(), t), fine),
                         axis=1).reshape(n, n)
    if weighted:
        p = grid.density_image(flow_marginal(density, t), bounds, n)
        err = err * p / p.max()
    return err


def flow_lines(sm, z: torch.Tensor, nfe: int = 50) -> np.ndarray:
    """Paths of the flow ODE of score model `sm` from standard draws z: (nfe + 1, N, 2) states, t = T → 0
    (straight lines after reflow or with OT coupling)."""
    from .reflow import flow_paths
    return flow_paths(sm, z, nfe)[0].double().numpy()
