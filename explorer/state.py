"""The explorer's model: one QObject holding the density, the settings and the current network.

Views read from it and call its methods; it emits change signals. It holds no maths: densities,
networks and schedules come from `trainers/`.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

import torch
from PySide6 import QtCore

from trainers import densities
from trainers import fitting
from trainers import grid
from trainers import schema
from trainers.studies import history
from trainers.samplers import SAMPLERS


def default_train_config() -> fitting.ToyConfig:
    """The CLI's ToyConfig with the GUI's defaults (σ₁ by the prior rule, short DDPM schedule, constant lr)."""
    return fitting.ToyConfig(objective="ncsn", sigma=0.3, sigma_max=0.0, sigma_min=0.05, n_levels=10,
                       n_timesteps=200, lr_decay=False)


def build_network(cfg: fitting.ToyConfig) -> torch.nn.Module:
    """An untrained network of cfg's shape (to load weight snapshots into)."""
    return fitting.build_network(cfg)


# Weight snapshots of live training (the History tab): at least every HISTORY_EVERY steps, at most
# HISTORY_CAP of them (older ones thinned, trainers.studies.history.SnapshotHistory).
HISTORY_EVERY = 50
HISTORY_CAP = 40


# The Samplers tab's panels: a registry sampler (trainers.samplers.SAMPLERS), a score source and that
# sampler's options (its Options fields; unset ones take its defaults). One model, every sampler.
MAX_PANELS = 4


def panel(sampler: str, source: str = "model", **options) -> dict:
    """A panel's settings: `sampler`'s options at their GUI start values (the `gui` of its Options
    fields, sized for ~150 frames), then `options`."""
    return {"sampler": sampler, "source": source,
            "options": {**schema.gui_defaults(SAMPLERS[sampler].Options), **options}}


def default_panels() -> list[dict]:
    """One model, every sampler: annealed Langevin, DDPM, deterministic DDIM and the PF-ODE (Heun)."""
    return [panel("annealed"), panel("ddpm"), panel("ddim"), panel("pf-ode")]


@dataclass
class SamplerSettings:
    """How to sample: shared particles and playback, then up to MAX_PANELS panels."""
    n_particles: int = 2000
    init: str = "gaussian"         # gaussian (matched to p_σmax) | exact (p_σmax, exact-score panels) | uniform
    frames: int = 150              # timeline resolution: every chain is shown at this many instants
    seed: int = 0
    trails: int = 5
    flow_lines: bool = False       # deterministic samplers: draw whole paths instead of trails
    n_panels: int = 4
    panels: list = field(default_factory=default_panels)


def _sampler_settings_from_dict(d: dict | None) -> SamplerSettings:
    """SamplerSettings from a session; an old file (Langevin/annealed/DDPM fields, no panels) becomes
    panels for its chosen chains with its step sizes."""
    d = dict(d or {})
    if "panels" not in d and "chains" in d:
        old = {"langevin": {"steps": d.get("langevin_steps"), "eps": d.get("langevin_eps")},
               "annealed": {"steps": d.get("steps_per_level"), "eps": d.get("annealed_eps"),
                            "n_levels": d.get("n_levels"), "final_denoise": d.get("final_denoise", False)},
               "ddpm": {"variance": d.get("ddpm_variance", "beta")}}
        d["panels"] = [{"sampler": c, "source": d.get("source", "model"),
                        "options": {k: v for k, v in old[c].items() if v is not None}}
                       for c in d["chains"] if c in old][:MAX_PANELS] or default_panels()
        d["n_panels"] = len(d["panels"])
    s = _dataclass_from_dict(SamplerSettings, d)
    s.panels = [p for p in s.panels if isinstance(p, dict) and p.get("sampler") in SAMPLERS][:MAX_PANELS] \
        or default_panels()
    s.panels += default_panels()[len(s.panels):]
    s.n_panels = max(1, min(int(s.n_panels), MAX_PANELS))
    return s


def _dataclass_from_dict(cls, d: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (d or {}).items() if k in names})


def _train_config(d: dict | None) -> fitting.ToyConfig:
    """A ToyConfig from a session: GUI defaults, overridden by the file's fields (unknown ones ignored)."""
    return fitting.ToyConfig.from_dict({**default_train_config().to_dict(), **(d or {})})


