"""Small drawing pieces shared by the views: a fast point cloud item, heat maps, form helpers."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

# Images are indexed img[row = y, col = x] everywhere in the explorer (see trainers/grid.py).
pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

DENSITY_CMAP = pg.colormap.get("viridis")
ERROR_CMAP = pg.colormap.get("inferno")

TRUE_PEN = pg.mkPen(230, 230, 230, 200, width=1.5)
MODEL_PEN = pg.mkPen(255, 80, 60, 230, width=1.5)


class PointsItem(pg.GraphicsObject):
    """N particles as size×size pixel squares whose opacity adds up where they overlap.

    Painting splats the points into a small premultiplied-ARGB image covering the visible part of
    the plot (numpy: device coordinates from the painter's transform, a bincount, a box sum) and
    draws that image once. Measured offscreen here for 10k points: pyqtgraph's ScatterPlotItem
    ~15 ms per panel, QPainter.drawPoints with a 2-px pen ~4.4 ms, this ~1.5 ms — and overlapping
    particles show as denser colour, which a plain scatter does not.
    """

    def __init__(self, color=(255, 200, 40), size: int = 2, alpha: int = 120):
        super().__init__()
        self._xy = np.zeros((0, 2))
        self._rect = QtCore.QRectF()
        self.tag = None                 # what the data shows (a frame number); `painted` records it
        self.painted: list = []         # tags actually painted, for frame-rate measurements
        self.record_paints = False
        self._size, self._lut, self._cap = _splat_style(color, size, alpha)

    def set_style(self, color, size: int = 2, alpha: int = 120):
        self._size, self._lut, self._cap = _splat_style(color, size, alpha)
        self.update()

    def setData(self, xy: np.ndarray | None):
        self.prepareGeometryChange()
        xy = np.zeros((0, 2)) if xy is None else np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        finite = np.isfinite(xy).all(1)
        self._xy = xy if finite.all() else xy[finite]
        if len(self._xy):
            lo, hi = self._xy.min(0), self._xy.max(0)
            self._rect = QtCore.QRectF(lo[0], lo[1], max(hi[0] - lo[0], 1e-9), max(hi[1] - lo[1], 1e-9))
        else:
            self._rect = QtCore.QRectF()
        self.update()

    def boundingRect(self):
        return self._rect

    def data(self) -> np.ndarray:
        return self._xy

    def paint(self, p, *args):
        if len(self._xy) == 0:
            return
        t = p.transform()                                   # data → device (scale + translate)
        area = QtCore.QRectF(p.viewport())                  # the whole widget: restrict it to
        view = self.viewRect()                              # the plot's visible data rectangle
        if view is not None:
            area = area.intersected(t.mapRect(view))
        if p.hasClipping():
            area = area.intersected(t.mapRect(p.clipBoundingRect()))
        x0, y0 = int(np.floor(area.left())), int(np.floor(area.top()))
        w, h = int(np.ceil(area.right())) - x0, int(np.ceil(area.bottom())) - y0
        if w <= 0 or h <= 0:
            return
        x, y = self._xy[:, 0], self._xy[:, 1]
        ix = np.floor(t.m11() * x + t.m21() * y + t.dx()).astype(np.int64) - x0
        iy = np.floor(t.m12() * x + t.m22() * y + t.dy()).astype(np.int64) - y0
        s = self._size
        inside = (ix > -s) & (ix < w) & (iy > -s) & (iy < h)
        # counts on a grid padded by s-1 on the low side, then an s×s box sum = s×s squares
        pw, ph = w + s - 1, h + s - 1
        c = np.bincount((iy[inside] + s - 1) * pw + ix[inside] + s - 1, minlength=pw * ph).reshape(ph, pw)
        out = c[s - 1:, s - 1:].copy()
        for dy in range(s):
            for dx in range(s):
                if dy or dx:
                    out += c[s - 1 - dy: s - 1 - dy + h, s - 1 - dx: s - 1 - dx + w]
        buf = self._lut[np.minimum(out, self._cap)]
        img = QtGui.QImage(buf.data, w, h, 4 * w, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
        p.save()
        p.resetTransform()
        p.drawImage(QtCore.QPointF(x0, y0), img)
        p.restore()
        del img, buf
        if self.record_paints and (not self.painted or self.painted[-1] != self.tag):
            self.painted.append(self.tag)


def _splat_style(color, size: int, alpha: int) -> tuple[int, np.ndarray, int]:
    """PointsItem's (square side in pixels, premultiplied-ARGB colour for 0, 1, 2, … overlapping
    points, the overlap count where opacity saturates): opacity adds up by `alpha` per point."""
    cap = int(np.ceil(255 / max(1, int(alpha))))
    a = np.minimum(np.arange(cap + 1, dtype=np.uint32) * int(alpha), 255)
    r, g, b = (int(v) for v in color[:3])
    lut = (a << 24) | ((r * a // 255) << 16) | ((g * a // 255) << 8) | (b * a // 255)
    return max(1, int(size)), lut, cap


def heat_image(cmap=DENSITY_CMAP) -> pg.ImageItem:
    img = pg.ImageItem()
    img.setLookupTable(cmap.getLookupTable(nPts=256))
    img.setZValue(-10)
    return img


def set_heat(img: pg.ImageItem, data: np.ndarray, bounds, levels=None):
    """Show data (row-major, row 0 = ymin) stretched over bounds."""
    xmin, xmax, ymin, ymax = bounds
    if levels is None:
        hi = float(np.nanmax(data)) if np.isfinite(data).any() else 1.0
        levels = (0.0, hi if hi > 0 else 1.0)
    img.setImage(np.nan_to_num(data, nan=0.0), levels=levels, autoLevels=False)
    img.setRect(QtCore.QRectF(xmin, ymin, xmax - xmin, ymax - ymin))


def title_takes_no_width(plot: pg.PlotItem) -> None:
    """Keep `plot`'s title from widening its layout column (pyqtgraph's LabelItem sets its minimum and
    preferred width to its text's): side-by-side plots keep the widths their layout gives them (equal
    panels with a locked aspect; a 1280-px window not pushed wider by a long title). The title keeps
    its height; a title wider than the plot is clipped."""
    label = plot.titleLabel
    update = label.updateMin

    def update_height_only():
        update()
        label.setMinimumWidth(0)
        for k in (QtCore.Qt.SizeHint.MinimumSize, QtCore.Qt.SizeHint.PreferredSize):
            label._sizeHint[k] = (0, label._sizeHint[k][1])
        label.updateGeometry()

    label.updateMin = update_height_only


def square_plot(plot: pg.PlotItem, bounds, title: str | None = None):
    xmin, xmax, ymin, ymax = bounds
    plot.setAspectLocked(True)
    plot.setRange(xRange=(xmin, xmax), yRange=(ymin, ymax), padding=0.02)
    plot.showGrid(x=False, y=False)
    if title is not None:
        plot.setTitle(title)


def arrows_path(origins: np.ndarray, vectors: np.ndarray, head: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """x, y arrays for a PlotDataItem(connect="pairs"): a shaft and two head barbs per arrow."""
    o = origins
    tip = o + vectors
    ang = np.arctan2(vectors[:, 1], vectors[:, 0])
    length = np.linalg.norm(vectors, axis=1) * head
    segs = [o, tip]
    for da in (np.pi * 0.85, -np.pi * 0.85):
        b = tip + np.stack([np.cos(ang + da), np.sin(ang + da)], 1) * length[:, None]
        segs += [tip, b]
    pts = np.stack(segs, 1).reshape(-1, 2)       # [o, tip, tip, barb1, tip, barb2] per arrow
    return pts[:, 0], pts[:, 1]


def tip(widget: QtWidgets.QWidget, text: str) -> QtWidgets.QWidget:
    widget.setToolTip(text)
    return widget


def spin(lo, hi, value, step=None, decimals=None, tooltip="", log=False) -> QtWidgets.QAbstractSpinBox:
    """An int spin box for int bounds, else a double spin box (decimals chosen for small values)."""
    if isinstance(value, int) and decimals is None:
        w = QtWidgets.QSpinBox()
        w.setRange(lo, hi)
        w.setSingleStep(step or 1)
    else:
        w = QtWidgets.QDoubleSpinBox()
        w.setDecimals(decimals if decimals is not None else 4)
        w.setRange(lo, hi)
        w.setSingleStep(step or (hi - lo) / 100)
        if log:
            w.setStepType(QtWidgets.QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
    w.setValue(value)
    w.setKeyboardTracking(False)
    w.setToolTip(tooltip)
    return w


def combo(items, current=None, tooltip="") -> QtWidgets.QComboBox:
    """items: list of (data, label)."""
    w = QtWidgets.QComboBox()
    for data, label in items:
        w.addItem(label, data)
    if current is not None:
        w.setCurrentIndex(max(0, w.findData(current)))
    w.setToolTip(tooltip)
    # Do not let a long item label widen the side panel; the popup still shows it in full.
    w.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    w.setMinimumContentsLength(8)
    w.view().setMinimumWidth(w.view().sizeHintForColumn(0) + 20)
    return w


class SidePanel(QtWidgets.QScrollArea):
    """A tab's settings column: scrolls vertically, never horizontally, and is as wide as its contents
    need (at least `width`), with room kept for the vertical scroll bar: no spin box loses its arrows
    and no row is cut on the right, whatever the window's height."""

    def __init__(self, width: int = 300):
        super().__init__()
        self.base_width = width
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedWidth(width)

    def setWidget(self, widget: QtWidgets.QWidget) -> None:
        super().setWidget(widget)
        widget.installEventFilter(self)
        self.fit_width()

    def wanted_width(self) -> int:
        inner = self.widget()
        need = inner.minimumSizeHint().width() if inner is not None else 0
        bar = self.verticalScrollBar().sizeHint().width()
        return max(self.base_width, need + bar + 2 * self.frameWidth())

    def fit_width(self) -> None:
        w = self.wanted_width()
        if w != self.width() or self.minimumWidth() != w:
            self.setFixedWidth(w)

    def eventFilter(self, obj, ev):
        if obj is self.widget() and ev.type() in (QtCore.QEvent.Type.LayoutRequest, QtCore.QEvent.Type.Show):
            self.fit_width()
        return super().eventFilter(obj, ev)


