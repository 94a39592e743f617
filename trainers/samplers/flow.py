"""The flow ODE of the linear path, dx/dt = v(x, t) from t = T to 0 (flow matching, rectified flow;
docs/math.md, "Flow matching and rectified flow"), Euler, Heun or midpoint."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..flows import sigma_of_t, t_of_sigma, velocity_from_score
from ..score_models import Query, ScoreModel
from .base import StepOutput
from .levels import nfe_option, sigma_max_option, steps_option
from .ode import ODESampler, solver_option
from .registry import register_sampler

SOLVERS = ("euler", "heun", "midpoint")


@register_sampler
class FlowSampler(ODESampler):
    """The flow ODE dx/dt = v(x, t) on x_t = (1 − t) x₀ + t z, over a uniform grid t₀ = T > … > t_n = 0,
    T = σ_max/(1 + σ_max) (a flow-matching model and its exact score: `flow_t_max` = 0.999, unless σ_max
    is given). Driven by any ScoreModel: it asks for
    s(y, σ) at y = x/(1 − t), σ = t/(1 − t) and uses v = −y − σ(1 + σ) s (trainers.flows), so the exact
    score gives the exact velocity. "euler": x ← x + (t' − t) v(x, t). "heun": an Euler trial, then the
    average of both slopes, except on the step to t' = 0, which is Euler (2 NFE per step, 1 on the
    last). "midpoint": x ← x + (t' − t) v(x + (t' − t)/2 · v(x, t), (t + t')/2) (2 NFE per step).
    The state is x_t itself (space "flow": x = (1 − t) y), so its paths are the flow's."""
    name = "flow"
    title = "Flow ODE"
    space = "flow"
    convention = "dx/dt = v(x, t), t: 1 → 0, v = −y − σ(1+σ) s(y, σ)  (Euler / Heun / midpoint)"
    description = "Flow ODE of the linear path: deterministic, straight where the flow is"
    hint = "The flow ODE's steps are too coarse for this model: use more steps (or Heun)."
    solvers = SOLVERS
    ode = "flow ODE"

    @dataclass
    class Options:
        steps: int = steps_option(50, "Steps", "Number of steps of the uniform t grid from T down to t = 0.", gui=50)
        nfe: int | None = nfe_option()
        sigma_max: float | None = sigma_max_option()
        solver: str = solver_option(SOLVERS, "Flow ODE solver: Euler, Heun (Euler trial, "
                                    "then the average slope; the step to t = 0 is Euler) or midpoint.")

    @classmethod
    def from_options(cls, model, o):
        own = getattr(model, "flow_t_max", None)       # a flow-matching model's (and its exact score's): T_MAX
        t_max = t_of_sigma(o.sigma_max) if o.sigma_max is not None else own or t_of_sigma(model.sigma_max)
        return cls(model, torch.linspace(t_max, 0.0, cls.steps_from(o) + 1, dtype=torch.float64), o.solver)

    def __init__(self, model: ScoreModel, ts, solver: str = "heun"):
        self.set_solver(solver)
        self.ts = torch.as_tensor(ts, dtype=torch.float64).flatten()
        if len(self.ts) < 2 or not bool((self.ts[:-1] > self.ts[1:]).all()) or not (0 <= float(self.ts[-1])) \
                or not float(self.ts[0]) < 1:
            raise ValueError("the flow ODE needs a decreasing grid of at least two t in [0, 1)")
        self.model, self.n_steps = model, len(self.ts) - 1
        self._tf = self.ts.tolist()

    @property
    def prior_std(self):
        return self._tf[0]

    def _query_ts(self) -> list[float]:
        ts = [t for t in self._tf[:-1]]
        if self.solver == "heun":
            ts += [t for t in self._tf[1:] if t > 0]
        elif self.solver == "midpoint":
            ts += [(a + b) / 2 for a, b in zip(self._tf[:-1], self._tf[1:])]
        return ts

    @property
    def nfe(self):
        return len(self._query_ts())

    def sigmas_used(self):
        return torch.tensor(sorted({sigma_of_t(t) for t in self._query_ts()}, reverse=True), dtype=torch.float32)

    def step_sigma(self, k):
        return sigma_of_t(self._tf[k])

    def label(self, k):
        return f"t {self._tf[k]:.3g} → {self._tf[k + 1]:.3g} (step {k + 1}/{self.n_steps})"

    @staticmethod
    def _velocity(x, t):
        """(query, convert): the score query at (x, t) and score ↦ v(x, t)."""
        sigma = sigma_of_t(t)
        y = x / (1 - t)
        return Query.score(y, sigma), lambda s: velocity_from_score(y, sigma, s)

    def plan(self, x, k, generator=None):
        t0, t1 = self._tf[k], self._tf[k + 1]
        h = t1 - t0
        q, conv = self._velocity(x, t0)
        v0 = conv((yield q))
        if self.solver == "heun" and t1 > 0:
            q, conv = self._velocity(x + h * v0, t1)
            x_new = x + h * 0.5 * (v0 + conv((yield q)))
        elif self.solver == "midpoint":
            q, conv = self._velocity(x + 0.5 * h * v0, t0 + 0.5 * h)
            x_new = x + h * conv((yield q))
        else:
            x_new = x + h * v0
        self.check(x_new, k)
        return StepOutput(x_new, x - t0 * v0, self.label(k))
