"""Readable axes (explorer.views.parts.axes) and no clipped text at the default window sizes (issue 25,
items 7 and 8)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from PySide6 import QtCore, QtGui

from explorer.views.parts import axes


def _parse(label: str) -> float:
    """A tick label back to its number ("2·10⁻⁵", "10⁴", "0.05", "−10³")."""
    sup = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
    label = label.replace("−", "-")
    if "10" in label and any(c in label for c in "⁰¹²³⁴⁵⁶⁷⁸⁹"):
        mant, _, power = label.rpartition("10")
        mant = mant.rstrip("·") or "1"
        mant = "-1" if mant == "-" else mant
        return float(mant) * 10.0 ** int(power.translate(sup))
    return float(label)


@pytest.mark.parametrize("v", [1e-5, 2e-5, 3.5e-7, 0.001, 0.05, 0.25, 1, 7, 80, 600, 2500, 9999, 1e4, 1.5e4,
                               1.23e7, -0.02, -3e-6, -1e5])
def test_format_tick_round_trips_and_stays_short(v):
    s = axes.format_tick(v)
    assert math.isclose(_parse(s), v, rel_tol=1e-3), s
    assert len(s) <= 9 and "e" not in s, s


@pytest.mark.parametrize("lo, hi, n_max, expect", [
    (60, 90, 6, None),                        # the Fisher plot's "8·10¹ 7·10¹ 6·10¹…" (under a decade)
    (0.06, 0.1, 5, None),                     # loss per level's "0.060.070.08…"
    (600, 900, 5, None),                      # the "loss (x0.001)" axis, now in its own numbers
    (1e-3, 1e2, 10, [1e-3, 1e-2, 0.1, 1, 10, 100]),
    (1e-12, 1e3, 6, None),                    # many decades: every k-th power of ten
    (0.01, 1, 12, [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]),
])
def test_log_ticks_are_few_readable_and_inside_the_range(lo, hi, n_max, expect):
    major, minor = axes.log_ticks(math.log10(lo), math.log10(hi), n_max)
    values = [10 ** m for m in major]
    labels = [axes.format_tick(v) for v in values]
    assert 2 <= len(major) <= n_max, labels
    assert all(lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9) for v in values), labels
    assert len(set(labels)) == len(labels)
    assert all(math.isclose(_parse(s), v, rel_tol=1e-3) for s, v in zip(labels, values)), labels
    assert not set(np.round(major, 9)) & set(np.round(minor, 9))     # a minor tick is never a major one
    if expect is not None:
        assert np.allclose(values, expect), labels


def test_linear_labels_follow_the_spacing_without_si_scaling():
    assert axes.format_linear([0.0006, 0.0007, 0.0008], 0.0001) == ["0.0006", "0.0007", "0.0008"]
    assert axes.format_linear([600, 700, 800], 100) == ["600", "700", "800"]
    assert axes.format_linear([-1e-17, 0.5, 1.0], 0.5) == ["0", "0.5", "1.0"]
    assert axes.format_linear([0, 5000, 10000], 5000) == ["0", "5000", "10000"]


def _drawn_labels(plot, name: str) -> list[tuple[QtCore.QRectF, str]]:
    """The tick labels an axis draws now (pyqtgraph's own drawing specification)."""
    axis = plot.getAxis(name)
    img = QtGui.QImage(10, 10, QtGui.QImage.Format.Format_ARGB32)
    p = QtGui.QPainter(img)
    try:
        specs = axis.generateDrawSpecs(p)
    finally:
        p.end()
    return [(rect, text) for rect, _, text in specs[2] if text]


def _no_overlap(labels, vertical: bool) -> bool:
    spans = sorted((r.top(), r.bottom()) if vertical else (r.left(), r.right()) for r, _ in labels)
    return all(a[1] <= b[0] + 0.5 for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("data, log_x, log_y", [
    (([0, 1000, 2000, 3000], [85, 75, 66, 61]), False, True),              # Fisher, < 1 decade
    (([0.011, 0.03, 0.1, 0.3, 0.9], [0.07, 0.06, 0.08, 0.09, 0.1]), True, False),   # loss per σ level
    (([0, 100, 200], [9e-4, 7e-4, 6e-4]), False, False),                   # the image-run loss
])
def test_a_plot_with_readable_axes_draws_few_separate_parseable_labels(qtbot, data, log_x, log_y):
    import pyqtgraph as pg

    w = pg.PlotWidget(axisItems=axes.items())
    qtbot.addWidget(w)
    w.resize(420, 260)
    w.setLogMode(x=log_x, y=log_y)
    w.setLabel("left", "loss")
    w.plot(*data)
    w.show()
    qtbot.waitExposed(w)
    w.plotItem.vb.autoRange()
    QtGui.QGuiApplication.processEvents()
    for name, log in (("left", log_y), ("bottom", log_x)):
        labels = _drawn_labels(w.plotItem, name)
        assert len(labels) >= 2, labels
        assert _no_overlap(labels, vertical=name == "left"), [t for _, t in labels]
        values = [_parse(t) for _, t in labels]
        assert len(set(values)) == len(values)
    assert "x0.001" not in w.getAxis("left").labelString() and w.getAxis("left").autoSIPrefixScale == 1.0


@pytest.mark.parametrize("readable", [True, False])
def test_a_log_axis_with_a_linear_range_warns_nothing(qtbot, readable):
    """pyqtgraph's AxisItem computes 10**range for its SI prefix and 10**value for its log labels:
    "overflow encountered in power" when a labelled axis is in log mode while its range is still
    linear (0 … 1000, as the level plot's x when a DDPM run's t gives way to an NCSN run's σ).
    The negative control (pyqtgraph's own axis) must warn."""
    import pyqtgraph as pg

    cls = axes.ReadableAxis if readable else pg.AxisItem
    w = pg.PlotWidget(axisItems={"bottom": cls("bottom")})
    qtbot.addWidget(w)
    w.setLabel("bottom", "t")
    w.show()
    qtbot.waitExposed(w)
    axis = w.getAxis("bottom")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        axis.setLogMode(True)
        axis.setRange(0, 1000)
        axis.tickStrings([400.0], 1.0, 1.0)
    overflow = [w for w in caught if "overflow" in str(w.message)]
    assert (not overflow) if readable else overflow


def test_readable_keeps_an_existing_plots_label_and_log_mode(qtbot):
    import pyqtgraph as pg

    w = pg.PlotWidget()
    qtbot.addWidget(w)
    w.setLabel("bottom", "σ")
    w.setLogMode(x=True)
    axes.readable(w)
    axis = w.getAxis("bottom")
    assert isinstance(axis, axes.ReadableAxis) and axis.logMode and axis.labelText == "σ"


_SHOW_A_WINDOW = """
import sys
from PySide6 import QtCore, QtWidgets
if sys.argv[1] == "filter":
    from explorer.__main__ import install_qt_message_filter
    install_qt_message_filter()
app = QtWidgets.QApplication([])
w = QtWidgets.QMainWindow()
w.setCentralWidget(QtWidgets.QLabel("x"))
w.show()
app.processEvents()
w.resize(500, 400)
app.processEvents()
QtCore.qWarning("a message that stays")
"""


@pytest.mark.parametrize("filtered", [True, False])
def test_the_offscreen_size_hints_message_is_dropped_and_nothing_else(tmp_path, filtered):
    """`python -m explorer` installs a Qt message filter: the offscreen plugin's "This plugin does not
    support propagateSizeHints()" is dropped, any other message still reaches stderr. Without the
    filter (the negative control) the offscreen plugin prints it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(root))
    r = subprocess.run([sys.executable, "-c", _SHOW_A_WINDOW, "filter" if filtered else "none"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "a message that stays" in r.stderr
    assert ("propagateSizeHints" in r.stderr) is not filtered


def _eval_line(step: int, bpd):
    judge = {"mean_confidence": 0.5 + step / 1000, "frac_confident": 0.2}
    return {"step": step, "weights": "ema", "sampler": "ddim", "nfe": 50, "seed": 1, "judge": "digits",
            "samples": judge, "reference": judge, "noise": judge, "bits_per_dim": bpd}


def test_quality_plot_x_range_covers_the_checkpoints(qtbot, tmp_path):
    """Checkpoints 200, 250, 300 (bits/dim only for the first two): x spans 200 … 300 with small margins,
    and the x axis labels reach past 250 (the issue saw labels up to ≈ 225: a clipped plot)."""
    import json

    from explorer.views.parts.quality_plot import QualityPanel
    from trainers.image import run_layout as layout

    run = tmp_path / "run"
    run.mkdir()
    layout.eval_path(run).write_text("".join(json.dumps(_eval_line(s, b)) + "\n"
                                             for s, b in ((200, 2.5), (250, 2.4), (300, None))))
    panel = QualityPanel(poll_ms=60_000)
    qtbot.addWidget(panel)
    panel.resize(500, 420)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_run(run)
    for _ in range(5):
        QtGui.QGuiApplication.processEvents()
        qtbot.wait(20)
    (x0, x1), _ = panel.plot.getViewBox().viewRange()
    assert x0 <= 200 and x1 >= 300 and (x1 - x0) <= 1.3 * 100, (x0, x1)
    labels = [float(t) for _, t in _drawn_labels(panel.plot.getPlotItem(), "bottom")]
    assert min(labels) <= 200 and max(labels) >= 300, labels
    panel.shutdown()


# ---------------------------------------------------------------------------- no clipped text
TEXT_WIDGETS = ("QLabel", "QAbstractButton", "QAbstractSpinBox", "QComboBox", "QLineEdit", "QGroupBox")


def _visible_rect(w) -> QtCore.QRect:
    """The part of w (in window coordinates) that no ancestor cuts off."""
    from PySide6.QtWidgets import QWidget

    size = QWidget.size                       # not a view's own `size` attribute (the brush size box)
    top = w.window()
    r = QtCore.QRect(w.mapTo(top, QtCore.QPoint(0, 0)), size(w))
    p = w.parentWidget()
    while p is not None and p is not top:
        r = r.intersected(QtCore.QRect(p.mapTo(top, QtCore.QPoint(0, 0)), size(p)))
        p = p.parentWidget()
    return r.intersected(top.rect())


def clipped_widgets(win) -> list[str]:
    """Visible text widgets narrower than their size hint (labels, buttons, group titles) or minimum
    size hint (spin boxes, combos, line edits: those elide or scroll), or cut on the side by a parent;
    a widget scrolled out of view vertically does not count (its scroll area shows it on demand)."""
    from PySide6 import QtWidgets

    out = []
    for w in win.findChildren(QtWidgets.QWidget):
        if not w.isVisible() or not any(w.inherits(t) for t in TEXT_WIDGETS):
            continue
        if w.inherits("QLineEdit") and isinstance(w.parentWidget(), (QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox)):
            continue
        vis = _visible_rect(w)
        if vis.height() <= 0 or vis.width() <= 0:
            continue
        if isinstance(w, QtWidgets.QGroupBox):
            need, text = w.fontMetrics().horizontalAdvance(w.title()) + 16, w.title()
        elif isinstance(w, (QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox, QtWidgets.QLineEdit)):
            need, text = w.minimumSizeHint().width(), getattr(w, "currentText", w.text if hasattr(w, "text") else str)()
        elif isinstance(w, QtWidgets.QLabel) and w.wordWrap():
            need, text = w.minimumSizeHint().width(), w.text()
        else:
            need, text = w.sizeHint().width(), w.text()
        if w.width() + 1 < need:
            out.append(f"{type(w).__name__} {text[:40]!r}: {w.width()} px < {need} px")
        elif vis.width() + 1 < w.width():
            out.append(f"{type(w).__name__} {text[:40]!r}: cut, {vis.width()} of {w.width()} px visible")
    return out


def clipped_plots(win) -> list[str]:
    """Plot views cut by a parent, titles wider than their plot, axis labels longer than their axis,
    legends wider than their plot."""
    import pyqtgraph as pg

    out = []
    for view in win.findChildren(pg.GraphicsView):
        if not view.isVisible():
            continue
        vis = _visible_rect(view)
        if vis.height() > 0 and vis.width() + 1 < view.width():
            out.append(f"plot cut: {vis.width()} of {view.width()} px visible")
        shown = view.mapToScene(view.viewport().rect()).boundingRect()
        for item in view.scene().items():
            if isinstance(item, pg.PlotItem) and item.isVisible():
                r = item.sceneBoundingRect()
                if r.right() > shown.right() + 1 or r.left() < shown.left() - 1:
                    out.append(f"plot {item.titleLabel.text[:30]!r} reaches past its view "
                               f"({r.left():.0f}…{r.right():.0f} in {shown.left():.0f}…{shown.right():.0f})")
                t = item.titleLabel
                if t.isVisible() and t.text and t.item.boundingRect().width() > item.geometry().width() + 1:
                    out.append(f"title {t.text[:40]!r}: {t.item.boundingRect().width():.0f} px in "
                               f"{item.geometry().width():.0f}")
                for name in ("bottom", "left"):
                    ax = item.getAxis(name)
                    if ax.isVisible() and ax.label.isVisible() and ax.labelText:
                        have = ax.geometry().width() if name == "bottom" else ax.geometry().height()
                        if ax.label.boundingRect().width() > have + 1:
                            out.append(f"{name} axis label {ax.labelText!r} longer than its axis")
            elif isinstance(item, pg.LegendItem) and item.isVisible() and item.parentItem() is not None:
                box = item.parentItem().boundingRect()
                r = item.mapRectToItem(item.parentItem(), item.boundingRect())
                if r.width() > box.width() + 1 or r.left() < -1 or r.right() > box.right() + 1:
                    out.append(f"legend {r.width():.0f} px wide in a {box.width():.0f} px plot")
    return out


def _image_runs_with_data(root):
    """Two runs with long names: loss lines (losses ~6e-4 … 9e-4) with σ levels, checkpoints rated at
    steps 200, 250, 300."""
    import json

    from trainers.image import progress as events
    from trainers.image import run_layout as layout

    for k, name in enumerate(("ncsn_digits-20261207-064512-long-name", "ddpm_digits-20261207-070001-warm")):
        run = root / name
        run.mkdir(parents=True)
        log = events.ProgressLog(layout.progress_path(run), truncate_after=-1)
        log.event(events.START, 0, total_steps=300)
        sig = list(np.geomspace(0.01, 1.0, 10))
        for i, step in enumerate(range(50, 301, 50)):
            log.write(step=step, loss=9e-4 - 5e-5 * i - 1e-5 * k, total_steps=300,
                      level_loss={"level": "sigma", "at": sig, "loss": [0.06 + 0.004 * j for j in range(10)]})
        log.event(events.DONE, 300)
        log.close()
        for step in (200, 250, 300):
            layout.ckpt_path(run, step).parent.mkdir(exist_ok=True)
            layout.ckpt_path(run, step).write_bytes(b"")
        layout.eval_path(run).write_text("".join(json.dumps(_eval_line(s, b)) + "\n"
                                                 for s, b in ((200, 2.5), (250, 2.4), (300, None))))


@pytest.mark.parametrize("size", [(1400, 860), (1280, 800)])
def test_no_tab_clips_text_or_plots_at_the_default_window_sizes(window, tmp_path, size):
    """Every tab at 1400×860 (the default) and 1280×800: the window keeps the asked size (no tab's minimum
    is wider), no text widget is narrower than its text or cut by a parent, no plot, title, axis label or
    legend is cut. The Image-runs tab shows two runs with long names, overlaid, and their rated checkpoints."""
    from PySide6 import QtWidgets

    root = tmp_path / "runs"
    _image_runs_with_data(root)
    image = window.views["image_runs"]
    image.browser.root_edit.setText(str(root))
    image.browser.refresh()
    image.browser.run_list.selectAll()
    window.resize(*size)
    app = QtWidgets.QApplication.instance()
    problems = {}
    for key, view in window.views.items():
        window.tabs.setCurrentWidget(view)
        for _ in range(4):
            app.processEvents()
        assert (window.width(), window.height()) == size, (key, window.size(), view.minimumSizeHint())
        found = clipped_widgets(window) + clipped_plots(window)
        if key == "image_runs":
            image.right_tabs.setCurrentWidget(image.quality)
            for _ in range(4):
                app.processEvents()
            found += clipped_widgets(window) + clipped_plots(window)
            (x0, x1), _ = image.quality.plot.getViewBox().viewRange()
            assert x0 <= 200 and x1 >= 300, (x0, x1)
            image.right_tabs.setCurrentWidget(image.browser)
        if found:
            problems[key] = found
    assert not problems, problems
    assert len(image.overlays) == 2 and image.level_kind == "sigma"


def test_a_long_status_message_is_elided_before_the_permanent_texts(window):
    bar = window.statusBar()
    long = "Training stopped at step 3089: the Fisher divergence has not improved by 1 % for 3,000 steps " * 3
    window.state.status.emit(long)
    shown = bar.currentMessage()
    right = min(window.sampler_status.x(), window.train_status.x())
    assert shown.endswith("…") and long.startswith(shown[:-1]) and bar.toolTip() == long
    assert 6 + bar.fontMetrics().horizontalAdvance(shown) <= right
    window.state.status.emit("Saved density")
    assert bar.currentMessage() == "Saved density"
