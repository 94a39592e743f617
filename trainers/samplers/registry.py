"""The sampler registry: `@register_sampler` on a Sampler subclass files it under its `name`, and
everything that lists samplers or their settings reads `SAMPLERS` — the 2D and image command lines
(`add_sampler_arguments`, `options_from_args`), the Samplers-tab panel form, the lab — so a new
sampler file that registers itself appears everywhere with no other edit.

`SamplerOptions` is a bag of settings for any registered sampler (the lab and the command lines pass
one to several samplers): it takes any field some sampler's `Options` declares; unset fields read
None, and `build_sampler` fills them with that sampler's own defaults."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Iterable

from .. import schema
from ..score_models import ScoreModel
from .base import Sampler

SAMPLERS: dict[str, type[Sampler]] = {}


def register_sampler(cls: type[Sampler]) -> type[Sampler]:
    """Class decorator: file a Sampler subclass under `cls.name`. It must carry a `title`, an
    `Options` dataclass of trainers.schema.option fields and a `from_options` classmethod."""
    if not (isinstance(cls, type) and issubclass(cls, Sampler)):
        raise TypeError(f"@register_sampler: {cls!r} is not a Sampler subclass")
    if cls.name in SAMPLERS and SAMPLERS[cls.name] is not cls:
        raise ValueError(f"a sampler named {cls.name!r} is already registered ({SAMPLERS[cls.name].__name__})")
    options = cls.__dict__.get("Options")
    if options is None or not dataclasses.is_dataclass(options):
        raise TypeError(f"sampler {cls.name!r} needs its own Options dataclass")
    if cls.from_options.__func__ is Sampler.from_options.__func__:
        raise TypeError(f"sampler {cls.name!r} needs a from_options classmethod")
    cls.params = tuple(s.name for s in schema.specs(options))
    SAMPLERS[cls.name] = cls
    return cls


def sampler_schemas() -> dict[str, type]:
    """{registry name: its Options dataclass}, in registration order."""
    return {name: cls.Options for name, cls in SAMPLERS.items()}


def option_names() -> list[str]:
    """Every option field some registered sampler declares (first appearance order)."""
    return list(dict.fromkeys(name for cls in SAMPLERS.values() for name in cls.params))


class SamplerOptions:
    """Settings for any registered sampler, by field name: SamplerOptions(eta=0.5, steps=20).
    A name no sampler declares is a ValueError listing the known ones; an unset (or None) field reads
    None (`build_sampler` then uses that sampler's default). Attributes can be set."""

    def __init__(self, **values):
        _check_names(values)
        object.__setattr__(self, "_values", {k: v for k, v in values.items() if v is not None})

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in option_names():
            raise AttributeError(f"no sampler has an option {name!r}; the options are {', '.join(option_names())}")
        return self._values.get(name)

    def __setattr__(self, name: str, value) -> None:
        _check_names({name: value})
        if value is None:
            self._values.pop(name, None)
        else:
            self._values[name] = value

    def __eq__(self, other) -> bool:
        return isinstance(other, SamplerOptions) and self._values == other._values

    def __repr__(self) -> str:
        return f"SamplerOptions({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"

    def to_dict(self) -> dict:
        """The set fields, {name: value}."""
        return dict(self._values)

    def updated(self, **values) -> "SamplerOptions":
        """A copy with `values` set (None unsets a field)."""
        return SamplerOptions(**{**self._values, **values})

    @classmethod
    def from_dict(cls, d: dict | None) -> "SamplerOptions":
        """From a saved dict; keys no sampler declares (an older session's) are ignored."""
        names = set(option_names())
        return cls(**{k: v for k, v in (d or {}).items() if k in names})


def _check_names(values: dict) -> None:
    unknown = [k for k in values if k not in option_names()]
    if unknown:
        raise ValueError(f"unknown sampler option(s) {', '.join(map(repr, unknown))}; "
                         f"the options are {', '.join(option_names())}")


def sampler_class(name: str) -> type[Sampler]:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def resolve_options(name: str, options=None, **overrides):
    """Sampler `name`'s own Options from a SamplerOptions bag, a dict or its own Options, with
    `overrides` (None: unset); unset fields take its defaults. Checked against the schema (a
    ValueError naming the field and its range)."""
    cls = sampler_class(name)
    if isinstance(options, cls.Options):
        given = dataclasses.asdict(options)
    elif isinstance(options, SamplerOptions):
        given = options.to_dict()
    else:
        given = {k: v for k, v in (options or {}).items() if v is not None}
    _check_names(overrides)
    given = {k: v for k, v in {**given, **overrides}.items() if v is not None and k in cls.params}
    opts = cls.Options(**given)
    schema.check(opts, cls.title)
    return opts


def build_sampler(name: str, model: ScoreModel, options=None, **overrides) -> Sampler:
    """The sampler `name` from the registry, driven by `model` (any ScoreModel), with the settings
    in `options` (a SamplerOptions, a dict or its Options) and `overrides`; unset: its defaults."""
    return sampler_class(name).from_options(model, resolve_options(name, options, **overrides))


def add_sampler_arguments(parser: argparse.ArgumentParser, skip: Iterable[str] = ()) -> list[str]:
    """One command-line flag per sampler option (trainers.schema.add_arguments: a name several
    samplers share is one flag whose help gives each one's meaning and default); all default to None."""
    return schema.add_arguments(parser, sampler_schemas(), skip)


def options_from_args(args: argparse.Namespace, skip: Iterable[str] = ()) -> dict:
    """{option: value} of the sampler options set on the command line (those in `skip`, left out of
    add_sampler_arguments, are not read)."""
    return schema.values_from_args(args, [n for n in option_names() if n not in skip])
