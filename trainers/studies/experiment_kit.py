"""What the experiment files (trainers/studies/*_experiments.py) measure with: trained models cached per
process and configuration, a seeded start, and the reference sample with its exact-sample null behind
"reaches the density" (the rule in trainers/studies/experiments.py's docstring)."""
from __future__ import annotations

import json
import time
from typing import Callable

import torch

from ..densities import GaussianMixture, preset
from ..fitting import ToyConfig, build_network, initial_for, train
from ..metrics import energy_distance, mean_pairwise_distance

Progress = Callable[[float, str], None]

_MODELS: dict = {}


def clear_cache() -> None:
    """Forget trained models (runs train their models once per process and configuration)."""
    _MODELS.clear()


def _train(cfg: ToyConfig, density: GaussianMixture, progress: Progress | None = None, lo=0.0, hi=1.0,
           label: str = "training"):
    """(model, losses, seconds) for cfg on density, trained once per process and configuration."""
    key = (json.dumps(cfg.to_dict(), sort_keys=True), json.dumps(density.to_dict(), sort_keys=True))
    if key not in _MODELS:
        start = time.perf_counter()
        every = max(1, cfg.steps // 20)

        def step(info):
            if progress and info.step % every == 0:
                progress(lo + (hi - lo) * info.step / cfg.steps, f"{label}: step {info.step}/{cfg.steps}")
        model, losses = train(cfg, density, step)
        _MODELS[key] = (model, losses, time.perf_counter() - start)
    return _MODELS[key]


def _net(cfg: ToyConfig, density: GaussianMixture, control: bool, progress: Progress, lo=0.0, hi=1.0,
         label: str = "training"):
    """cfg's trained network, or with control its untrained initial network (same seed, no step taken)."""
    if control:
        model = build_network(cfg)
        return model.eval()
    return _train(cfg, density, progress, lo, hi, label)[0]


def _density(name: str) -> GaussianMixture:
    return preset(name)


def _start(sampler, n: int, seed: int, init: str = "gaussian", bounds=None) -> tuple[torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    return initial_for(sampler, n, init, bounds, g), g


def _sample(sampler, n: int, seed: int, init: str = "gaussian", bounds=None) -> torch.Tensor:
    x0, g = _start(sampler, n, seed, init, bounds)
    return sampler.run(x0, g).x


class _Reference:
    """A reference sample of the density and the null distribution of the energy distance: `reps`
    independent exact samples of size n against the same reference (median and 95th percentile)."""

    def __init__(self, density: GaussianMixture, n: int, seed: int, reps: int):
        self.ref = density.sample(n, torch.Generator().manual_seed(seed + 2))
        self.ref_self = mean_pairwise_distance(self.ref)
        g = torch.Generator().manual_seed(seed + 7919)
        null = torch.tensor([self.ed(density.sample(n, g)) for _ in range(reps)], dtype=torch.float64)
        self.median, self.q95 = float(null.median()), float(torch.quantile(null, 0.95))
        # the yardstick: a sample of the moment-matched Gaussian N(m, Σ), which knows only two moments
        chol = torch.linalg.cholesky(density.covariance().double())
        gauss = density.mean().double() + torch.randn(n, chol.shape[0], generator=g, dtype=torch.float64) @ chol.T
        self.gaussian_excess = self.ed(gauss.float()) - self.median

    def base(self) -> dict:
        """The seed's yardsticks: the moment-matched Gaussian's excess, exact samples' 95th percentile excess."""
        return {"gaussian_excess": self.gaussian_excess, "exact_excess_q95": self.q95 - self.median}

    def ed(self, x: torch.Tensor) -> float:
        x = x.detach().float()
        if not torch.isfinite(x).all():
            return float("inf")
        return energy_distance(x, self.ref, self.ref_self)

    def figures(self, tag: str, sampler, n: int, seed: int, init="gaussian", bounds=None) -> dict:
        """Run sampler from its start: {tag_excess: ED − exact median, tag_start: the start's ED − median}."""
        x0, g = _start(sampler, n, seed, init, bounds)
        x = sampler.run(x0, g).x
        return {f"{tag}_excess": self.ed(x) - self.median, f"{tag}_start": self.ed(x0) - self.median}


def _reached(S: "Stats", tag: str, share: float) -> bool:
    """mean excess + t·SE < share × the moment-matched Gaussian's mean excess."""
    return S.hi(f"{tag}_excess") < share * S.mean("gaussian_excess")


_REACH = ("reach_share × the moment-matched Gaussian N(m, Σ)'s excess (excess = energy distance to a reference "
          "sample − the median of exact samples' of the same size)")
