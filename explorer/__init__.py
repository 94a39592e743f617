"""Score Explorer: the Qt desktop app (PySide6 + pyqtgraph). All maths lives in `trainers/`."""
from ._compat import pin_singletons

pin_singletons()
