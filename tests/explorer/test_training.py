"""Live training: the loss falls while the GUI draws it; objectives switch cleanly; a diverging run says
what to change; a retired worker's late signals are ignored."""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore


def test_training_loss_falls_and_the_gui_draws_it_while_it_runs(window, qtbot):
    # (how responsive the GUI stays while training: benchmarks/bench_gui_responsiveness.py)
    tv = window.views["training"]
    window.tabs.setCurrentWidget(tv)
    window.state.update_train(objective="dsm", sigma=0.5)
    seen = []                                 # steps recorded, as a GUI-thread timer sees them
    timer = QtCore.QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: seen.append(len(tv.loss_history()[0])))
    timer.start()
    tv.start_btn.click()
    assert tv.is_running()
    qtbot.waitUntil(lambda: len(tv.loss_history()[0]) >= 600, timeout=30000)
    timer.stop()
    tv.start_btn.click()                      # pause
    assert tv.worker.paused
    steps, losses = tv.loss_history()
    assert np.array_equal(steps, np.arange(1, len(steps) + 1))      # every step once, in order
    assert losses[-100:].mean() < 0.8 * losses[:20].mean()
    # the GUI thread ran between the worker's progress reports: it saw the curve grow step by step
    assert len(set(seen)) >= 3, sorted(set(seen))
    # the GUI got weight snapshots and the Fisher divergence curve
    assert window.state.model is not None and window.state.model_settings.objective == "dsm"
    qtbot.waitUntil(lambda: len(tv._fisher) >= 2, timeout=5000)
    tv.start_btn.click()                      # resume
    assert not tv.worker.paused
    tv.reset()
    assert not tv.is_running() and window.state.model is None


def test_switching_objective_mid_session_restarts_training_cleanly(window, qtbot):
    tv = window.views["training"]
    window.state.update_train(objective="dsm")
    tv.start()
    qtbot.waitUntil(lambda: len(tv.loss_history()[0]) >= 50, timeout=20000)
    tv.objective.setCurrentIndex(tv.objective.findData("ddpm"))       # as a user would
    assert window.state.train.objective == "ddpm"
    assert tv.is_running() and tv.worker.settings.objective == "ddpm"
    assert len(tv.loss_history()[0]) < 50                             # the old curve is gone
    qtbot.waitUntil(lambda: window.state.model_settings is not None
                    and window.state.model_settings.objective == "ddpm", timeout=20000)
    steps, _ = tv.loss_history()
    assert steps[0] == 1                                              # a fresh run, no stale mix
    # the score view now slides over DDPM timesteps
    sv = window.views["score"]
    assert sv.level.maximum() == window.state.train.n_timesteps - 1
    tv.stop()


def test_changing_the_density_while_training_restarts_on_the_new_density(window, qtbot):
    tv = window.views["training"]
    window.state.update_train(objective="ssm")
    tv.start()
    qtbot.waitUntil(lambda: len(tv.loss_history()[0]) >= 30, timeout=20000)
    old_worker = tv.worker
    window.views["density"].load_preset("two_moons")
    assert tv.worker is not old_worker and tv.worker.density is window.state.density
    assert old_worker.isFinished()
    qtbot.waitUntil(lambda: len(tv.loss_history()[0]) >= 10, timeout=20000)
    tv.stop()


def test_a_diverging_learning_rate_stops_training_and_says_which_setting_to_change(window, qtbot):
    tv = window.views["training"]
    window.state.update_train(objective="dsm", lr=1e6)       # the loss is inf by the second step
    messages = []
    window.state.status.connect(messages.append)
    tv.start()
    qtbot.waitUntil(lambda: not tv.is_running(), timeout=30000)
    qtbot.waitUntil(lambda: tv.start_btn.text() == "Start", timeout=5000)
    steps, _ = tv.loss_history()
    assert len(steps) < 10                                    # it stopped by itself, at once
    expected = (f"Training diverged at step {len(steps) + 1} (the loss became nan or inf): "
                "lower the Learning rate (now 1e+06) or raise DSM σ (now 0.3), then press Start.")
    assert tv.failure == expected
    assert tv.info.text().endswith(f"{expected}</span>")
    assert messages[-1] == expected and window.statusBar().currentMessage() == expected
    assert window.isVisible()


