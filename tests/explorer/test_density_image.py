"""Image → density (issue 25, item 6): where an image lands does not depend on the density shown
before; a successful load replaces an earlier error in the status bar; a plateau's contours are
one outline, not a mess of tiny loops."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainers import grid
from trainers.densities import GaussianMixture, from_image


def _loops(x: np.ndarray) -> int:
    """Number of separate lines in a NaN-separated contour array."""
    return 0 if len(x) == 0 else int(np.isnan(x).sum()) + 1


def _disc(n: int = 100, r: float = 35.0, ring: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    d = np.hypot(xx - (n - 1) / 2, yy - (n - 1) / 2)     # centred on the image centre
    return ((d < r) & (d >= ring)).astype(float)


def _save(tmp_path, gray, name):
    from PIL import Image

    path = tmp_path / name
    Image.fromarray(((1 - gray) * 255).astype(np.uint8)).save(path)     # ink (dark) = mass
    return str(path)


def test_an_image_lands_in_the_same_place_whatever_was_shown_before(window, tmp_path):
    view, state = window.views["density"], window.state
    ring = _save(tmp_path, _disc(80, 30, 18), "ring.png")
    # before: an off-centre, anisotropic, unequally weighted density with its own far-away bounds
    far = GaussianMixture([0.7, 0.3], [[9.0, 11.0], [12.0, 9.5]], [np.diag([0.5, 0.1]), np.diag([0.2, 0.9])],
                          name="far", bounds=(6.0, 15.0, 6.0, 15.0))
    results = []
    for before in (lambda: view.load_preset("two_gaussians"), lambda: state.set_density(far)):
        before()
        assert view.load_image(ring)
        d = state.density
        results.append((d.weights.numpy(), d.means.numpy(), d.covs.numpy(), state.bounds))
    (w0, m0, c0, b0), (w1, m1, c1, b1) = results
    np.testing.assert_array_equal(m0, m1)
    np.testing.assert_array_equal(w0, w1)
    np.testing.assert_array_equal(c0, c1)
    assert b0 == b1 == (-4.0, 4.0, -4.0, 4.0)
    # a centred ring stays centred at the origin, its outer radius 30/40 of the half-width 4
    assert np.abs(m0.mean(0)).max() < 0.05
    assert abs(np.hypot(*m0.T).max() - 3.0) < 0.15
    # negative control: placing by the previous view (the old rule) moves it
    moved = from_image(_disc(80, 30, 18), bounds=far.bounds)
    assert np.abs(moved.means.numpy().mean(0) - m0.mean(0)).max() > 1.0


def test_an_image_keeps_its_aspect():
    from explorer.views.density import image_bounds, image_density

    assert image_bounds((50, 100)) == (-4.0, 4.0, -2.0, 2.0)
    d = image_density(np.ones((10, 40)), "wide")
    m = d.means.numpy()
    assert m[:, 0].min() < -3.8 and m[:, 0].max() > 3.8 and np.abs(m[:, 1]).max() < 1.0
    assert d.plot_bounds() == (-4.0, 4.0, -4.0, 4.0)


def test_a_successful_load_replaces_the_earlier_error(window, tmp_path, monkeypatch):
    from PySide6 import QtWidgets

    view, state = window.views["density"], window.state
    monkeypatch.setattr(QtWidgets.QMessageBox, "critical", lambda *a, **k: None)
    messages = []
    state.status.connect(messages.append)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert not view.load_image(str(bad))
    assert messages[-1].startswith("Could not load image")
    assert window.statusBar().currentMessage().startswith("Could not load image")
    assert view.load_image(_save(tmp_path, _disc(), "disc.png"))
    assert messages[-1].startswith("Loaded image disc.png:")
    assert not window.statusBar().currentMessage().startswith("Could not")


@pytest.mark.parametrize("name, gray", [("disc", _disc()), ("ring", _disc(ring=22)),
                                        ("ramp", _disc() * np.linspace(0.15, 1.0, 100)[None, :])])
def test_a_plateau_or_ramp_image_has_few_contour_lines(window, qtbot, name, gray):
    """An evenly lit image is a plateau with a ripple of a few per cent (its pixels' Gaussians): the
    highest-density levels fall inside it. The canvas draws at most a handful of lines; the raw
    levels traced on the raw grid (the former drawing) give hundreds of loops (the negative control)."""
    from explorer.views.density import image_density

    state, canvas = window.state, window.views["density"].canvas
    d = image_density(gray, name)
    state.set_density(d)
    qtbot.waitUntil(lambda: not canvas.busy and canvas._shown[0] is d, timeout=30_000)    # drawn off-thread
    drawn = canvas.contours.getData()[0]
    assert 1 <= _loops(drawn) <= 4, _loops(drawn)
    heat = grid.density_image(d, state.bounds, canvas._shown[2].shape[0])
    v = np.sort(heat.ravel())[::-1]
    c = np.cumsum(v) / v.sum()
    raw_levels = sorted({float(v[np.searchsorted(c, f)]) for f in (0.2, 0.4, 0.6, 0.8)})
    assert _loops(grid.contour_lines(heat, state.bounds, raw_levels)[0]) > 50


def test_a_gaussian_mixtures_levels_are_its_highest_density_regions():
    """Off-centre, anisotropic, unequally weighted, well separated: the level holding mass m of a
    component with weight w is w·(1 − m_k)/(2π√det Σ) where m_k solves the mixture's mass budget;
    checked here for one Gaussian (closed form: p = (1 − m)/(2π√det Σ)) and for no flat-level merge
    on the mixture (four distinct levels, as many as asked)."""
    bounds, n = (-6.0, 6.0, -6.0, 6.0), 240
    cov = np.array([[1.0, 0.6], [0.6, 0.8]])
    one = GaussianMixture([1.0], [[0.7, -0.4]], [cov])
    img = grid.smoothed(grid.density_image(one, bounds, n, torch.float64), 1.0)
    levels = grid.contour_levels(img, 4)
    det = np.linalg.det(cov)
    expect = sorted((1 - m) / (2 * math.pi * math.sqrt(det)) for m in (0.2, 0.4, 0.6, 0.8))
    np.testing.assert_allclose(levels, expect, rtol=0.03)
    mix = GaussianMixture([0.6, 0.3, 0.1], [[2.0, 1.0], [-2.5, 0.5], [0.5, -3.0]],
                          [np.diag([0.6, 0.2]), np.diag([0.3, 0.9]), np.eye(2) * 0.4])
    img = grid.smoothed(grid.density_image(mix, bounds, n, torch.float64), 1.0)
    assert len(grid.contour_levels(img, 4)) == 4


def test_smoothing_keeps_the_mass_and_a_constant():
    img = np.random.default_rng(3).uniform(size=(40, 30))
    s = grid.smoothed(img, 1.0)
    assert s.shape == img.shape
    np.testing.assert_allclose(grid.smoothed(np.full((20, 20), 2.5), 1.5), 2.5)
    inner = (slice(5, -5), slice(5, -5))
    assert s[inner].std() < 0.5 * img[inner].std()                 # white noise is damped