def side_panel(width: int = 300) -> tuple[QtWidgets.QScrollArea, QtWidgets.QVBoxLayout]:
    inner = QtWidgets.QWidget()
    lay = QtWidgets.QVBoxLayout(inner)
    lay.setContentsMargins(4, 4, 4, 4)
    scroll = SidePanel(width)
    scroll.setWidget(inner)
    return scroll, lay


def form_group(title: str) -> tuple[QtWidgets.QGroupBox, QtWidgets.QFormLayout]:
    box = QtWidgets.QGroupBox(title)
    form = QtWidgets.QFormLayout(box)
    form.setContentsMargins(6, 6, 6, 6)
    form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return box, form


def wrapped_label(text: str = "", rich: bool = False) -> QtWidgets.QLabel:
    """A label that wraps its lines (rich: its text is HTML such as <b>…</b><br>…; else Qt guesses, as QLabel)."""
    label = QtWidgets.QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(QtCore.Qt.TextFormat.RichText if rich else QtCore.Qt.TextFormat.AutoText)
    return label


def progress_rows(form: QtWidgets.QFormLayout, status: str = "") -> tuple[QtWidgets.QProgressBar, QtWidgets.QLabel]:
    """A job's progress bar (0 … 1000) and its status label, added as the next two rows of `form`."""
    bar = QtWidgets.QProgressBar()
    bar.setRange(0, 1000)
    form.addRow(bar)
    label = wrapped_label(status)
    form.addRow(label)
    return bar, label


