"""Shared test setup. Qt needs its platform chosen before any QApplication exists: without a
display it would abort the process, so the explorer tests run on the offscreen platform."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
