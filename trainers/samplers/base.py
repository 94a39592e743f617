"""The sampler base class and its one stepping loop (`Sampler.run`).

A step is written as a generator (`plan`) that yields the score evaluations it needs (`Query`) and
returns a `StepOutput`; `step()` answers them with the sampler's model (chains.advance_together
answers the queries of several chains on one model with one batched forward pass). A chain whose
particles become NaN/inf or blow up raises `DivergenceError` naming the step and a smaller step.

A sampler class describes itself (registry key `name`, display `title`, `space` "ve" or "vp", the
update `convention`, a `description`, its start `default_init`), carries its settings as a nested
`Options` dataclass made with trainers.schema.option, and builds itself from them (`from_options`);
trainers.samplers.registry collects the classes (`@register_sampler`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generator

import torch

from ..score_models import Query, ScoreModel

# A particle whose norm passes this is called diverged (the data live within |x| ≲ 10² here).
BLOWUP_NORM = 1e6


class DivergenceError(RuntimeError):
    def __init__(self, step: int, sampler: str, hint: str):
        self.step = step
        super().__init__(f"{sampler} diverged at step {step}: particles became NaN/infinite or exploded. {hint}")


class Cancelled(RuntimeError):
    """`Sampler.run`'s `cancelled()` said yes before step `step` (0-based; that many steps were done)."""

    def __init__(self, step: int, n_steps: int, sampler: str):
        self.step, self.n_steps = step, n_steps
        super().__init__(f"{sampler} cancelled before step {step + 1}/{n_steps}")


@dataclass
class StepOutput:
    x: torch.Tensor
    denoised: torch.Tensor | None = None   # the sampler's estimate of the clean sample, where it has one
    label: str = ""


@dataclass
class SampleResult:
    x: torch.Tensor
    frames: torch.Tensor | None            # (F, N, ...) recorded states, frame 0 is the initial state
    frame_steps: list[int]                 # number of steps taken before each frame


def noise(x: torch.Tensor, generator) -> torch.Tensor:
    """z ~ N(0, I) shaped like x, from `generator` (every sampler draws its noise here)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


StepPlan = Generator[Query, torch.Tensor, StepOutput]


class Sampler:
    """Base class. A subclass sets the class attributes below, an `Options` dataclass and
    `from_options`, and writes `plan` (one step) and `sigmas_used`."""
    name: ClassVar[str] = "sampler"          # registry key ("ddim")
    title = "Sampler"                        # display name ("DDIM"; an instance may refine it)
    space: ClassVar[str] = "ve"              # "ve" (moves y), "vp" (moves x_t = √ᾱ y) or "flow" (x_t = (1−t) y)
    convention: ClassVar[str] = ""           # the update, in one line
    description: ClassVar[str] = ""
    default_init: ClassVar[str] = "gaussian"  # the start: "gaussian" (the prior) or "uniform" (over a box)
    Options: ClassVar[type]                  # the settings, a trainers.schema dataclass
    params: ClassVar[tuple[str, ...]] = ()   # its field names (set by @register_sampler)
    hint = "Try a smaller step size."
    n_steps: int
    model: ScoreModel

    # -- the class's own rules
    @classmethod
    def from_options(cls, model: ScoreModel, options) -> "Sampler":
        """The sampler with settings `options` (an instance of cls.Options), driven by `model`."""
        raise NotImplementedError

    @classmethod
    def deterministic(cls, options) -> bool:
        """Does a chain with these settings (cls.Options) draw no noise (a flow: flow lines)?"""
        return False

    @classmethod
    def title_for(cls, options) -> str:
        """The display name of a chain with these settings (cls.Options), e.g. "DDIM η=0"."""
        return cls.title

    # -- an instance
    @property
    def nfe(self) -> int:
        """Network evaluations for the whole chain (one per step unless a sampler says otherwise)."""
        return self.n_steps

    @property
    def prior_std(self) -> float:
        return 1.0

    def sigmas_used(self) -> torch.Tensor:
        """The VE noise levels at which this sampler asks the model for a score."""
        raise NotImplementedError

    def step_sigma(self, k: int) -> float | None:
        """The VE noise level step k starts from, where the sampler has one."""
        return None

    def plan(self, x: torch.Tensor, k: int, generator=None) -> StepPlan:
        raise NotImplementedError

    def label(self, k: int) -> str:
        return f"step {k + 1}/{self.n_steps}"

    # How often `check` reads its verdict back from the device: every step (1, the default; free on
    # the CPU) or every k steps and at the last step, the first failing step kept on the device in
    # between (image sampling on a GPU: trainers.image.methods.generate), so a step makes no sync.
    check_every: int = 1
    _first_bad: torch.Tensor | None = None   # check_every > 1: the first failing step so far (−1: none), on the device

    def check(self, x: torch.Tensor, k: int) -> None:
        """Raise DivergenceError naming the first step whose particles are NaN/inf or beyond
        BLOWUP_NORM: at that step when check_every = 1, else at the next read (still naming it)."""
        bad = (x.abs() <= BLOWUP_NORM).logical_not_().any()        # NaN compares false: caught too
        if self.check_every <= 1:
            if bad:
                raise DivergenceError(k, self.title, self.hint)
            return
        first = self._first_bad
        if k == 0 or first is None or first.device != x.device:
            first = torch.full((), -1, dtype=torch.long, device=x.device)
        self._first_bad = first = torch.where(bad & (first < 0), k, first)
        if (k + 1) % self.check_every == 0 or k + 1 >= self.n_steps:
            step = int(first)
            if step >= 0:
                raise DivergenceError(step, self.title, self.hint)

    @torch.no_grad()
    def step(self, x: torch.Tensor, k: int, generator=None) -> StepOutput:
        """Step k ∈ [0, n_steps) of the chain, answering the plan's queries with self.model."""
        plan = self.plan(x, k, generator)
        try:
            query = next(plan)
            while True:
                query = plan.send(self.model.evaluate([query])[0])
        except StopIteration as done:
            return done.value

    @torch.no_grad()
    def run(self, x: torch.Tensor, generator=None, record_every: int = 0,
            progress: Callable[[dict[str, Any]], None] | None = None,
            cancelled: Callable[[], bool] | None = None,
            step_context: Callable[[], contextlib.AbstractContextManager] | None = None) -> SampleResult:
        """All n_steps steps from x: the one stepping loop.

        record_every = k > 0 keeps every k-th state (and the last) in `frames`, frame 0 being x.
        `cancelled()` is asked before each step; when it says yes, `Cancelled` is raised naming the
        step. `progress(info)` is called after each step with info = {"x": the state, "k": steps done,
        "n_steps", "sigma": the VE level the step started from (or None), "denoised": the step's
        estimate of the clean sample (or None), "label": the step's label} (as k-diffusion's callback).
        `step_context()`, if given, is entered around each step (e.g. a profiler's probe)."""
        frames, frame_steps = ([x.clone()], [0]) if record_every else (None, [])
        for k in range(self.n_steps):
            if cancelled is not None and cancelled():
                raise Cancelled(k, self.n_steps, self.title)
            if step_context is None:
                out = self.step(x, k, generator)
            else:
                with step_context():
                    out = self.step(x, k, generator)
            x = out.x
            if record_every and ((k + 1) % record_every == 0 or k + 1 == self.n_steps):
                frames.append(x.clone())
                frame_steps.append(k + 1)
            if progress is not None:
                progress({"x": x, "k": k + 1, "n_steps": self.n_steps, "sigma": self.step_sigma(k),
                          "denoised": out.denoised, "label": out.label})
        return SampleResult(x, torch.stack(frames) if frames else None, frame_steps)
