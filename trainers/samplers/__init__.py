"""Samplers with a per-step API, all driven by one `ScoreModel` (trainers.score_models), so every
sampler works with every model: an NCSN σ-model, a DDPM ε-model, a single-level model or the exact
score. One file per sampler, each a registered class carrying its own options (docs/math.md §3, §4, §8;
each class's docstring states its convention):

- langevin.py   x ← x + ε s(x, σ) + √(2ε) z                           ("ε convention"; σ = model.sigma_min)
- annealed.py   αᵢ = ε σᵢ²/σ_L²;  y ← y + (αᵢ/2) s(y, σᵢ) + √αᵢ z       (Song & Ermon 2019, Alg. 1, "α convention")
- ddpm.py       x_{t'} = (x_t − β/√(1−ᾱ_t) ε)/√(1−β) + σ z, β = 1 − ᾱ_t/ᾱ_{t'}   (Ho et al. 2020, Alg. 2;
                on a subsequence of timesteps it is the respaced chain of Nichol & Dhariwal 2021)
- ddim.py       x_{t'} = √ᾱ_{t'} x̂₀ + √(1−ᾱ_{t'}−σ_η²) ε + σ_η z         (Song, Meng & Ermon 2021)
- pf_ode.py     dy/dσ = −σ s(y, σ), Euler or Heun on a σ grid ending at 0 (Song et al. 2021; Karras et al. 2022, Alg. 1)
- pc.py         reverse-diffusion predictor + M Langevin corrector steps at signal-to-noise ratio r
                (Song et al. 2021, Alg. 2, VE)
- dpmpp_2m.py, dpmpp_3m.py   DPM-Solver++ 2M / 3M: multistep in log-SNR with the data prediction (Lu et al. 2022)
- unipc.py      UniPC bh2: predictor UniP and the corrector UniC that reuses the next evaluation (Zhao et al. 2023)
- edm.py        Karras et al. 2022, Alg. 2: churn (S_churn, S_tmin, S_tmax, S_noise), then a Heun step
- euler_ancestral.py  Euler ancestral (k-diffusion's sample_euler_ancestral)   (fast solvers: multistep.py, §13)
- flow.py       the flow ODE of the linear path dx/dt = v(x, t), Euler / Heun / midpoint (flow matching)

"ddpm" and "ddim" move x in VP coordinates (timesteps.py); the others move y in VE coordinates (y = x/√ᾱ).

The rest: base.py (Sampler, its one stepping loop `run`, DivergenceError, Cancelled), registry.py
(`@register_sampler`, SAMPLERS, SamplerOptions, build_sampler, the command-line flags), levels.py (the
σ range, VP schedule and step count several samplers derive from their options), starts.py (where a
chain starts), chains.py (several chains on one model, batched). Every sampler has `n_steps`, `nfe`,
`prior_std`, `sigmas_used()`, `label(k)`, `step(x, k, generator)` and `run()`.
"""
from .base import BLOWUP_NORM, Cancelled, DivergenceError, SampleResult, Sampler, StepOutput
from .chains import ChainState, advance_together
from .levels import vp_schedule
from .registry import (SAMPLERS, SamplerOptions, add_sampler_arguments, build_sampler, option_names,
                       options_from_args, register_sampler, resolve_options, sampler_class, sampler_schemas)
from .starts import exact_prior_sample, initial_particles, prior_sample, start_from, start_level
# every sampler module registers its class on import, in this order (the CLI's and the GUI's order)
from .langevin import LangevinSampler
from .annealed import AnnealedLangevinSampler
from .ddpm import DDPMSampler
from .ddim import DDIMSampler
from .pf_ode import PFODESampler
from .pc import PCSampler
from .timesteps import TimestepSampler

__all__ = ["BLOWUP_NORM", "Cancelled", "DivergenceError", "SampleResult", "Sampler", "StepOutput", "ChainState",
           "advance_together", "vp_schedule", "SAMPLERS", "SamplerOptions", "add_sampler_arguments",
           "build_sampler", "option_names", "options_from_args", "register_sampler", "resolve_options",
           "sampler_class", "sampler_schemas", "exact_prior_sample", "initial_particles", "prior_sample", "start_from",
           "start_level", "LangevinSampler", "AnnealedLangevinSampler", "DDPMSampler", "DDIMSampler",
           "PFODESampler", "PCSampler", "TimestepSampler"]

# ... then every other module of this folder, by name: a new sampler file registers itself with no edit here
import importlib as _importlib
import pkgutil as _pkgutil

for _module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    _importlib.import_module(f"{__name__}.{_module}")
