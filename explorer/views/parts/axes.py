"""Plot axes with readable tick labels, for every plot of the explorer.

pyqtgraph's own axis labels every minor tick of a log axis that spans less than a few decades
("8·10¹ 7·10¹ 6·10¹ …", or "0.060.070.08" run together on a horizontal axis), and rescales a
linear axis by an SI factor ("loss (x0.001)" with ticks 600 … 900). `ReadableAxis` labels major
ticks only, never rescales, and picks the major ticks of a log axis so that their labels fit:

* at least two powers of ten in view: the powers of ten (every k-th one when they do not fit);
* else 1, 2, 5 × 10^k when at least two of them are in view and they fit;
* else (less than a factor of about 2.5 in view) evenly spaced round values, as on a linear axis.

Minor ticks (unlabelled) mark the integer multiples m × 10^k of a log axis where they are not too
dense. Labels are plain numbers between 0.001 and 10 000 ("0.05", "600", "2000") and 2·10⁻⁵-style
powers outside. `readable(plot)` puts such axes on an existing plot, keeping its axis labels.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg

SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
# room a tick label needs along the axis, in pixels (bottom/top: a label's width; left/right: its height)
LABEL_ROOM = {"bottom": 56, "top": 56, "left": 26, "right": 26}
MIN_MINOR_PX = 5          # minor ticks of a log axis closer than this (on average) are left out
PLAIN_RANGE = (1e-3, 1e4)   # |v| in this range is written as a plain number


def format_tick(v: float, digits: int = 4) -> str:
    """A tick value as a short readable string: plain between 0.001 and 10 000 (at most `digits`
    significant digits, no trailing zeros), else m·10ⁿ with a superscript exponent ("10⁻⁵" for m = 1)."""
    if not math.isfinite(v):
        return ""
    if v == 0:
        return "0"
    a = abs(v)
    if PLAIN_RANGE[0] <= a < PLAIN_RANGE[1]:
        s = f"{v:.{digits}g}"
        if "e" not in s:
            return s
    mant, exp = f"{v:.{max(1, digits - 2)}e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    power = "10" + str(int(exp)).translate(SUPERSCRIPT)
    if mant in ("1", "-1"):
        return power if mant == "1" else "−" + power
    return f"{mant}·{power}"


def linear_places(spacing: float) -> int:
    """Decimal places that tell ticks `spacing` apart (0 for spacings ≥ 1)."""
    if not spacing > 0 or not math.isfinite(spacing):
        return 0
    return max(0, math.ceil(-math.log10(spacing) - 1e-9))


def format_linear(values, spacing: float) -> list[str]:
    """Labels of a linear axis's ticks `spacing` apart: fixed decimals from the spacing (up to six
    places, below 10⁶), format_tick outside; a tick within rounding of zero is "0"."""
    places = linear_places(spacing)
    out = []
    for v in values:
        v = float(v)
        if abs(v) < 1e-9 * max(spacing, 1e-300):
            out.append("0")
        elif abs(v) < 1e6 and places <= 6:
            out.append(f"{v:.{places}f}")
        else:
            out.append(format_tick(v))
    return out


def _nice_linear(lo: float, hi: float, n_max: int) -> list[float]:
    """Round values (1, 2 or 5 × 10^k apart) between lo and hi, at most n_max (at least 2 where
    possible)."""
    if not hi > lo:
        return [lo]
    for n in range(max(2, n_max), 1, -1):
        raw = (hi - lo) / n
        p = 10.0 ** math.floor(math.log10(raw))
        for m in (1, 2, 2.5, 5, 10):
            step = m * p
            if step >= raw:
                break
        start = math.ceil(lo / step - 1e-9) * step
        vals = [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]
        vals = [v for v in vals if lo - 1e-9 * step <= v <= hi + 1e-9 * step]
        if 2 <= len(vals) <= n_max:
            return vals
    return [0.5 * (lo + hi)]


def log_ticks(lo: float, hi: float, n_max: int, max_minor: int = 200) -> tuple[list[float], list[float]]:
    """(major, minor) tick positions, as log10 of the value, of a log axis showing log10 values
    lo … hi with room for at most n_max labels (see the module docstring for the rule)."""
    lo, hi = sorted((float(lo), float(hi)))
    n_max = max(2, int(n_max))
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo > 600:
        return [], []
    eps = 1e-9 * max(1.0, hi - lo)

    def multiples(mantissas) -> list[float]:
        return [d + math.log10(m) for d in range(math.floor(lo) - 1, math.ceil(hi) + 1)
                for m in mantissas if lo - eps <= d + math.log10(m) <= hi + eps]

    decades = multiples((1,))
    if len(decades) > n_max:                            # every k-th power of ten
        step = math.ceil(len(decades) / n_max)
        major = [d for d in decades if round(d) % step == 0]
        if len(major) < 2:
            major = [decades[0], decades[-1]]
    else:
        major = []
        for mantissas in ((1, 2, 5), (1, 5), (1,)):     # the densest set that fits
            cand = multiples(mantissas)
            if 2 <= len(cand) <= n_max:
                major = cand
                break
        if not major:                                   # under a factor ~2.5 in view: round values
            major = [math.log10(v) for v in _nice_linear(10 ** lo, 10 ** hi, n_max) if v > 0]
    minor = []
    if hi - lo <= 8:
        cand = [d + math.log10(m) for d in range(math.floor(lo), math.ceil(hi) + 1) for m in range(1, 10)]
        cand = [c for c in cand if lo <= c <= hi and all(abs(c - M) > 1e-9 for M in major)]
        if len(cand) <= max_minor:
            minor = cand
    return major, minor


class ReadableAxis(pg.AxisItem):
    """An AxisItem that labels major ticks only, with format_tick / format_linear strings, picks log
    ticks by `log_ticks`, and never rescales by an SI prefix (so it never computes 10**range either:
    pyqtgraph's "overflow encountered in power" on a log axis whose range is still linear)."""

    def __init__(self, orientation: str, **kw):
        super().__init__(orientation, **kw)
        self.autoSIPrefix = False
        self.setStyle(maxTextLevel=0)

    def updateAutoSIPrefix(self):
        self.autoSIPrefixScale = 1.0
        self.labelUnitPrefix = ""
        self._updateLabel()

    def enableAutoSIPrefix(self, enable=True):
        self.autoSIPrefix = False          # never: ticks show the data's own numbers
        self.updateAutoSIPrefix()

    def _label_room(self) -> int:
        return LABEL_ROOM.get(self.orientation, 40)

    def tickValues(self, minVal, maxVal, size):
        if not self.logMode:
            return super().tickValues(minVal, maxVal, size)
        n_max = max(2, int(size // self._label_room()))
        lo, hi = sorted((minVal * self.scale, maxVal * self.scale))
        major, minor = log_ticks(lo, hi, n_max, max_minor=max(0, int(size // MIN_MINOR_PX)))
        return [(1.0, [m / self.scale for m in major]), (None, [m / self.scale for m in minor])]

    def tickStrings(self, values, scale, spacing):
        if self.logMode:
            return self.logTickStrings(values, scale, spacing)
        return format_linear([v * scale for v in values], (spacing or 0) * scale)

    def logTickStrings(self, values, scale, spacing):
        out = []
        for v in values:
            x = float(v)                 # log10 of the value (the axis never rescales: scale is 1)
            out.append(format_tick(10.0 ** x) if -300 < x < 300 else "")
        return out


def readable(plot, names=("left", "bottom")) -> None:
    """Give `plot` (a PlotItem or PlotWidget) ReadableAxis axes `names`, keeping each one's label
    text, units, visibility and log mode."""
    item = plot.getPlotItem() if hasattr(plot, "getPlotItem") else plot
    for name in names:
        old = item.getAxis(name)
        if isinstance(old, ReadableAxis):
            continue
        new = ReadableAxis(name)
        shown = old.label.isVisible()
        text, units = old.labelText, old.labelUnits
        log = old.logMode
        item.setAxisItems({name: new})
        new.setLogMode(log)
        if shown and (text or units):
            new.setLabel(text, units=units or None)
        if not old.isVisible():
            item.hideAxis(name)


def items(names=("left", "bottom")) -> dict[str, ReadableAxis]:
    """Fresh ReadableAxis items for a new plot: PlotItem(axisItems=items()), addPlot(axisItems=items())."""
    return {name: ReadableAxis(name) for name in names}
