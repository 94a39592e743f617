"""Work around a reference-counting bug of PySide6 6.12 on Python < 3.12.

Measured here (PySide6-Essentials 6.12.0, CPython 3.11.7): every call of a Qt method that returns
nothing (`QSlider.setValue`, `QPolygonF.resize`, `QPainter.save`, …) *decrements* the reference
count of `None` without having incremented it (some also drop `True`). In a fresh process `None`
has ~5 000 references, so after a few thousand such calls — seconds of pyqtgraph drawing — CPython
aborts with "Fatal Python error: none_dealloc". Python 3.12 made None/True/False immortal
(PEP 683), which hides the bug there.

The work-around gives these three singletons a huge reference count once, at import, which is what
3.12 does. They are never legitimately deallocated, so nothing else changes. Remove this module
when the project requires Python ≥ 3.12 or a PySide6 without the bug.
"""
from __future__ import annotations

import ctypes
import sys

_PINNED = False


def pin_singletons() -> bool:
    """Make None/True/False effectively immortal on CPython < 3.12. Returns True if applied."""
    global _PINNED
    if _PINNED or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    for obj in (None, True, False):
        # ob_refcnt is the first field of every PyObject (non-debug builds)
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    _PINNED = True
    return True