def test_stale_signals_from_a_retired_training_worker_are_ignored(window, qtbot, queue_stale):
    tv = window.views["training"]
    window.state.update_train(objective="dsm")
    tv.start()
    qtbot.waitUntil(lambda: len(tv.loss_history()[0]) >= 5, timeout=20000)
    old = tv.worker
    messages = []
    window.state.status.connect(messages.append)
    # posted by the worker before the restart; Qt delivers them after it
    queue_stale(old.failed, tv._on_failed, "stale: training stopped")
    queue_stale(old.progress, tv._on_progress, {"steps": np.array([99999]), "losses": np.array([123.0]), "rate": 1.0})
    queue_stale(old.metric, tv._on_metric, {"step": 99999, "fisher": 77.0, "label": "stale"})
    queue_stale(old.finished, tv._on_finished)
    tv.restart("settings changed")
    new = tv.worker
    assert new is not old
    qtbot.waitUntil(lambda: len(tv.loss_history()[0]) >= 5, timeout=20000)     # events delivered meanwhile
    steps, losses = tv.loss_history()
    assert 99999 not in steps and 123.0 not in losses
    assert 77.0 not in tv._fisher
    assert tv.failure == "" and "stale" not in tv.info.text()
    assert not any("stale" in m or "Training stopped" in m for m in messages), messages
    assert tv.worker is new and tv.is_running() and tv.start_btn.text() == "Pause"
    tv.stop()


def test_the_objective_combo_and_method_rows_come_from_the_methods_registry(window):
    from trainers.methods import METHODS

    tv = window.views["training"]
    combo = [tv.objective.itemData(i) for i in range(tv.objective.count())]
    assert combo == list(METHODS)
    assert tv.objective.itemText(combo.index("ncsn")) == "ncsn — " + METHODS["ncsn"].short
    window.state.update_train(objective="ddpm")
    rows = tv.method_rows["ddpm"]
    assert [s.name for s in rows.specs] == ["schedule", "n_timesteps", "ddpm_weighting", "ddpm_variance"]
    assert all(not tv.method_rows[n].layout.isRowVisible(w) for n in ("ncsn", "dsm")
               for w in tv.method_rows[n].widgets.values())
    assert all(rows.layout.isRowVisible(w) for w in rows.widgets.values())
    rows.binding.set("n_timesteps", 300)                                  # as a user would
    assert window.state.train.n_timesteps == 300
    rows.binding.set("ddpm_weighting", "elbo")
    assert window.state.train.ddpm_weighting == "elbo"
    window.state.update_train(objective="esm")
    assert tv.no_params.isVisibleTo(tv)


def test_a_new_method_gets_a_combo_entry_and_its_own_rows(qtbot, state):
    """A method registered in one place (a parameter ToyConfig lacks: kept in ToyConfig.extra)."""
    from dataclasses import dataclass

    from explorer.views.training import TrainingView
    from trainers.methods import DSM, METHODS, register_method
    from trainers.schema import option

    @register_method
    class WeightedDSM(DSM):
        name, short = "wdsm", "weighted DSM"

        @dataclass
        class Params:
            sigma: float = option(0.1, "DSM σ", "noise std σ", lo=0.001, hi=20.0)
            weight_power: float = option(2.0, "Weight power p", "λ(σ) = σ^p", lo=0.0, hi=4.0, step=0.5)
    try:
        tv = TrainingView(state)
        qtbot.addWidget(tv)
        assert tv.objective.findData("wdsm") >= 0
        tv.objective.setCurrentIndex(tv.objective.findData("wdsm"))
        assert state.train.objective == "wdsm"
        rows = tv.method_rows["wdsm"]
        assert rows.binding.value("weight_power") == 2.0 and rows.binding.value("sigma") == state.train.sigma
        rows.binding.set("weight_power", 1.0)
        assert state.train.extra == {"weight_power": 1.0}
        assert state.train.params().weight_power == 1.0
        tv.stop()
    finally:
        del METHODS["wdsm"]
