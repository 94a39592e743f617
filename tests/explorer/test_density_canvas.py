"""Acting as a user on the Density tab: mouse strokes, erase, undo/redo, presets, clear."""
from __future__ import annotations

import numpy as np
import torch
from PySide6 import QtCore


def _viewport_pos(canvas, x, y) -> QtCore.QPoint:
    scene = canvas.plotItem.vb.mapViewToScene(QtCore.QPointF(x, y))
    return canvas.mapFromScene(scene)


def _drag(qtbot, canvas, pts):
    vp = canvas.viewport()
    first = _viewport_pos(canvas, *pts[0])
    qtbot.mousePress(vp, QtCore.Qt.MouseButton.LeftButton, pos=first)
    for p in pts[1:]:
        qtbot.mouseMove(vp, _viewport_pos(canvas, *p))
    qtbot.mouseRelease(vp, QtCore.Qt.MouseButton.LeftButton, pos=_viewport_pos(canvas, *pts[-1]))


def _p(state, x, y) -> float:
    return float(torch.exp(state.density.log_prob(torch.tensor([[x, y]], dtype=torch.float64)))[0])


def test_drawing_a_stroke_adds_mass_along_it(window, qtbot):
    state, view = window.state, window.views["density"]
    before_k, before_p = state.density.n_components, _p(state, 0.0, 0.0)
    _drag(qtbot, view.canvas, [(-1.0, 0.0), (-0.5, 0.0), (0.0, 0.0), (0.5, 0.0), (1.0, 0.0)])
    assert state.density.n_components > before_k
    assert _p(state, 0.0, 0.0) > 100 * before_p + 1e-3      # the empty centre now holds mass
    # the heat map shows the new density (its centre pixel is no longer dark)
    img = view.canvas.heat.image
    n = img.shape[0]
    assert img[n // 2, n // 2] > 0.1 * img.max()


def test_erase_removes_components_and_undo_redo_restore_them(window, qtbot):
    state, view = window.state, window.views["density"]
    original = state.density
    view.erase_btn.setChecked(True)
    view.size.setValue(1.5)
    _drag(qtbot, view.canvas, [(3.8, -0.2), (4.0, 0.0), (4.2, 0.2)])      # the mode at (4, 0)
    assert state.density.n_components == original.n_components - 1
    assert _p(state, 4.0, 0.0) < 0.01 * _p(state, -4.0, 0.0)
    view.undo_btn.click()
    assert state.density is original
    view.redo_btn.click()
    assert state.density.n_components == original.n_components - 1


def test_clear_then_paint_makes_the_stroke_the_whole_density(window, qtbot):
    state, view = window.state, window.views["density"]
    view.clear_btn.click()
    _drag(qtbot, view.canvas, [(-2.0, -2.0), (0.0, 0.0), (2.0, 2.0)])
    means = state.density.means.numpy()
    assert np.allclose(means[:, 0], means[:, 1], atol=0.3)           # every component lies on the diagonal
    assert state.density.n_components >= 5


def test_choosing_a_preset_replaces_the_density_and_view(window, qtbot):
    view, state = window.views["density"], window.state
    n_items = len(view.canvas.scene().items())
    i = view.preset.findData("two_moons")
    view.preset.setCurrentIndex(i)
    view.preset.activated.emit(i)
    assert state.density.name == "two_moons"
    assert state.bounds == state.density.plot_bounds()
    assert len(view.canvas.scene().items()) == n_items          # old contours are gone, not orphaned
    state.undo()
    assert view.preset.currentData() == "eight_gaussians"      # the combo follows the density


def test_loading_an_image_makes_dark_pixels_mass(window, tmp_path):
    from PIL import Image

    img = np.full((64, 64), 255, np.uint8)
    img[:, 40:48] = 0                        # a dark vertical bar right of centre
    Image.fromarray(img).save(tmp_path / "bar.png")
    assert window.views["density"].load_image(str(tmp_path / "bar.png"))
    means = window.state.density.means.numpy()
    xmin, xmax = window.state.bounds[:2]
    assert np.all(means[:, 0] > xmin + (xmax - xmin) * 0.55)


def test_incremental_canvas_equals_full_recomputation(window, qtbot):
    from trainers import grid
    from trainers.densities import Stroke

    state, view = window.state, window.views["density"]
    canvas = view.canvas
    strokes = [Stroke(np.array([[-3.0, -3.0], [3.0, 3.0]]), 0.6, 2.0),
               Stroke(np.array([[0.0, -4.0], [0.0, 4.0]]), 0.4, 1.0),
               Stroke(np.array([[-1.0, -1.0], [1.0, 1.0]]), 1.0, erase=True),
               Stroke(np.array([[4.0, 0.0]]), 1.5, erase=True),
               Stroke(np.array([[-4.0, 2.0], [4.0, 2.0]]), 0.3, 0.5)]
    for st in strokes:
        assert state.apply_stroke(st)
        assert canvas.last_update == "incremental"
    state.undo(), state.undo()                  # undo a stroke and an erasure: incremental too
    assert canvas.last_update == "incremental"
    state.redo()
    assert canvas.last_update == "incremental"
    heat, coarse = canvas._shown[2], canvas._shown[3]
    full = grid.density_image(state.density, state.bounds, heat.shape[0], torch.float64)
    np.testing.assert_allclose(heat, full, rtol=1e-4, atol=1e-6 * full.max())
    full_c = grid.density_image(state.density, state.bounds, coarse.shape[0], torch.float64)
    np.testing.assert_allclose(coarse, full_c, rtol=1e-4, atol=1e-6 * full_c.max())
    np.testing.assert_allclose(canvas.heat.image, heat)


def test_large_density_is_recomputed_off_the_gui_thread(window, qtbot):
    from trainers.densities import from_image

    state, view = window.state, window.views["density"]
    old_image = view.canvas.heat.image.copy()
    big = from_image(np.random.default_rng(0).uniform(size=(40, 40)), bounds=state.bounds, name="noise")
    state.set_density(big, reset_view=False)
    assert view.canvas.last_update == "background"
    np.testing.assert_array_equal(view.canvas.heat.image, old_image)      # the old picture stays up
    qtbot.waitUntil(lambda: not view.canvas.busy and view.canvas._shown[0] is big, timeout=30_000)
    assert view.preset.currentText() == "loaded: noise"                  # not the last preset's name
