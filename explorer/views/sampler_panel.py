"""The settings of one Samplers-tab panel: a registry sampler, a score source, and a widget for each
SamplerOptions field that sampler reads (`SamplerInfo.params`); the others are hidden. A panel's
settings are a plain dict (state.panel): {"sampler", "source", "options": {field: value}}."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from trainers.samplers import SAMPLERS

from ..state import PANEL_DEFAULTS
from . import common

STEPS_TIP = {
    "langevin": "Number of Langevin steps.",
    "annealed": "T: Langevin steps per noise level (the chain has L·T steps).",
    "ddpm": "Timesteps visited (fewer than the schedule's T: the respaced chain of Nichol & Dhariwal).",
    "ddim": "Timesteps visited, evenly spaced over the schedule.",
    "pf-ode": "Number of σ levels of the ODE grid (then a last step to σ = 0).",
    "pc": "Number of predictor steps (σ levels).",
}
EPS_TIP = {
    "langevin": "Langevin step ε: x ← x + ε s(x, σ_min) + √(2ε) z  (NCSN's α = 2ε). Default 0.01.",
    "annealed": "Annealed Langevin ε: at level i the step is αᵢ = ε σᵢ²/σ_L², y ← y + (αᵢ/2) s(y, σᵢ) + √αᵢ z "
                "(Song & Ermon 2019, Alg. 1). Default 0.1 σ_L².",
}

# field: (label, kind, lo, hi, step, decimals, special text for "unset" or None, tooltip)
FIELDS = {
    "steps": ("Steps", int, 0, 100000, 10, None, "default", ""),
    "nfe": ("NFE budget", int, 0, 100000, 10, None, "off",
            "Instead of steps: spend about this many network evaluations (the sampler picks its steps)."),
    "eps": ("ε", float, 0.0, 10.0, 1e-3, 6, "default", ""),
    "n_levels": ("Levels L", int, 1, 200, 1, None, None, "L: number of geometric noise levels σ₁ > … > σ_L."),
    "sigma_max": ("σ_max", float, 0.0, 500.0, 0.5, 3, "model's",
                  "Largest noise level σ₁. 'model's': the σ range the model was trained on."),
    "sigma_min": ("σ_min", float, 0.0, 50.0, 0.01, 3, "model's",
                  "Smallest noise level σ_L. 'model's': the σ range the model was trained on."),
    "final_denoise": ("Final denoise", bool, 0, 0, 0, None, None,
                      "NCSNv2's optional last step y ← y + σ_L² s(y, σ_L) (off in the original NCSN)."),
    "variance": ("Variance", [("beta", "σ² = β"), ("beta_tilde", "σ² = β̃")], 0, 0, 0, None, None,
                 "Reverse-step variance: β or β̃ = (1−ᾱ_{t'})/(1−ᾱ_t) β; "
                 "x_{t'} = (x_t − β/√(1−ᾱ_t) ε)/√(1−β) + σ z, z = 0 at the last step."),
    "eta": ("η", float, 0.0, 1.0, 0.1, 2, None,
            "DDIM η: σ_η² = η² (1−ᾱ')/(1−ᾱ) (1 − ᾱ/ᾱ'). η = 0 deterministic (flow lines), η = 1 DDPM-like."),
    "solver": ("Solver", [("heun", "Heun (2 NFE/step)"), ("euler", "Euler")], 0, 0, 0, None, None,
               "PF-ODE solver: Euler y ← y + (σ'−σ) d, or Heun (Karras et al. 2022, Alg. 1): Euler trial, "
               "then the average slope; the step to σ = 0 is Euler."),
    "grid": ("σ grid", [("karras", "Karras (ρ)"), ("geometric", "geometric")], 0, 0, 0, None, None,
             "σ levels of the ODE: Karras et al.'s σᵢ = (σ_max^{1/ρ} + i/(n−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, "
             "or geometric."),
    "rho": ("ρ", float, 1.0, 20.0, 0.5, 1, None, "Karras grid ρ (larger: denser near σ_min; 7 in the paper)."),
    "snr": ("SNR r", float, 0.001, 2.0, 0.01, 3, None,
            "Predictor–corrector signal-to-noise ratio r: the corrector's step is a = 2 (r ‖z‖/‖s‖)²."),
    "corrector_steps": ("Corrector M", int, 0, 50, 1, None, None, "M Langevin corrector steps after each predictor step."),
    "clip_denoised": ("Clip x̂₀", float, 0.0, 100.0, 0.5, 2, "off", "Clip the denoised estimate x̂₀ to [−c, c] (images)."),
    "n_timesteps": ("Schedule T", int, 10, 5000, 10, None, None,
                    "Length of the VP schedule built over the σ range for a model that is not a DDPM ε-model "
                    "(a DDPM model and a DDPM-config exact score use their own schedule)."),
}


def _tip(info) -> str:
    return f"{info.title}: {info.convention}\n{info.description}"


class PanelControls(QtWidgets.QGroupBox):
    """Sampler, source and the sampler's own options for panel `index`; `changed` when the user edits."""
    changed = QtCore.Signal()

    def __init__(self, index: int, color, parent=None):
        super().__init__(f"Panel {index + 1}", parent)
        r, g, b = color[:3]
        self.setStyleSheet(f"QGroupBox::title {{ color: rgb({r},{g},{b}); }}")
        self.form = QtWidgets.QFormLayout(self)
        self.form.setContentsMargins(6, 6, 6, 6)
        self.choice = common.FormBinding(self)        # "sampler" and "source"
        self.options = common.FormBinding(self)       # the SamplerOptions fields, by name
        self.sampler = self.choice.add("sampler", common.combo([(k, v.title) for k, v in SAMPLERS.items()], None,
                               "Which sampler this panel runs:\n" + "\n".join(_tip(v) for v in SAMPLERS.values())))
        self.source = self.choice.add("source", common.combo(
            [("model", "trained model"), ("exact", "exact score")], None,
            "model: the trained network (frozen when the chains start), whatever it was trained for;\nexact: the "
            "true score of the drawn density. Compare both to tell a bad score from a bad sampler."))
        self.conv = QtWidgets.QLabel()
        self.conv.setWordWrap(True)
        self.conv.setStyleSheet("color: #999; font-size: 8pt")
        self.form.addRow("Sampler", self.sampler)
        self.form.addRow(self.conv)
        self.form.addRow("Score", self.source)
        for name, (label, kind, lo, hi, step, dec, special, tip) in FIELDS.items():
            w = self.options.add(name, self._make(kind, lo, hi, step, dec, special), none_at_minimum=bool(special))
            w.setToolTip(tip)
            self.form.addRow(label, w)
        self.widgets = self.options.widgets
        self.choice.changed.connect(self._on_choice)
        self.options.changed.connect(lambda *_: self.changed.emit())

    @staticmethod
    def _make(kind, lo, hi, step, dec, special):
        if kind is bool:
            return QtWidgets.QCheckBox()
        if isinstance(kind, list):
            return common.combo(kind)
        w = common.spin(lo, hi, lo if kind is int else float(lo), step, dec)
        if special:
            w.setSpecialValueText(special)          # shown at the minimum, read as "unset" (None)
        return w

    # ------------------------------------------------------------------ dict ↔ widgets
    def load(self, panel: dict):
        """Show `panel` (no `changed` signal); options it does not set show SamplerOptions' defaults."""
        self.choice.load({"sampler": panel["sampler"], "source": panel.get("source", "model")})
        self.options.load({**_option_defaults(), **panel.get("options", {})})
        self._show_fields()

    def panel(self) -> dict:
        """The panel as shown: sampler, source and the options its sampler reads."""
        choice = self.choice.values()
        return {**choice, "options": self.options.values(SAMPLERS[choice["sampler"]].params)}

    def set_as_user(self, sampler: str, source: str = "model", **options):
        """Choose `sampler` and `source`, then set `options`, as a person would (`changed` each time)."""
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        unknown = set(options) - set(self.widgets)
        if unknown:
            raise ValueError(f"unknown sampler option(s) {', '.join(sorted(unknown))}; "
                             f"the options are {', '.join(self.widgets)}")
        self.choice.set("sampler", sampler)
        self.choice.set("source", source)
        for name, value in options.items():
            self.options.set(name, value)

    def _on_choice(self, name: str, value):
        if name == "sampler":
            self._on_sampler()
        else:
            self.changed.emit()

    def _on_sampler(self, *_):
        name = self.sampler.currentData()
        self.load({"sampler": name, "source": self.source.currentData(), "options": PANEL_DEFAULTS.get(name, {})})
        self.changed.emit()

    def _show_fields(self):
        name = self.sampler.currentData()
        info = SAMPLERS[name]
        self.conv.setText(info.convention)
        self.conv.setToolTip(info.description)
        self.sampler.setToolTip(_tip(info) + "\n\n" + "\n".join(_tip(v) for v in SAMPLERS.values() if v is not info))
        for field, w in self.widgets.items():
            self.form.setRowVisible(w, field in info.params)
        self.widgets["steps"].setToolTip(STEPS_TIP.get(name, "Steps.") + " 'default': the sampler's own.")
        self.widgets["eps"].setToolTip(EPS_TIP.get(name, "Step size ε."))


def _option_defaults() -> dict:
    from trainers.samplers import SamplerOptions
    return SamplerOptions().__dict__
