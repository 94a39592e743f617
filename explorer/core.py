"""Wiring from the explorer's settings to `trainers/` objects. No maths here: this module only
chooses which trainers function serves which view (which noise level a field is compared at, which
score adapter drives which sampler) and says so in a label the view shows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from trainers import densities as D
from trainers import metrics as M
from trainers import nets
from trainers import objectives as O
from trainers import samplers as S
from trainers import schedules as SCH

from .state import SamplerSettings, TrainSettings

OBJECTIVE_LABELS = {k: v.label for k, v in O.OBJECTIVES.items()}


def sigmas_of(s: TrainSettings) -> torch.Tensor:
    return SCH.geometric_sigmas(s.sigma_max, s.sigma_min, s.n_levels)


def schedule_of(s: TrainSettings) -> SCH.DDPMSchedule:
    return SCH.DDPMSchedule.from_name(s.schedule, s.n_timesteps)


def build_model(s: TrainSettings) -> torch.nn.Module:
    return nets.build_model(s.model, s.cond, s.width, s.depth, s.n_timesteps)


def build_objective(s: TrainSettings):
    params = {"dsm": {"sigma": s.sigma}, "ncsn": {"sigmas": sigmas_of(s)},
              "ddpm": {"schedule": schedule_of(s)}}.get(s.objective, {})
    return O.make_objective(s.objective, **params)


@dataclass
class StepInfo:
    step: int
    loss: float


def training_session(s: TrainSettings, density: D.GaussianMixture, init_state: dict | None = None):
    """(model, iterator of StepInfo): one Adam step per next(). Uses trainers.fitting when present."""
    model = build_model(s)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.train()
    objective = build_objective(s)
    gen = torch.Generator().manual_seed(s.seed)

    def sample_batch(n):
        return density.sample(n, generator=gen)

    try:
        from trainers import fitting
    except ImportError:
        fitting = None
    if fitting is not None and hasattr(fitting, "training_steps"):
        return model, fitting.training_steps(model, objective, sample_batch, lr=s.lr, batch=s.batch, seed=s.seed)

    def loop():
        opt = torch.optim.Adam(model.parameters(), lr=s.lr)
        k = 0
        while True:
            k += 1
            loss = objective(model, sample_batch(s.batch), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            yield StepInfo(k, float(loss.detach()))
    return model, loop()


# ------------------------------------------------------------------ levels shown by the score view
@dataclass
class Level:
    label: str
    sigma: float | None = None   # compare with p_σ (None and t None: the data density itself)
    t: int | None = None         # compare with the DDPM marginal q(x_t)


def levels_for(s: TrainSettings) -> list[Level]:
    """The noise levels a model trained with settings s has a score for."""
    if s.objective == "ncsn":
        sig = sigmas_of(s)
        # least noisy first, so the slider's left end is the data and its right end the prior
        return [Level(f"σ{i + 1} = {float(sig[i]):.3g}", sigma=float(sig[i])) for i in reversed(range(len(sig)))]
    if s.objective == "ddpm":
        sch = schedule_of(s)
        return [Level(f"t = {t + 1}/{sch.T}  (√(1−ᾱ) = {float(sch.sqrt_one_minus_alpha_bars[t]):.3g})", t=t)
                for t in range(sch.T)]
    if s.objective == "dsm":
        return [Level(f"σ = {s.sigma:.3g} (DSM fits p_σ)", sigma=s.sigma)]
    return [Level("σ = 0 (the data density)")]


def target_density(density: D.GaussianMixture, s: TrainSettings, level: Level) -> D.GaussianMixture:
    if level.t is not None:
        return density.ddpm_marginal(float(schedule_of(s).alpha_bars[level.t]))
    if level.sigma is not None:
        return density.noised(level.sigma)
    return density


def learned_score_fn(model, s: TrainSettings, level: Level) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> s_θ(x) at the level, as a score (a DDPM model's ε is converted by eps_to_score)."""
    if s.cond == "sigma":
        return lambda x: model(x, torch.full((len(x),), float(level.sigma)))
    if s.cond == "time":
        sch = schedule_of(s)

        def fn(x):
            t = torch.full((len(x),), int(level.t), dtype=torch.long)
            return sch.eps_to_score(model(x, t), t)
        return fn
    return lambda x: model(x)


def fisher_metric(s: TrainSettings, density: D.GaussianMixture, n_eval: int = 1024):
    """fn(model) -> (Fisher divergence at the least-noisy level the model knows, label)."""
    lev = levels_for(s)[0]
    target = target_density(density, s, lev)
    x = target.sample(n_eval, generator=torch.Generator().manual_seed(12345))

    def fn(model, _x=None):
        return M.fisher_divergence(learned_score_fn(model, s, lev), target, x), lev.label
    return fn


# ------------------------------------------------------------------ samplers
@dataclass
class ChainSpec:
    sampler: S.Sampler
    title: str
    note: str = ""            # why the exact score stands in for the model, if it does


def make_samplers(ss: SamplerSettings, model, ms: TrainSettings | None, density: D.GaussianMixture) -> list[ChainSpec]:
    """Langevin, annealed Langevin and DDPM, each with the model's score where the model has one for
    that sampler, else the exact score (and a note saying so)."""
    use_model = ss.source == "model" and model is not None and ms is not None
    cond = ms.cond if use_model else None
    out = []

    # --- Langevin on p (or the least-noisy level the model knows)
    note = ""
    if use_model and cond is None:
        fn, src = S.model_score_fn(model), "model"
    elif use_model and cond == "sigma":
        lev = levels_for(ms)[0]
        fn, src = learned_score_fn(model, ms, lev), f"model at σ_L = {lev.sigma:.3g}"
    elif use_model and cond == "time":
        lev = Level("t=1", t=0)
        fn, src = learned_score_fn(model, ms, lev), "model at t = 1"
    else:
        fn, src = S.exact_score_fn(density), "exact score"
        note = "no trained model" if ss.source == "model" and model is None else ""
    out.append(ChainSpec(S.LangevinSampler(fn, ss.langevin_eps, ss.langevin_steps),
                         f"Langevin — {src}", note))

    # --- annealed Langevin
    note = ""
    if use_model and cond == "sigma":
        sig = sigmas_of(ms)
        fn, src = S.model_sigma_score_fn(model), "model"
    else:
        sig = SCH.geometric_sigmas(ss.sigma_max, ss.sigma_min, ss.n_levels)
        if use_model and cond is None:
            fn, src = (lambda x, _s: model(x)), "model (ignores σ)"
            note = "the model has one σ: every level uses the same field"
        else:
            fn, src = S.exact_sigma_score_fn(density), "exact score of p_σ"
            if use_model:
                note = "model is t-conditioned: exact score shown"
    out.append(ChainSpec(S.AnnealedLangevinSampler(fn, sig, ss.annealed_eps, ss.steps_per_level, ss.final_denoise),
                         f"Annealed Langevin — {src}", note))

    # --- DDPM
    note = ""
    if use_model and cond == "time":
        sch = schedule_of(ms)
        fn, src = S.model_eps_fn(model), "model"
    else:
        sch = SCH.DDPMSchedule.from_name(ms.schedule if ms else "linear", ms.n_timesteps if ms else 200)
        fn, src = S.exact_eps_fn(density, sch), "exact ε of q(x_t)"
        if use_model:
            note = "model is not t-conditioned: exact ε shown"
    out.append(ChainSpec(S.DDPMSampler(fn, sch, ss.ddpm_variance), f"DDPM — {src}", note))
    return out
