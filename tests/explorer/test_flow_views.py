"""Flow matching in the explorer (issue #21): the Score-field tab's velocity view (exact against learned
at a flow time t, with its error map) and the Training tab's Reflow button (one round in a worker; the
new model replaces the current one and the straightness before and after is shown)."""
from __future__ import annotations

import pytest


@pytest.fixture
def fm_window(window):
    from trainers.fitting import ToyConfig, train
    cfg = ToyConfig(objective="fm", width=32, depth=2, steps=150, batch=128)
    model, _ = train(cfg, window.state.density)
    window.state.update_train(objective="fm", width=32, depth=2)
    window.state.set_model(model, cfg, step=150)
    return window


def test_score_field_tab_draws_exact_and_learned_velocity_at_flow_time_t(fm_window, qtbot):
    sv = fm_window.views["score"]
    fm_window.tabs.setCurrentWidget(sv)
    sv.field_kind.setCurrentIndex(sv.field_kind.findData("velocity"))
    sv.flow_t.setValue(30)
    assert "t = 0.3" in sv.flow_t_label.text()
    assert "‖v_θ − v‖²" in sv.summary.text()
    pts, true, learned, _ = sv._grid
    assert true.shape == pts.shape and learned is not None and sv.err_img.isVisible()
    assert "exact v" in sv.show_vectors_at(0.0, 0.0)
    sv.field_kind.setCurrentIndex(sv.field_kind.findData("score"))
    assert "‖s_θ − ∇log p‖²" in sv.summary.text()


def test_reflow_button_runs_one_round_and_replaces_the_model(fm_window, qtbot):
    tv = fm_window.views["training"]
    before = fm_window.state.model
    assert tv.reflow_btn.isEnabled()
    tv.reflow_steps, tv.reflow_pairs, tv.reflow_nfe = 50, 300, 8        # small: a test, not a demonstration
    tv.reflow_btn.click()
    qtbot.waitUntil(lambda: fm_window.state.model is not before, timeout=60000)
    assert fm_window.state.model_settings.objective == "fm"
    assert "straightness" in tv.info.text()
    fm_window.state.update_train(objective="ncsn")
    fm_window.state.set_model(None, None)
    assert not tv.reflow_btn.isEnabled()


def test_training_a_flow_model_shows_its_straightness_live(window, qtbot):
    tv = window.views["training"]
    window.state.update_train(objective="fm", width=32, depth=2)
    tv.start()
    qtbot.waitUntil(lambda: len(tv._fisher) >= 1, timeout=30000)
    tv.stop()
    assert "straightness of the flow" in tv.fisher_plot.titleLabel.text
    from trainers.studies.reflow import live_straightness
    from trainers.fitting import ToyConfig
    from trainers.nets import build_model
    assert live_straightness(build_model("mlp", "sigma", 16, 1), ToyConfig(objective="ncsn"), window.state.density) == {}
