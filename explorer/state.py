"""The explorer's model: one QObject holding the density, the settings and the current network.

Views read from it and call its methods; it emits change signals. It holds no maths: densities,
networks and schedules come from `trainers/`.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

import torch
from PySide6 import QtCore

from trainers import densities as D
from trainers import grid as G


@dataclass
class TrainSettings:
    """What to train. Objective names follow trainers.objectives.OBJECTIVES."""
    model: str = "mlp"             # "mlp" (outputs the score / ε) or "ebm" (energy, score = −∇f)
    objective: str = "ncsn"        # esm | ssm | dsm | ncsn | ddpm
    width: int = 128
    depth: int = 3
    lr: float = 2e-3
    batch: int = 512
    sigma: float = 0.3             # DSM noise level σ
    sigma_max: float = 6.0         # NCSN σ₁ (largest)
    sigma_min: float = 0.05        # NCSN σ_L (smallest)
    n_levels: int = 10             # NCSN L
    schedule: str = "linear"       # DDPM β schedule: linear | cosine
    n_timesteps: int = 200         # DDPM T (linear β endpoints are rescaled by 1000/T)
    seed: int = 0

    @property
    def cond(self):
        return {"ncsn": "sigma", "ddpm": "time"}.get(self.objective)


@dataclass
class SamplerSettings:
    """How to sample. Conventions are stated in the panel tooltips."""
    n_particles: int = 2000
    source: str = "model"          # "model" or "exact" (true score of the drawn density)
    langevin_eps: float = 0.01     # Langevin: x + ε s + √(2ε) z
    langevin_steps: int = 300
    annealed_eps: float = 1e-3     # annealed: α_i = ε σ_i²/σ_L², x + α_i/2 s + √α_i z
    steps_per_level: int = 30      # T
    n_levels: int = 10             # L (exact score / non-NCSN models; an NCSN model uses its own σ's)
    sigma_max: float = 6.0
    sigma_min: float = 0.05
    final_denoise: bool = False
    ddpm_variance: str = "beta"    # σ_t² = β_t or β̃_t
    frames: int = 150              # timeline resolution: every chain is shown at this many instants
    seed: int = 0
    trails: int = 5
    chains: list = field(default_factory=lambda: ["langevin", "annealed", "ddpm"])   # which samplers run


def _dataclass_from_dict(cls, d: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (d or {}).items() if k in names})


class AppState(QtCore.QObject):
    """Density + undo history, training/sampler settings and the latest trained weights."""

    densityChanged = QtCore.Signal()
    trainSettingsChanged = QtCore.Signal()
    samplerSettingsChanged = QtCore.Signal()
    modelChanged = QtCore.Signal()            # new weights snapshot (or model reset)
    status = QtCore.Signal(str)               # a one-line message for the status bar

    def __init__(self, density: D.GaussianMixture | None = None, parent=None):
        super().__init__(parent)
        density = density or D.preset(D.DEFAULT_DENSITY)
        self._density = density
        self._mass = G.initial_mass(density)
        self.bounds = density.plot_bounds()
        self._undo: list[tuple] = []
        self._redo: list[tuple] = []
        self.train = TrainSettings()
        self.sampler = SamplerSettings()
        self.model: torch.nn.Module | None = None      # GUI-thread copy; the worker trains its own
        self.model_settings: TrainSettings | None = None  # settings the current weights were trained with
        self.model_step = 0

    # ------------------------------------------------------------------ density
    @property
    def density(self) -> D.GaussianMixture:
        return self._density

    def _push(self):
        self._undo.append((self._density, self._mass, self.bounds))
        del self._undo[:-100]
        self._redo.clear()

    def set_density(self, density: D.GaussianMixture, *, reset_view: bool = True, mass: float | None = None):
        self._push()
        self._density = density
        self._mass = G.initial_mass(density) if mass is None else mass
        if reset_view:
            self.bounds = density.plot_bounds()
        self.densityChanged.emit()

    def apply_stroke(self, stroke: D.Stroke) -> bool:
        """Paint or erase one stroke. Returns False (and reports why) if it would break the density."""
        try:
            new, mass = G.paint(self._density, self._mass, stroke, bounds=self.bounds)
        except D.DensityError as e:
            self.status.emit(f"Stroke ignored: {e}")
            return False
        if new is self._density:
            return False
        self.set_density(new, reset_view=False, mass=mass)
        return True

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self):
        if not self._undo:
            return
        self._redo.append((self._density, self._mass, self.bounds))
        self._density, self._mass, self.bounds = self._undo.pop()
        self.densityChanged.emit()

    def redo(self):
        if not self._redo:
            return
        self._undo.append((self._density, self._mass, self.bounds))
        self._density, self._mass, self.bounds = self._redo.pop()
        self.densityChanged.emit()

    # ------------------------------------------------------------------ settings
    def update_train(self, **kw):
        changed = {k: v for k, v in kw.items() if getattr(self.train, k) != v}
        if changed:
            for k, v in changed.items():
                setattr(self.train, k, v)
            self.trainSettingsChanged.emit()

    def update_sampler(self, **kw):
        changed = {k: v for k, v in kw.items() if getattr(self.sampler, k) != v}
        if changed:
            for k, v in changed.items():
                setattr(self.sampler, k, v)
            self.samplerSettingsChanged.emit()

    # ------------------------------------------------------------------ model
    def set_model(self, model: torch.nn.Module | None, settings: TrainSettings | None, step: int = 0):
        self.model = model
        self.model_settings = copy.deepcopy(settings) if settings is not None else None
        self.model_step = step
        self.modelChanged.emit()

    # ------------------------------------------------------------------ session
    def to_session(self) -> dict:
        """Everything needed to restore the session; tensors + JSON-able values only (weights_only load)."""
        return {
            "format": "score-explorer-session",
            "version": 1,
            "density": self._density.to_dict(),
            "density_mass": float(self._mass),
            "bounds": list(self.bounds),
            "train": asdict(self.train),
            "sampler": asdict(self.sampler),
            "model_settings": asdict(self.model_settings) if self.model_settings else None,
            "model_step": int(self.model_step),
            "model_state": ({k: v.detach().clone() for k, v in self.model.state_dict().items()}
                            if self.model is not None else None),
        }

    def restore_session(self, d: dict, build_model) -> None:
        """Inverse of to_session; `build_model(settings)` makes an empty network to load weights into.
        Validates everything before changing anything, so a bad file leaves the session as it was."""
        if not isinstance(d, dict) or d.get("format") != "score-explorer-session":
            raise ValueError("not a Score Explorer session file")
        density = D.GaussianMixture.from_dict(d["density"])
        train = _dataclass_from_dict(TrainSettings, d.get("train"))
        sampler = _dataclass_from_dict(SamplerSettings, d.get("sampler"))
        model, ms = None, None
        if d.get("model_state") is not None and d.get("model_settings"):
            ms = _dataclass_from_dict(TrainSettings, d["model_settings"])
            model = build_model(ms)
            model.load_state_dict(d["model_state"])
            model.eval()
        bounds = tuple(float(v) for v in d.get("bounds") or density.plot_bounds())
        # -- commit
        self._push()
        self._density, self._mass, self.bounds = density, float(d.get("density_mass", density.n_components)), bounds
        self.train, self.sampler = train, sampler
        self.densityChanged.emit()
        self.trainSettingsChanged.emit()
        self.samplerSettingsChanged.emit()
        self.set_model(model, ms, int(d.get("model_step", 0)))