def readout_group(side: QtWidgets.QVBoxLayout, title: str) -> QtWidgets.QLabel:
    """A group box `title` added to the side panel, holding one rich-text label (showing '—' until set)."""
    box, form = form_group(title)
    label = wrapped_label("—", rich=True)
    form.addRow(label)
    side.addWidget(box)
    return label


def end_side_panel(side: QtWidgets.QVBoxLayout, explanation: str) -> None:
    """Close the side panel: the tab's explanation under its groups, then the stretch that keeps them on top."""
    side.addWidget(wrapped_label(explanation))
    side.addStretch(1)


class FormBinding(QtCore.QObject):
    """Named settings fields bound to their widgets, so a view names each field once.

    Widgets: QSpinBox / QDoubleSpinBox (a number; with `none_at_minimum`, the minimum, shown as the
    box's special-value text, reads as None and None sets the minimum), QComboBox (the current item's
    data; a value no item holds selects the first item), QCheckBox (bool), QLineEdit (str).
    `load` sets widgets with their signals blocked (nothing fires: neither `changed` nor the widgets'
    own signals); `set` sets one as a person would (everything fires). `changed(name, value)` when a
    bound widget changes otherwise."""

    changed = QtCore.Signal(str, object)

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.widgets: dict[str, QtWidgets.QWidget] = {}
        self._none_at_minimum: set[str] = set()

    def add(self, name: str, widget: QtWidgets.QWidget, none_at_minimum: bool = False) -> QtWidgets.QWidget:
        """Bind `widget` to field `name`; returns the widget."""
        if name in self.widgets:
            raise ValueError(f"form field {name!r} is bound twice")
        if isinstance(widget, QtWidgets.QCheckBox):
            signal = widget.toggled
        elif isinstance(widget, QtWidgets.QComboBox):
            signal = widget.currentIndexChanged
        elif isinstance(widget, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
            signal = widget.valueChanged
        elif isinstance(widget, QtWidgets.QLineEdit):
            signal = widget.textChanged
        else:
            raise TypeError(f"form field {name!r}: cannot bind a {type(widget).__name__}")
        self.widgets[name] = widget
        if none_at_minimum:
            self._none_at_minimum.add(name)
        signal.connect(lambda *_, name=name: self.changed.emit(name, self.value(name)))
        return widget

    def value(self, name: str):
        w = self.widgets[name]
        if isinstance(w, QtWidgets.QCheckBox):
            return w.isChecked()
        if isinstance(w, QtWidgets.QComboBox):
            return w.currentData()
        if isinstance(w, QtWidgets.QSpinBox):
            return None if name in self._none_at_minimum and w.value() == w.minimum() else int(w.value())
        if isinstance(w, QtWidgets.QDoubleSpinBox):
            return None if name in self._none_at_minimum and w.value() == w.minimum() else float(w.value())
        return w.text()

    def values(self, names=None) -> dict:
        """{name: value} of every field, or of `names` (in that order)."""
        return {name: self.value(name) for name in (self.widgets if names is None else names)}

    def set(self, name: str, value) -> None:
        """Show `value` in field `name` as a person would: the widget's signals and `changed` fire."""
        w = self.widgets[name]
        if isinstance(w, QtWidgets.QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QtWidgets.QComboBox):
            w.setCurrentIndex(max(0, w.findData(value)))
        elif isinstance(w, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
            w.setValue(w.minimum() if value is None else value)
        else:
            w.setText(str(value))

    def load(self, source) -> None:
        """Show the fields `source` has (a dict's keys, or an object's attributes) without any signal."""
        if isinstance(source, dict):
            found = {name: source[name] for name in self.widgets if name in source}
        else:
            found = {name: getattr(source, name) for name in self.widgets if hasattr(source, name)}
        for name, value in found.items():
            w = self.widgets[name]
            was = w.blockSignals(True)
            try:
                self.set(name, value)
            finally:
                w.blockSignals(was)


def qimage_to_pil(img: QtGui.QImage):
    from PIL import Image

    img = img.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    arr = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return Image.fromarray(arr[:, : w * 3].reshape(h, w, 3).copy())


def from_current_worker(view: QtCore.QObject) -> bool:
    """Is the signal `view` is handling from its current worker (`view.worker`)?

    Every slot fed by a worker starts with this: Qt still delivers the queued signals a worker posted
    before it was disconnected, so a retired worker's progress or failure can arrive after a restart;
    it must not touch the new run's widgets. A direct call (no sender) is not from the worker either."""
    worker = getattr(view, "worker", None)
    return worker is not None and view.sender() is worker


def retire_worker(worker: QtCore.QThread, signals) -> None:
    """Disconnect a worker's signals (so nothing stale reaches the view), cancel it, wait for its
    thread to finish and schedule it for deletion."""
    for sig in signals:
        try:
            sig.disconnect()
        except (RuntimeError, TypeError):     # nothing was connected
            pass
    worker.cancel()
    worker.wait()
    worker.deleteLater()


def process_events_until(done: Callable[[], bool], timeout_s: float) -> bool:
    """Process Qt events until done() or the timeout (demos and tests waiting for a worker)."""
    app = QtWidgets.QApplication.instance()
    t0 = time.perf_counter()
    while not done() and time.perf_counter() - t0 < timeout_s:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.005)
    app.processEvents()
    return done()


class JobTab:
    """Mixin for a tab that runs one trainers job at a time in a QThread (the lab, the learned density):
    it needs `self.progress` (0–1000), `self.status` (a label), `self.state` and an `_idle()` that
    re-enables the tab's buttons. `worker` is the current job's thread (None between jobs; the class
    default until the first `_attach`)."""

    worker: QtCore.QThread | None = None

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def _attach(self, worker) -> None:
        """Make `worker` (signals progress, done, cancelled, failed) the tab's current job."""
        worker.progress.connect(self._on_progress)
        worker.done.connect(self._on_done)
        worker.cancelled.connect(self._on_cancelled)
        worker.failed.connect(self._on_failed)
        self.worker = worker
        self.progress.setValue(0)

    def cancel(self):
        if self.is_running():
            self.worker.cancel()

    def stop_worker(self):
        w = self.worker
        if w is None:
            return
        self.worker = None
        retire_worker(w, (w.progress, w.done, w.cancelled, w.failed))
        self._idle()

    def shutdown(self):
        """End the tab's job before the window closes (cancel it and wait for its thread)."""
        self.stop_worker()

    def _on_cancelled(self):
        if from_current_worker(self):
            self._idle()
            self.progress.setValue(0)
            self.status.setText("Cancelled.")

    def _on_failed(self, msg: str):
        if from_current_worker(self):
            self._idle()
            self.status.setText(f"<span style='color:#c33'>{msg}</span>")
            self.state.status.emit(msg)

    def wait(self, timeout_s: float = 120.0) -> bool:
        """Process events until the job is finished (demo and tests)."""
        return process_events_until(lambda: not self.is_running(), timeout_s)


def fit_status(bar: QtWidgets.QStatusBar, message: str, permanent=()) -> str:
    """`message` elided ("…") to the room left of the status bar's permanent widgets (a long message
    would otherwise run into them); the full text becomes the bar's tooltip."""
    shown = [w for w in permanent if w.isVisible()]
    right = min((w.x() for w in shown), default=bar.width()) - 16
    bar.setToolTip(message)
    return bar.fontMetrics().elidedText(message, QtCore.Qt.TextElideMode.ElideRight, max(40, right))
