"""Wiring from the explorer's settings to `trainers/` objects. No maths here: this module only
chooses which trainers function serves which view (which noise level a field is compared at, which
score drives which sampler) and says so in a label the view shows. Models, losses, training steps,
score-at-a-level and target densities all come from `trainers.fitting`, as for the 2D CLI."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from trainers import densities as D
from trainers import fitting as F
from trainers import metrics as M
from trainers import nets
from trainers import objectives as O
from trainers import samplers as S
from trainers import schedules as SCH

from .state import SamplerSettings, TrainSettings

OBJECTIVE_LABELS = {k: v.label for k, v in O.OBJECTIVES.items()}


def config_of(s: TrainSettings) -> F.ToyConfig:
    """The CLI's config for these settings (σ₁ is explicit in the GUI, never 'automatic')."""
    return F.ToyConfig.from_dict(asdict(s))


def sigmas_of(s: TrainSettings) -> torch.Tensor:
    return SCH.geometric_sigmas(max(s.sigma_max, s.sigma_min * 1.0001), s.sigma_min, s.n_levels)


def schedule_of(s: TrainSettings) -> SCH.DDPMSchedule:
    return F.ddpm_schedule(config_of(s))


def build_model(s: TrainSettings) -> torch.nn.Module:
    """An untrained network of the right shape (to load weight snapshots into)."""
    cfg = config_of(s)
    return nets.build_model(cfg.model, cfg.cond, cfg.width, cfg.depth, cfg.n_timesteps)


def training_session(s: TrainSettings, density: D.GaussianMixture, init_state: dict | None = None):
    """(model, iterator of fitting.StepInfo): one Adam step per next(), exactly as the 2D CLI trains."""
    cfg = config_of(s)
    model, objective = F.build_model_and_objective(cfg, density, sigmas=sigmas_of(s))
    if init_state is not None:
        model.load_state_dict(init_state)
    data_gen = torch.Generator().manual_seed(s.seed + 1)
    steps = F.training_steps(model, objective, lambda n: density.sample(n, data_gen), lr=s.lr, batch=s.batch,
                             seed=s.seed)
    return model, steps


# ------------------------------------------------------------------ levels shown by the score view
@dataclass
class Level:
    label: str
    sigma: float | None = None   # compare with p_σ (None and t None: the data density itself)
    t: int | None = None         # compare with the DDPM marginal q(x_t)

    @property
    def value(self) -> float:
        """The `level` argument of fitting.model_score_at / target_density_at."""
        return float(self.t) if self.t is not None else float(self.sigma or 0.0)


def levels_for(s: TrainSettings) -> list[Level]:
    """The noise levels a model trained with settings s has a score for, least noisy first (so the
    slider's left end is the data and its right end the prior)."""
    if s.objective == "ncsn":
        sig = sigmas_of(s)
        return [Level(f"σ{i + 1} = {float(sig[i]):.3g}", sigma=float(sig[i])) for i in reversed(range(len(sig)))]
    if s.objective == "ddpm":
        sch = schedule_of(s)
        return [Level(f"t = {t + 1}/{sch.T}  (√(1−ᾱ) = {float(sch.sqrt_one_minus_alpha_bars[t]):.3g})", t=t)
                for t in range(sch.T)]
    if s.objective == "dsm":
        return [Level(f"σ = {s.sigma:.3g} (DSM fits p_σ)", sigma=s.sigma)]
    return [Level("σ = 0 (the data density)")]


def target_density(density: D.GaussianMixture, s: TrainSettings, level: Level) -> D.GaussianMixture:
    return F.target_density_at(config_of(s), density, level.value)


def learned_score_fn(model, s: TrainSettings, level: Level):
    """x -> s_θ(x) at the level, as a score (a DDPM model's ε is converted by eps_to_score)."""
    return F.model_score_at(model, config_of(s), level.value)


def fisher_metric(s: TrainSettings, density: D.GaussianMixture, n_eval: int = 1024):
    """fn(model) -> (Fisher divergence at the least-noisy level the model knows, label), on samples
    of that level's density (fixed seed, so the curve moves only with the model)."""
    lev = levels_for(s)[0]
    target = target_density(density, s, lev)
    x = target.sample(n_eval, generator=torch.Generator().manual_seed(12345))

    def fn(model):
        return M.fisher_divergence(learned_score_fn(model, s, lev), target, x), lev.label
    return fn


# ------------------------------------------------------------------ samplers
SAMPLER_NAMES = ("langevin", "annealed", "ddpm")


@dataclass
class ChainSpec:
    sampler: S.Sampler
    title: str
    note: str = ""            # why the exact score stands in for the model, if it does


def make_samplers(ss: SamplerSettings, model, ms: TrainSettings | None, density: D.GaussianMixture,
                  fallback: TrainSettings | None = None) -> list[ChainSpec]:
    """Langevin, annealed Langevin and DDPM (trainers.fitting.make_sampler), each with the model's
    score where the model has one for that sampler, else the exact score and a note saying so."""
    use_model = ss.source == "model" and model is not None and ms is not None
    settings = ms if use_model else (ms or fallback or TrainSettings())
    cfg = config_of(settings)
    exact_sigmas = SCH.geometric_sigmas(max(ss.sigma_max, ss.sigma_min * 1.0001), ss.sigma_min, ss.n_levels)
    model_sigmas = sigmas_of(settings) if settings.cond == "sigma" else exact_sigmas
    plans = [("langevin", "Langevin", dict(eps=ss.langevin_eps, steps=ss.langevin_steps)),
             ("annealed", "Annealed Langevin", dict(eps=ss.annealed_eps, steps=ss.steps_per_level,
                                                    final_denoise=ss.final_denoise)),
             ("ddpm", "DDPM", dict(variance=ss.ddpm_variance))]
    describe = {None: "model", "sigma": "model", "time": "model"}
    out = []
    for name, title, kw in plans:
        note = ""
        if use_model:
            try:
                sampler = F.make_sampler(name, cfg, model, density,
                                         sigmas=model_sigmas if name == "annealed" else sigmas_of(settings), **kw)
                src = describe[cfg.cond]
                if name == "langevin" and cfg.cond == "sigma":
                    src = f"model at σ_L = {float(sigmas_of(settings)[-1]):.3g}"
                elif name == "langevin" and cfg.cond == "time":
                    src = "model at t = 1"
                elif name == "annealed" and cfg.cond is None:
                    src = "model (one σ for all levels)"
                out.append(ChainSpec(sampler, f"{title} — {src}"))
                continue
            except ValueError as e:
                note = f"{e}; the exact score is used"
        sampler = F.make_sampler(name, cfg, None, density, sigmas=exact_sigmas, **kw)
        what = {"langevin": "exact score", "annealed": "exact score of p_σ", "ddpm": "exact ε of q(x_t)"}[name]
        if ss.source == "model" and model is None:
            note = "no trained model yet"
        out.append(ChainSpec(sampler, f"{title} — {what}", note))
    return out
