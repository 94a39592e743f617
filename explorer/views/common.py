"""Small drawing pieces shared by the views: a fast point cloud item, heat maps, form helpers."""
from __future__ import annotations

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
    """Draws N points as size×size pixel squares with a few QPainter.drawPoints calls.

    pyqtgraph's ScatterPlotItem manages per-point symbols and reached ~20 fps for 3×10k points
    offscreen here. This item fills a QPolygonF in place from numpy. A 1-pixel cosmetic pen draws
    10k points in 0.26 ms, any wider pen in ~4.4 ms (Qt's raster engine strokes each point), so a
    size-s square is s² one-pixel passes shifted by whole device pixels: ~1 ms for 10k at s = 2.
    """

    def __init__(self, color=(255, 200, 40, 170), size: int = 2):
        super().__init__()
        self._poly = QtGui.QPolygonF()
        self._n = 0
        self._rect = QtCore.QRectF()
        self.tag = None                 # what the data shows (a frame number); `painted` records it
        self.painted: list = []         # tags actually painted, for frame-rate measurements
        self.record_paints = False
        self.set_style(color, size)

    def set_style(self, color, size: int):
        pen = QtGui.QPen(QtGui.QColor(*color))
        pen.setWidth(1)
        pen.setCosmetic(True)          # size in pixels, whatever the zoom
        self._pen = pen
        self._offsets = [QtGui.QTransform.fromTranslate(dx, dy) for dx in range(int(size)) for dy in range(int(size))]
        self.update()

    def setData(self, xy: np.ndarray | None):
        self.prepareGeometryChange()
        if xy is None or len(xy) == 0:
            self._n = 0
            self._rect = QtCore.QRectF()
        else:
            xy = np.asarray(xy, dtype=np.float64)
            finite = np.isfinite(xy).all(1)
            if not finite.all():
                xy = xy[finite]
            if len(xy) != self._n:
                self._poly = pg.functions.create_qpolygonf(len(xy))
                self._n = len(xy)
            if self._n:
                pg.functions.ndarray_from_qpolygonf(self._poly)[:] = xy
                lo, hi = xy.min(0), xy.max(0)
                self._rect = QtCore.QRectF(lo[0], lo[1], max(hi[0] - lo[0], 1e-9), max(hi[1] - lo[1], 1e-9))
        self.update()

    def boundingRect(self):
        return self._rect

    def paint(self, p, *args):
        if not self._n:
            return
        p.setPen(self._pen)
        base = p.transform()
        for off in self._offsets:
            p.setTransform(base * off)      # data → device, then a whole-pixel shift in device space
            p.drawPoints(self._poly)
        p.setTransform(base)
        if self.record_paints and (not self.painted or self.painted[-1] != self.tag):
            self.painted.append(self.tag)


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


def side_panel(width: int = 300) -> tuple[QtWidgets.QScrollArea, QtWidgets.QVBoxLayout]:
    inner = QtWidgets.QWidget()
    lay = QtWidgets.QVBoxLayout(inner)
    lay.setContentsMargins(4, 4, 4, 4)
    scroll = QtWidgets.QScrollArea()
    scroll.setWidget(inner)
    scroll.setWidgetResizable(True)
    scroll.setFixedWidth(width)
    scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return scroll, lay


def form_group(title: str) -> tuple[QtWidgets.QGroupBox, QtWidgets.QFormLayout]:
    box = QtWidgets.QGroupBox(title)
    form = QtWidgets.QFormLayout(box)
    form.setContentsMargins(6, 6, 6, 6)
    form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return box, form


def qimage_to_pil(img: QtGui.QImage):
    from PIL import Image

    img = img.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    arr = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return Image.fromarray(arr[:, : w * 3].reshape(h, w, 3).copy())
