"""Form rows generated from a settings schema (trainers.schema): one widget per `option` field of a
dataclass, labelled, ranged and explained by the field itself, bound by name in a common.FormBinding.

    rows = SchemaRows(layout, Options)            # layout: a QFormLayout; Options: a schema dataclass
    rows.load(schema.gui_defaults(Options))       # show values (a dict or an object); no signal fires
    rows.values()                                 # {field: value}; an `unset` field at its minimum → None
    rows.binding.changed.connect(...)             # (name, value) when a person edits a field
    rows.set_visible(False)                       # hide every row (e.g. another sampler's options)

Widgets (`field_widget`): a check box for a bool; a combo box of (value, text) for `choices`; else a
spin box over [lo, hi] with the field's step and decimals. A field with `unset` text shows that text
at the spin box's minimum lo and reads it as None (schema convention: a set value lies above lo).
Every widget's tooltip is the field's tip, plus its default. Fields made with form=False get no row.
"""
from __future__ import annotations

from PySide6 import QtWidgets

from trainers import schema

from . import common

_INT_SPAN, _FLOAT_SPAN = 10**9, 1e9     # spin-box limits for a field without lo / hi


def tooltip(spec: schema.Spec) -> str:
    """The field's tip, plus its default where it has one and the tip does not name it."""
    if spec.default is None or "default" in spec.tip.lower():
        return spec.tip
    shown = {True: "on", False: "off"}[spec.default] if spec.kind is bool else \
        dict(spec.choices or ()).get(spec.default, f"{spec.default:g}" if spec.kind is float else spec.default)
    return f"{spec.tip} Default: {shown}."


def field_widget(spec: schema.Spec) -> QtWidgets.QWidget:
    """A widget for one schema field (see the module docstring), showing its GUI start value."""
    start = spec.gui_default
    if spec.kind is bool:
        w = QtWidgets.QCheckBox()
        w.setChecked(bool(start))
    elif spec.choices is not None:
        w = common.combo(list(spec.choices), start)
    else:
        is_int = spec.kind is int
        lo = spec.lo if spec.lo is not None else (-_INT_SPAN if is_int else -_FLOAT_SPAN)
        hi = spec.hi if spec.hi is not None else (_INT_SPAN if is_int else _FLOAT_SPAN)
        lo, hi = (int(lo), int(hi)) if is_int else (float(lo), float(hi))
        value = lo if start is None else (int(start) if is_int else float(start))
        w = common.spin(lo, hi, value, spec.step, None if is_int else spec.decimals, log=spec.log)
        if spec.unset is not None:
            w.setSpecialValueText(spec.unset)       # shown at the minimum, read as None
    w.setToolTip(tooltip(spec))
    return w


class SchemaRows:
    """The form rows of one schema dataclass in a QFormLayout, bound by field name in `binding`
    (a new FormBinding unless one is given: several schemas may share one binding if their field
    names differ)."""

    def __init__(self, layout: QtWidgets.QFormLayout, cls, binding: common.FormBinding | None = None,
                 parent=None):
        self.layout, self.cls = layout, cls
        self.binding = binding or common.FormBinding(parent)
        self.specs = [s for s in schema.specs(cls) if s.form]
        self.widgets: dict[str, QtWidgets.QWidget] = {}
        for s in self.specs:
            w = self.binding.add(s.name, field_widget(s), none_at_minimum=s.unset is not None)
            layout.addRow(s.label, w)
            self.widgets[s.name] = w

    def load(self, source) -> None:
        """Show the fields `source` has (a dict or an object), without any signal."""
        self.binding.load(source)

    def values(self) -> dict:
        return self.binding.values(list(self.widgets))

    def set_visible(self, visible: bool) -> None:
        for w in self.widgets.values():
            self.layout.setRowVisible(w, visible)
