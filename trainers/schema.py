"""Settings that are their own schema (as diffusers' ``register_to_config``): a method's parameters
and a sampler's options are dataclass fields made with `option`, which carry their label, tooltip,
range or choices, and the value a GUI form starts at. The command lines (`add_arguments`,
`values_from_args`), the explorer's forms and the lab all read these fields; nothing restates them.

Conventions: a field whose default is None means "the owner's own rule" (a sampler's default step
count, the model's σ range); its form shows `unset` text for it. With `unset`, the range's low end lo
is the form's "unset" slot (the spin box's minimum, read as None), so a set value must lie above lo.
`gui` is the value the GUI starts at when it differs from the command line's default (a Samplers-tab
panel is sized for ~150 frames).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterable

_NO_GUI = object()


def option(default: Any, label: str, tip: str, *, lo: float | None = None, hi: float | None = None,
           step: float | None = None, decimals: int | None = None, choices: Iterable | None = None,
           unset: str | None = None, gui: Any = _NO_GUI, log: bool = False, flag: str | None = None,
           cli: bool = True, form: bool = True):
    """A dataclass field with its schema. choices: values, or (value, text) pairs; lo/hi: the allowed
    range (checked on the command line, the form's spin-box limits); flag: the command-line flag when
    it is not --<name with dashes>; cli/form False: not on the command line / not in GUI forms."""
    pairs = None
    if choices is not None:
        pairs = tuple((c, str(c)) if not isinstance(c, tuple) else c for c in choices)
    meta = {"label": label, "tip": tip, "lo": lo, "hi": hi, "step": step, "decimals": decimals,
            "choices": pairs, "unset": unset, "gui": gui, "log": log, "flag": flag, "cli": cli, "form": form}
    return dataclasses.field(default=default, metadata={"schema": meta})


@dataclass(frozen=True)
class Spec:
    """One field's schema, as forms and command lines read it."""
    name: str
    kind: type                       # int, float, bool or str (the type without None)
    optional: bool                   # None is allowed (the owner's own rule)
    default: Any
    label: str
    tip: str
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    decimals: int | None = None
    choices: tuple | None = None     # ((value, text), ...)
    unset: str | None = None
    gui: Any = _NO_GUI
    log: bool = False
    flag: str | None = None
    cli: bool = True
    form: bool = True

    @property
    def gui_default(self):
        return self.default if self.gui is _NO_GUI else self.gui

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value, owner: str = "") -> None:
        """Raise ValueError with a readable message when `value` is outside the schema."""
        where = f"{owner}: " if owner else ""
        if value is None:
            if not self.optional:
                raise ValueError(f"{where}{self.name} needs a value")
            return
        if self.choices is not None and value not in [c for c, _ in self.choices]:
            raise ValueError(f"{where}{self.name}{self._label()} must be one of {', '.join(str(c) for c, _ in self.choices)}, got {value!r}")
        if self.kind in (int, float) and not isinstance(value, bool):
            v = float(value)
            above = self.unset is not None and self.lo is not None      # lo is the form's "unset" slot
            low = self.lo is not None and (v <= self.lo if above else v < self.lo)
            if not math.isfinite(v) or low or (self.hi is not None and v > self.hi):
                lo = "-inf" if self.lo is None else f"{self.lo:g}"
                hi = "inf" if self.hi is None else f"{self.hi:g}"
                span = f"{'(' if above else '['}{lo}, {hi}]"
                raise ValueError(f"{where}{self.name}{self._label()} must lie in {span}, got {value}")

    def _label(self) -> str:
        """' (label)' where the label is not just the field's name (η for eta), else ''."""
        return "" if self.label.lower().replace(" ", "_") == self.name else f" ({self.label})"


def _base_type(hint) -> tuple[type, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def specs(cls) -> list[Spec]:
    """The schema of a dataclass (its `option` fields, in order)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("schema")
        if meta is None:
            continue
        kind, optional = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append(Spec(f.name, kind, optional or default is None, default, **meta))
    return out


def gui_defaults(cls) -> dict:
    """{field: the value a GUI form starts at} for the form fields of a schema dataclass."""
    return {s.name: s.gui_default for s in specs(cls) if s.form}


def check(obj, owner: str = "") -> None:
    """Check every schema field of a dataclass instance (ValueError naming the field and its range)."""
    for s in specs(type(obj)):
        s.check(getattr(obj, s.name), owner)


def _arg_type(spec: Spec):
    def parse(text: str):
        try:
            value = spec.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{spec.cli_flag} needs a {spec.kind.__name__}, got {text!r}") from None
        try:
            spec.check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser, schemas: dict[str, type], skip: Iterable[str] = ()) -> list[str]:
    """One flag per field name over several schemas {owner name: dataclass} (a name several owners
    share is one flag; its help lists each owner's meaning). Every flag defaults to None, so
    `values_from_args` returns only what the user set. Returns the field names added."""
    by_name: dict[str, list[tuple[str, Spec]]] = {}
    for owner, cls in schemas.items():
        for s in specs(cls):
            if s.cli and s.name not in skip:
                by_name.setdefault(s.name, []).append((owner, s))
    for name, owned in by_name.items():
        first = owned[0][1]
        tips = {}
        for owner, s in owned:
            tips.setdefault(_tip_with_default(s), []).append(owner)
        help_text = "; ".join(f"{'/'.join(owners)}: {tip.rstrip('.')}" for tip, owners in tips.items()) + "."
        if first.kind is bool:
            parser.add_argument(first.cli_flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
            continue
        choices = None
        if any(s.choices for _, s in owned):
            choices = list(dict.fromkeys(c for _, s in owned for c, _ in (s.choices or ())))
        parser.add_argument(first.cli_flag, dest=name, type=first.kind if choices else _arg_type(first),
                            choices=choices, default=None, help=help_text.replace("%", "%%"))
    return list(by_name)


def _tip_with_default(spec: Spec) -> str:
    """'tip (default d).' for the command line's help (the tip alone when the default is None)."""
    tip = spec.tip.rstrip()
    if spec.default is None:
        return tip
    stop = tip.endswith(".")
    return f"{tip[:-1] if stop else tip} (default {spec.default}){'.' if stop else ''}"


def values_from_args(args: argparse.Namespace, names: Iterable[str]) -> dict:
    """The fields among `names` the user set on the command line (not None)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