class AppState(QtCore.QObject):
    """Density + undo history, training/sampler settings and the latest trained weights."""

    densityChanged = QtCore.Signal()
    trainSettingsChanged = QtCore.Signal()
    samplerSettingsChanged = QtCore.Signal()
    modelChanged = QtCore.Signal()            # new weights snapshot (or model reset)
    retrainRequested = QtCore.Signal()        # a view's "Retrain" button: train afresh on today's density/settings
    historyChanged = QtCore.Signal()          # a weight snapshot was kept, replaced, or the history cleared
    status = QtCore.Signal(str)               # a one-line message for the status bar

    def __init__(self, density: densities.GaussianMixture | None = None, parent=None):
        super().__init__(parent)
        density = density or densities.preset(densities.DEFAULT_DENSITY)
        self._density = density
        self._mass = grid.initial_mass(density)
        self.bounds = density.plot_bounds()
        self._undo: list[tuple] = []
        self._redo: list[tuple] = []
        self.train = default_train_config()
        self.sampler = SamplerSettings()
        self.model: torch.nn.Module | None = None      # GUI-thread copy; the worker trains its own
        self.model_settings: fitting.ToyConfig | None = None  # settings the current weights were trained with
        self.model_density: densities.GaussianMixture | None = None   # the density they were trained on
        self.model_step = 0
        # Weights through training: every model set_model receives goes in (see record_snapshot);
        # with the settings and the density they were trained on.
        self.history = history.SnapshotHistory(HISTORY_EVERY, HISTORY_CAP)
        self.history_settings: fitting.ToyConfig | None = None
        self.history_density: densities.GaussianMixture | None = None

    # ------------------------------------------------------------------ density
    @property
    def density(self) -> densities.GaussianMixture:
        return self._density

    def _push(self):
        self._undo.append((self._density, self._mass, self.bounds))
        del self._undo[:-100]
        self._redo.clear()

    def set_density(self, density: densities.GaussianMixture, *, reset_view: bool = True, mass: float | None = None):
        self._push()
        self._density = density
        self._mass = grid.initial_mass(density) if mass is None else mass
        if reset_view:
            self.bounds = density.plot_bounds()
        self.densityChanged.emit()

    def apply_stroke(self, stroke: densities.Stroke) -> bool:
        """Paint or erase one stroke. Returns False (and reports why) if it would break the density."""
        try:
            new, mass = grid.paint(self._density, self._mass, stroke, bounds=self.bounds)
        except densities.DensityError as e:
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
    def set_model(self, model: torch.nn.Module | None, settings: fitting.ToyConfig | None, step: int = 0,
                  record: bool = True, density: densities.GaussianMixture | None = None):
        """New current weights (None: no model), trained with `settings` on `density` (default: the
        current density). With `record`, they also go into the history."""
        self.model = model
        self.model_settings = copy.deepcopy(settings) if settings is not None else None
        self.model_density = (density or self._density) if model is not None else None
        self.model_step = step
        if record:
            self.record_snapshot()
        self.modelChanged.emit()

    def model_mismatch(self) -> str:
        """Why the current model no longer matches the density and settings now chosen ("" when it
        does, or when there is no model): see `model_mismatch`."""
        return model_mismatch(self.model_settings, self.model_density, self.train, self._density) \
            if self.model is not None else ""

    def request_retrain(self) -> None:
        """Ask for a fresh training run on the current density with the current settings (the main
        window hands it to the Training tab)."""
        self.retrainRequested.emit()

    # ------------------------------------------------------------------ history
    def record_snapshot(self) -> None:
        """Put the current weights into the history. A model trained with other settings, on another
        density, or at an earlier step than the newest snapshot (a fresh run) starts a new history;
        no model clears it."""
        if self.model is None or self.model_settings is None:
            if len(self.history):
                self.clear_history()
            return
        new_run = (self.model_settings != self.history_settings or self._density is not self.history_density
                   or (len(self.history) and self.model_step < self.history.steps[-1]))
        if new_run:
            self.history = history.SnapshotHistory(HISTORY_EVERY, HISTORY_CAP)
            self.history_settings = copy.deepcopy(self.model_settings)
            self.history_density = self._density
        self.history.record(self.model_step, {k: v.detach().clone() for k, v in self.model.state_dict().items()})
        self.historyChanged.emit()

    def clear_history(self) -> None:
        self.history = history.SnapshotHistory(HISTORY_EVERY, HISTORY_CAP)
        self.history_settings = self.history_density = None
        self.historyChanged.emit()

    def snapshot_network(self, index: int) -> tuple[int, torch.nn.Module]:
        """(step, a network holding the weights of history snapshot `index`), in eval mode."""
        if self.history_settings is None or not len(self.history):
            raise LookupError("no weight snapshots yet: train on the Training tab first")
        model = build_network(self.history_settings)
        model.load_state_dict(self.history.states[index])
        model.eval()
        return self.history.steps[index], model

    # ------------------------------------------------------------------ session
    def to_session(self) -> dict:
        """Everything needed to restore the session; tensors + JSON-able values only (weights_only load)."""
        return {
            "format": "score-explorer-session",
            "version": 1,
            "density": self._density.to_dict(),
            "density_mass": float(self._mass),
            "bounds": list(self.bounds),
            "train": self.train.to_dict(),
            "sampler": asdict(self.sampler),
            "model_settings": self.model_settings.to_dict() if self.model_settings else None,
            "model_step": int(self.model_step),
            "model_density": self.model_density.to_dict() if self.model is not None else None,
            "model_state": ({k: v.detach().clone() for k, v in self.model.state_dict().items()}
                            if self.model is not None else None),
            "history": self._history_session(),
        }

    def _history_session(self) -> dict | None:
        """The weight snapshots with what they were trained with/on (None without any)."""
        if self.history_settings is None or not len(self.history):
            return None
        return {"snapshots": self.history.to_dict(), "settings": self.history_settings.to_dict(),
                "density": self.history_density.to_dict()}

    def restore_session(self, d: dict) -> None:
        """Inverse of to_session (also reads files written with the older TrainSettings fields).
        Validates everything before changing anything, so a bad file leaves the session as it was."""
        if not isinstance(d, dict) or d.get("format") != "score-explorer-session":
            raise ValueError("not a Score Explorer session file")
        density = densities.GaussianMixture.from_dict(d["density"])
        train = _train_config(d.get("train"))
        sampler = _sampler_settings_from_dict(d.get("sampler"))
        model, ms = None, None
        if d.get("model_state") is not None and d.get("model_settings"):
            ms = _train_config(d["model_settings"])
            model = build_network(ms)
            model.load_state_dict(d["model_state"])
            model.eval()
        bounds = tuple(float(v) for v in d.get("bounds") or density.plot_bounds())
        hist, hist_settings, hist_density = _history_from_session(d.get("history"), density)
        # what the model was trained on (files without it: the session's density, as they assumed)
        model_density = density
        if model is not None and d.get("model_density"):
            model_density = densities.GaussianMixture.from_dict(d["model_density"])
            if model_density.to_dict() == density.to_dict():
                model_density = density
        # -- commit
        self._push()
        self._density, self._mass, self.bounds = density, float(d.get("density_mass", density.n_components)), bounds
        self.train, self.sampler = train, sampler
        self.densityChanged.emit()
        self.trainSettingsChanged.emit()
        self.samplerSettingsChanged.emit()
        self.history, self.history_settings, self.history_density = hist, hist_settings, hist_density
        # a file without a history: its model (if any) becomes the first snapshot of a new one
        self.set_model(model, ms, int(d.get("model_step", 0)), record=hist_settings is None,
                       density=model_density)
        self.historyChanged.emit()


