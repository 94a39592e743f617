"""A banner for every view that uses the trained model: it says when the model no longer matches the
density or the settings now chosen (AppState.model_mismatch, a plain function of explorer.state) and
offers a one-click retrain (AppState.request_retrain; the main window gives it to the Training tab).
Hidden while the model matches, or when there is none."""
from __future__ import annotations

from PySide6 import QtWidgets


class StaleModelBanner(QtWidgets.QFrame):
    """Add it to a view (`StaleModelBanner(state)`); it follows the state's signals by itself."""

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.setStyleSheet("StaleModelBanner { background: #5c4a12; border-radius: 3px; } "
                           "QLabel { color: #ffeebb; }")
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        self.label = QtWidgets.QLabel()
        self.label.setWordWrap(True)
        self.retrain_btn = QtWidgets.QPushButton("Retrain")
        self.retrain_btn.setToolTip("Train a new model from scratch on the current density with the Training "
                                    "tab's settings (the old weights are discarded).")
        lay.addWidget(self.label, 1)
        lay.addWidget(self.retrain_btn)
        self.retrain_btn.clicked.connect(state.request_retrain)
        for sig in (state.modelChanged, state.densityChanged, state.trainSettingsChanged):
            sig.connect(self.refresh)
        self.refresh()

    def text(self) -> str:
        """What the banner says ("" while hidden)."""
        return self.label.text() if not self.isHidden() else ""

    def refresh(self, *_):
        why = self.state.model_mismatch()
        self.label.setText(f"The trained model (step {self.state.model_step}) no longer matches: {why}. "
                           "What this tab shows comes from the old model." if why else "")
        self.label.setToolTip(self.label.text())
        self.setHidden(not why)
