"""The Learned-density tab (the PF-ODE log-density of the trained model beside the truth, with NLLs) and the
Training tab's loss per noise level, used as a person would: train, open the tab, read the numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import Qt

GRID = 24          # points a side in these tests (the tab's default is 48)


@pytest.fixture(scope="module")
def trained():
    """Real models from trainers.fitting, trained once for the module: {objective: (network, config)}."""
    from explorer.state import default_train_config
    from trainers import densities
    from trainers import fitting

    density = densities.preset(densities.DEFAULT_DENSITY)
    out = {}
    for objective, steps in (("ncsn", 300), ("ddpm", 200)):
        cfg = default_train_config()
        cfg.objective, cfg.width, cfg.steps, cfg.n_timesteps = objective, 64, steps, 50
        model, _ = fitting.train(cfg, density)
        out[objective] = (model, cfg)
    return out


def _with_model(window, trained, objective):
    model, cfg = trained[objective]
    window.state.set_model(model, cfg, cfg.steps)
    view = window.views["learned"]
    view.n_grid.setValue(GRID)
    view.n_steps.setValue(20)
    return view


def test_learned_density_tab_is_the_eighth_tab_with_the_next_shortcut(window):
    view = window.views["learned"]
    assert window.tabs.indexOf(view) == 7
    assert window.tabs.tabText(7) == "Learned density"
    shortcuts = {a.shortcut().toString(): a.text() for a in window.actions()}
    assert shortcuts["Ctrl+8"] == "Learned density"


def test_without_a_model_the_tab_says_so_and_compute_is_off(window, qtbot):
    view = window.views["learned"]
    window.tabs.setCurrentWidget(view)
    qtbot.wait(50)
    assert window.state.model is None
    assert "No trained model" in view.model_note.text()
    assert not view.compute_btn.isEnabled() and not view.is_running()
    view.compute()                                     # even called directly: nothing starts
    assert not view.is_running() and view.numbers() == {} and view.grids() == {}


def test_showing_the_tab_computes_the_ncsn_models_density_and_nll(window, qtbot, trained):
    view = _with_model(window, trained, "ncsn")
    assert view.compute_btn.isEnabled() and "NCSN" in view.model_note.text()
    window.tabs.setCurrentWidget(view)                 # auto-compute: the model is new to the tab
    qtbot.waitUntil(view.is_running, timeout=5000)
    assert view.cancel_btn.isEnabled() and not view.compute_btn.isEnabled()
    qtbot.waitUntil(lambda: view.result is not None, timeout=30000)
    n = view.numbers()
    assert math.isfinite(n["model_nll"]) and math.isfinite(n["true_nll"])
    assert n["model_nll"] >= n["true_nll"] - 0.05       # no model beats the truth's own NLL
    assert n["sigma_min"] == pytest.approx(0.05, rel=1e-4) and "neg_elbo" not in n
    grids = view.grids()
    assert {k: g.shape for k, g in grids.items()} == {k: (GRID, GRID) for k in ("model", "true", "difference")}
    assert all(np.isfinite(g).all() for g in grids.values())
    np.testing.assert_allclose(grids["difference"], grids["model"] - grids["true"])
    # the true map is the drawn density's log p_σmin, row 0 = ymin
    from trainers import grid
    truth = window.state.density.noised(n["sigma_min"]).log_prob(grid.grid_points(window.state.bounds, GRID).double())
    np.testing.assert_allclose(grids["true"], truth.numpy().reshape(GRID, GRID), rtol=1e-6)
    assert view.compute_btn.isEnabled() and not view.cancel_btn.isEnabled()
    assert f"{n['model_nll']:.3f}" in view.nll_label.text() and f"{n['true_nll']:.3f}" in view.nll_label.text()
    # shown again with the same model: nothing to recompute
    window.tabs.setCurrentIndex(0)
    window.tabs.setCurrentWidget(view)
    qtbot.wait(50)
    assert not view.is_running()


def test_a_ddpm_model_also_shows_its_elbo_bound(window, qtbot, trained):
    view = _with_model(window, trained, "ddpm")
    view.auto.setChecked(False)
    window.tabs.setCurrentWidget(view)
    qtbot.wait(50)
    assert not view.is_running() and view.result is None        # auto-compute off: waits for Compute
    qtbot.mouseClick(view.compute_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.result is not None, timeout=30000)
    n = view.numbers()
    assert math.isfinite(n["model_nll"]) and n["model_nll"] >= n["true_nll"] - 0.05
    assert math.isfinite(n["neg_elbo"]) and math.isfinite(n["clean_true_nll"])
    assert n["elbo_holds"] is (n["neg_elbo"] >= n["clean_true_nll"]) and n["elbo_holds"]
    assert "−ELBO" in view.nll_label.text() and "holds" in view.nll_label.text()


def test_cancel_keeps_the_previous_result_and_stale_signals_are_ignored(window, qtbot, trained,
                                                                          restart_with_stale_signals):
    view = _with_model(window, trained, "ncsn")
    view.n_grid.setValue(120)                                  # long enough to be still running
    restart_with_stale_signals(view, view.compute)
    qtbot.mouseClick(view.cancel_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not view.is_running(), timeout=20000)
    qtbot.waitUntil(lambda: view.status.text() == "Cancelled.", timeout=5000)
    assert view.result is None and view.compute_btn.isEnabled() and not view.cancel_btn.isEnabled()


def test_training_ncsn_draws_the_loss_per_noise_level_live(window, qtbot):
    training = window.views["training"]
    window.tabs.setCurrentWidget(training)
    assert window.state.train.objective == "ncsn"
    assert training.level_plot in training.plots.ci.items
    training.start(max_steps=200, fresh=True)
    seen = []
    qtbot.waitUntil(lambda: seen.append(len(training.level_curve()[0])) or not training.is_running(),
                    timeout=60000)
    qtbot.wait(200)
    x, y = training.level_curve()
    s = window.state.train
    from trainers import fitting
    sigma_max = float(fitting.noise_levels(s, window.state.density)[0])    # σ₁ by the prior rule (auto)
    assert s.sigma_max == 0 and sigma_max > s.sigma_min
    assert len(x) >= 10 and np.isfinite(y).all() and (y > 0).all()
    assert (x >= s.sigma_min * 0.999).all() and (x <= sigma_max * 1.001).all() and (np.diff(x) > 0).all()
    assert max(seen) > 0 and min(seen) < len(x)            # points arrived while training ran
    xs, ys = training.level_curve_item.getData()
    assert len(xs) == len(x)
    # an objective without noise levels has no such plot
    training.objective.setCurrentIndex(training.objective.findData("esm"))
    assert training.level_plot not in training.plots.ci.items
    training.reset()
    assert len(training.level_curve()[0]) == 0