def model_mismatch(trained_with: fitting.ToyConfig | None, trained_on: densities.GaussianMixture | None,
                   settings: fitting.ToyConfig, density: densities.GaussianMixture) -> str:
    """Why a model trained with `trained_with` on `trained_on` does not match `settings` and `density`
    (the ones now chosen), in one line; "" when both match. Densities match when they are the same
    object or hold the same mixture (a reopened session); settings field by field."""
    why = []
    if trained_on is not None and trained_on is not density and (
            trained_on.n_components != density.n_components or trained_on.to_dict() != density.to_dict()):
        old, new = trained_on.name or "a drawn density", density.name or "a drawn density"
        why.append(f"it was trained on another density ({old}; now {new})" if old != new
                   else f"it was trained on {old} before it was edited")
    if trained_with is not None and trained_with != settings:
        a, b = trained_with.to_dict(), settings.to_dict()
        diff = [f"{k} {a[k]} → {b[k]}" for k in a if a[k] != b.get(k)]
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        why.append("the training settings changed since (" + ", ".join(diff[:3]) + more + ")")
    return "; ".join(why)


def _history_from_session(d: dict | None, density: densities.GaussianMixture):
    """(SnapshotHistory, settings, density) from a session's "history" entry; an empty history for a
    file without one (older files: the restored model, if any, then becomes its first snapshot). Every
    snapshot is loaded into a network here, so a damaged file is refused before anything changes."""
    if not d:
        return history.SnapshotHistory(HISTORY_EVERY, HISTORY_CAP), None, None
    settings = _train_config(d["settings"])
    trained_on = densities.GaussianMixture.from_dict(d["density"])
    # the same mixture as the session's density: share the object (the Training tab compares identity)
    if trained_on.to_dict() == density.to_dict():
        trained_on = density
    hist = history.SnapshotHistory.from_dict(d["snapshots"])
    if len(hist.steps) != len(hist.states) or hist.steps != sorted(hist.steps):
        raise ValueError("the session's weight history is damaged (steps and snapshots do not match)")
    network = build_network(settings)
    for state in hist.states:
        network.load_state_dict(state)
    return hist, settings, trained_on
