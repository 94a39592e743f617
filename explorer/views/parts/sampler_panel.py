"""The settings of one Samplers-tab panel: a registry sampler, a score source, and the rows of that
sampler's own options, generated from its `Options` schema (parts.schema_form); switching sampler
shows its rows and hides the others'. A panel's settings are a plain dict (state.panel):
{"sampler", "source", "options": {field: value}}, with "class" (an index of the density's classes) and
"guidance" (the CFG weight w) when the panel guides on a class (trainers.studies.chains)."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from trainers import schema
from trainers.samplers import SAMPLERS, sampler_class

from . import common
from .schema_form import SchemaRows


def _tip(cls) -> str:
    return f"{cls.title}: {cls.convention}\n{cls.description}"


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
        self.guide_form = common.FormBinding(self)       # "class" (−1: none) and "guidance" (issue #22)
        self.cls = self.guide_form.add("class", common.combo([(-1, "none")], -1,
            "Classifier-free guidance on a class of the density (its components' labels; the brush's colours): the "
            "sampler runs on (1 + w) s(x|c) − w s(x), with the exact scores or a class-conditional model.\n"
            "none: the unconditional score.\nThe panel's figures say what they compare with: p(x|c) for a panel on "
            "class c (guided or not), and under CFG with w ≠ 0 also the tilted target p_w(x|c) ∝ "
            "p(x|c)^(1+w) p(x)^(−w), which CFG's samples are not draws of; p(x) with no class."))
        self.guidance = self.guide_form.add("guidance", common.spin(
            -1.0, 20.0, 0.0, 0.5, 2, "Guidance weight w: 0 = the conditional score s(x|c), −1 = the unconditional "
            "s(x); the 'guidance scale' of diffusers is 1 + w."))
        self.guide_kind = self.guide_form.add("guide", common.combo(
            [("cfg", "classifier-free (class)"), ("auto", "autoguidance (snapshot)")], "cfg",
            "classifier-free: (1 + w) s(x|c) − w s(x) on the chosen class.\nautoguidance (Karras et al. 2024): the "
            "trained model guided by a weaker one, a History snapshot: s_good + w (s_good − s_bad), at the class "
            "if one is chosen."))
        self.bad_snapshot = self.guide_form.add("bad_snapshot", common.spin(
            0, 9999, 0, 1, tooltip="Autoguidance's bad model: History snapshot number (0 = the earliest kept)."))
        self.form.addRow("Class", self.cls)
        self.form.addRow("Guide", self.guide_kind)
        self.form.addRow("Bad snapshot", self.bad_snapshot)
        self.form.addRow("Guidance w", self.guidance)
        self._wanted_class = -1              # a loaded panel's class, kept until the density has it
        self.guide_form.changed.connect(self._on_guide)
        self.set_classes([])
        self.rows: dict[str, SchemaRows] = {}          # each sampler's option rows, by registry name
        for name, cls in SAMPLERS.items():
            rows = self.rows[name] = SchemaRows(self.form, cls.Options, parent=self)
            rows.binding.changed.connect(lambda *_: self.changed.emit())
        self.choice.changed.connect(self._on_choice)
        self._show_fields()

    @property
    def widgets(self) -> dict[str, QtWidgets.QWidget]:
        """The option widgets of the sampler shown now, by field name."""
        return self.rows[self.sampler.currentData()].widgets

    # ------------------------------------------------------------------ dict ↔ widgets
    def load(self, panel: dict):
        """Show `panel` (no `changed` signal); options it does not set show the sampler's defaults."""
        name = panel["sampler"]
        self.choice.load({"sampler": name, "source": panel.get("source", "model")})
        cls = panel.get("class")
        self._wanted_class = -1 if cls is None else int(cls)
        self.guide_form.load({"class": self._wanted_class, "guidance": float(panel.get("guidance") or 0.0),
                              "guide": panel.get("guide", "cfg"), "bad_snapshot": int(panel.get("bad_snapshot", 0))})
        self._enable_guide()
        defaults = {s.name: s.default for s in schema.specs(SAMPLERS[name].Options)}
        self.rows[name].load({**defaults, **panel.get("options", {})})
        self._show_fields()

    def panel(self) -> dict:
        """The panel as shown: sampler, source and its sampler's options."""
        choice = self.choice.values()
        out = {**choice, "options": self.rows[choice["sampler"]].values()}
        cls = self.cls.currentData()
        if cls is not None and cls >= 0:
            out.update({"class": int(cls), "guidance": float(self.guidance.value())})
        if self.guide_kind.currentData() == "auto":
            out.update({"guide": "auto", "bad_snapshot": int(self.bad_snapshot.value()),
                        "guidance": float(self.guidance.value())})
        return out

    def _enable_guide(self):
        auto = self.guide_kind.currentData() == "auto"
        self.bad_snapshot.setEnabled(auto)
        self.guidance.setEnabled(auto or (self.cls.isEnabled() and (self.cls.currentData() or -1) >= 0))

    def set_classes(self, names) -> None:
        """The density's class names (none: an unlabelled density; the class rows are disabled)."""
        keep = self._wanted_class
        self.cls.blockSignals(True)
        self.cls.clear()
        self.cls.addItem("none", -1)
        for i, name in enumerate(names):
            self.cls.addItem(f"{i}: {name}", i)
        self.cls.setCurrentIndex(max(0, self.cls.findData(keep)))
        self.cls.blockSignals(False)
        self.cls.setEnabled(bool(names))
        self._enable_guide()

    def _on_guide(self, name: str, value):
        if name == "class":
            self._wanted_class = int(value)
        self._enable_guide()
        self.changed.emit()

    def set_as_user(self, sampler: str, source: str = "model", **options):
        """Choose `sampler` and `source`, then set `options`, as a person would (`changed` each time)."""
        unknown = set(options) - set(sampler_class(sampler).params)
        if unknown:
            raise ValueError(f"unknown {sampler} option(s) {', '.join(sorted(unknown))}; "
                             f"its options are {', '.join(SAMPLERS[sampler].params)}")
        self.choice.set("sampler", sampler)
        self.choice.set("source", source)
        for name, value in options.items():
            self.rows[sampler].binding.set(name, value)

    def _on_choice(self, name: str, value):
        if name == "sampler":
            self._on_sampler()
        else:
            self.changed.emit()

    def _on_sampler(self, *_):
        name = self.sampler.currentData()
        self.load({"sampler": name, "source": self.source.currentData(),
                   "options": schema.gui_defaults(SAMPLERS[name].Options)})
        self.changed.emit()

    def _show_fields(self):
        name = self.sampler.currentData()
        cls = SAMPLERS[name]
        self.conv.setText(cls.convention)
        self.conv.setToolTip(cls.description)
        self.sampler.setToolTip(_tip(cls) + "\n\n" + "\n".join(_tip(v) for v in SAMPLERS.values() if v is not cls))
        for other, rows in self.rows.items():
            rows.set_visible(other == name)
