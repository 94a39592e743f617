"""What the two ODE samplers (pf_ode.py, flow.py) share: a deterministic chain stepped by a solver chosen
by name (Euler, Heun or midpoint), shown in the title, and the steps an NFE budget buys with it."""
from __future__ import annotations

from ..schema import option
from .base import Sampler
from .levels import step_count

SOLVER_LABELS = {"euler": "Euler", "heun": "Heun (2 NFE/step)", "midpoint": "midpoint (2 NFE/step)"}
# steps bought by an NFE budget: Heun's and midpoint's steps cost 2 evaluations (Heun's last step, to 0, 1)
STEPS_FOR_NFE = {"euler": lambda nfe: nfe, "heun": lambda nfe: (nfe + 1) // 2, "midpoint": lambda nfe: nfe // 2}


def solver_option(solvers: tuple[str, ...], tip: str):
    """The "solver" field: one of `solvers` (default Heun)."""
    return option("heun", "Solver", tip, choices=[(s, SOLVER_LABELS[s]) for s in solvers])


class ODESampler(Sampler):
    """A deterministic sampler that integrates an ODE with the solver `solver`, one of `solvers`."""
    solvers: tuple[str, ...] = ()
    ode = "ODE"                 # its name in the unknown-solver message

    @classmethod
    def deterministic(cls, o):
        return True

    @classmethod
    def title_for(cls, o):
        return f"{cls.title} ({o.solver})"

    @staticmethod
    def steps_from(o) -> int:
        """The steps of options `o`: o.steps, or those o.nfe buys with o.solver."""
        return step_count(o, STEPS_FOR_NFE[o.solver])

    def set_solver(self, solver: str) -> None:
        """Check `solver` (a clear ValueError) and show it in the title."""
        if solver not in self.solvers:
            raise ValueError(f"unknown {self.ode} solver {solver!r}; choose one of {', '.join(self.solvers)}")
        self.solver = solver
        self.title = f"{type(self).title} ({solver})"
