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
    heat = canvas._shown[2]
    full = grid.density_image(state.density, state.bounds, heat.shape[0], torch.float64)
    np.testing.assert_allclose(heat, full, rtol=1e-4, atol=1e-6 * full.max())
    np.testing.assert_allclose(canvas.heat.image, heat)
    # the contours drawn are those of the full recomputation: every point of either within half a
    # pixel of the other (rounding differences of 1e-6 move a line where the density is flat)
    from scipy.spatial import cKDTree

    drawn = np.stack(canvas.contours.getData(), 1)
    from explorer.views.density import CONTOUR_SMOOTH_CELLS

    smooth = grid.smoothed(full, CONTOUR_SMOOTH_CELLS)           # the canvas traces the blurred grid
    expected = np.stack(grid.contour_lines(smooth, state.bounds, grid.contour_levels(smooth, 4)), 1)
    drawn, expected = drawn[np.isfinite(drawn).all(1)], expected[np.isfinite(expected).all(1)]
    pixel = (state.bounds[1] - state.bounds[0]) / heat.shape[0]
    assert len(drawn) > 100
    assert cKDTree(expected).query(drawn)[0].max() < 0.5 * pixel
    assert cKDTree(drawn).query(expected)[0].max() < 0.5 * pixel


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


def test_contours_match_a_reference_tracing_on_a_known_density():
    """An isotropic Gaussian's level line at density p(r₀) is the circle of radius r₀: the traced
    points lie on it to well within a grid cell, and agree with pyqtgraph's own (pure-Python)
    marching squares, the canvas's former routine."""
    import pyqtgraph as pg

    from trainers import grid
    from trainers.densities import GaussianMixture

    sd, bounds, n = 1.0, (-4.0, 4.0, -4.0, 4.0), 160
    d = GaussianMixture([1.0], [[0.0, 0.0]], [np.eye(2) * sd**2])
    img = grid.density_image(d, bounds, n, torch.float64)
    cell = (bounds[1] - bounds[0]) / n
    radii = [0.5, 1.0, 2.0]
    levels = [float(np.exp(-r**2 / (2 * sd**2)) / (2 * np.pi * sd**2)) for r in radii]
    for r, lev in zip(radii, levels):
        x, y = grid.contour_lines(img, bounds, [lev])
        assert np.isnan(x).sum() == 0 and len(x) > 20                  # one closed line
        assert np.hypot(x[0] - x[-1], y[0] - y[-1]) < 1e-9
        assert np.abs(np.hypot(x, y) - r).max() < 0.1 * cell
        # the reference: pyqtgraph.functions.isocurve (its vertices in units of cells from the corner)
        ref = np.concatenate([np.asarray(p) for p in pg.functions.isocurve(img.T, lev, connected=True)])
        ref_xy = bounds[0] + ref * cell
        assert np.abs(np.hypot(ref_xy[:, 0], ref_xy[:, 1]) - r).max() < 0.1 * cell
        # the same crossings: each reference vertex has a traced vertex within 1e-6 of a cell
        gap = np.hypot(ref_xy[:, None, 0] - x[None], ref_xy[:, None, 1] - y[None]).min(1)
        assert gap.max() < 1e-6 * cell and len(x) == len(ref_xy)
    x, y = grid.contour_lines(img, bounds, levels)
    assert np.isnan(x).sum() == len(levels) - 1                         # three lines, NaN-separated


def test_the_samplers_follow_a_burst_of_strokes_once_and_a_hidden_tab_when_shown(window, qtbot, monkeypatch):
    from explorer.views import sampler
    from trainers import grid
    from trainers.densities import Stroke

    state, sp = window.state, window.views["sampler"]
    window.tabs.setCurrentWidget(sp)
    restarts = []
    real_restart = sp.restart
    monkeypatch.setattr(sp, "restart", lambda *a: restarts.append(state.density) or real_restart())
    for y in (-1.0, 0.0, 1.0):                                   # a burst of strokes
        assert state.apply_stroke(Stroke(np.array([[-2.0, y], [2.0, y]]), 0.5, 1.0))
    assert restarts == [] and sp._density_used is not state.density       # nothing on the stroke itself
    qtbot.waitUntil(lambda: sp._density_used is state.density, timeout=10_000)
    assert restarts == [state.density]                          # one reaction to the whole burst
    full = grid.density_image(state.density, state.bounds, sampler.HEAT_N)
    np.testing.assert_allclose(sp.panels[0]["heat"].image, full, rtol=1e-4, atol=1e-6 * full.max())
    xs, truth = sp.panels[0]["truth"].getData()
    np.testing.assert_allclose(truth, grid.marginal_x(state.density, xs))
    assert sp.worker.chains[0].spec.sampler.model.density is state.density   # chains on the new density

    window.tabs.setCurrentWidget(window.views["density"])        # hidden: it waits until shown
    assert state.apply_stroke(Stroke(np.array([[0.0, -3.0], [0.0, 3.0]]), 0.5, 1.0))
    qtbot.wait(2 * sampler.DENSITY_DELAY_MS)
    assert sp._density_used is not state.density
    window.tabs.setCurrentWidget(sp)
    assert sp._density_used is state.density
    full = grid.density_image(state.density, state.bounds, sampler.HEAT_N)
    np.testing.assert_allclose(sp.panels[0]["heat"].image, full, rtol=1e-4, atol=1e-6 * full.max())
