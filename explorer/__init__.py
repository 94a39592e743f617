"""Score Explorer: the Qt desktop app (PySide6 + pyqtgraph). All maths lives in `trainers/`."""
