"""Issue 25, the first hour of a new user: keys with focus, the wheel over unfocused inputs, Step ▶,
the stale-model warning (after a density change and after reopening a session), the plateau rule with a
fixed dataset, stale texts, equal shared sampler axes and "Save session?" on quit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6 import QtCore, QtGui, QtWidgets

from trainers import densities

from explorer.state import build_network, model_mismatch

Key = QtCore.Qt.Key


def _give_model(state, step: int = 100):
    """A (untrained) network standing for a model trained with the current settings on the current density."""
    model = build_network(state.train)
    model.eval()
    state.set_model(model, state.train, step)
    return model


def _focus(qtbot, window, widget):
    window.activateWindow()
    widget.setFocus(QtCore.Qt.FocusReason.OtherFocusReason)
    qtbot.waitUntil(widget.hasFocus, timeout=2000)


# ---------------------------------------------------------------------------- 1: Step ▶
def test_step_button_advances_one_frame_each_click(window, qtbot):
    sv = window.views["sampler"]
    window.tabs.setCurrentWidget(sv)
    sv.restart()
    assert sv.frame == 0
    for k in (1, 2, 3):
        sv.step_btn.click()                      # `clicked` passes checked=False
        qtbot.waitUntil(lambda: sv.frame == k, timeout=20_000)
    assert sv.frame_label.text().startswith("frame 3/")


# ---------------------------------------------------------------------------- 2: keys with focus
def test_a_focused_slider_moves_with_the_arrow_keys(window, qtbot):
    sf, sv = window.views["score"], window.views["sampler"]
    window.tabs.setCurrentWidget(sf)
    sf.level.setValue(0)
    _focus(qtbot, window, sf.level)
    frame = sv.frame
    qtbot.keyClick(sf.level, Key.Key_Right)
    assert sf.level.value() == 1
    qtbot.keyClick(sf.level, Key.Key_Left)
    assert sf.level.value() == 0
    assert window.tabs.currentWidget() is sf and sv.frame == frame


def test_space_on_a_focused_checkbox_toggles_it_and_does_not_play(window, qtbot):
    sf, sv = window.views["score"], window.views["sampler"]
    window.tabs.setCurrentWidget(sf)
    _focus(qtbot, window, sf.show_model)
    assert sf.show_model.isChecked()
    qtbot.keyClick(sf.show_model, Key.Key_Space)
    assert not sf.show_model.isChecked()
    assert window.tabs.currentWidget() is sf and not sv.playing


def test_the_bare_keys_still_drive_the_sampler_without_a_focused_input(window, qtbot):
    """Negative control: the shortcuts still work where no input claims the key."""
    sv = window.views["sampler"]
    window.tabs.setCurrentWidget(sv)
    sv.restart()
    _focus(qtbot, window, sv.plots)
    qtbot.keyClick(sv.plots, Key.Key_Right)
    qtbot.waitUntil(lambda: sv.frame == 1, timeout=20_000)
    qtbot.keyClick(sv.plots, Key.Key_Space)
    assert sv.playing
    sv.set_playing(False)


# ---------------------------------------------------------------------------- 3: the wheel
def _wheel(widget, notches: int = -1):
    pos = QtCore.QPointF(widget.width() / 2, widget.height() / 2)
    ev = QtGui.QWheelEvent(pos, widget.mapToGlobal(pos), QtCore.QPoint(), QtCore.QPoint(0, 120 * notches),
                           QtCore.Qt.MouseButton.NoButton, QtCore.Qt.KeyboardModifier.NoModifier,
                           QtCore.Qt.ScrollPhase.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(widget, ev)


def test_the_wheel_over_an_unfocused_combo_or_spin_box_changes_nothing(window, qtbot):
    sv = window.views["sampler"]
    window.tabs.setCurrentWidget(sv)
    combo, spin = sv.controls[2].sampler, sv.controls[0].widgets["steps"]
    _focus(qtbot, window, sv.plots)
    before = (combo.currentIndex(), spin.value(), [dict(p) for p in window.state.sampler.panels])
    scroll = combo.parent()
    while not isinstance(scroll, QtWidgets.QScrollArea):
        scroll = scroll.parent()
    bar = scroll.verticalScrollBar()
    bar.setValue(0)
    for w in (combo, spin):
        _wheel(w, -1)
        _wheel(w, -1)
    assert (combo.currentIndex(), spin.value(), window.state.sampler.panels) == before
    assert bar.value() > 0                          # the wheel scrolled the side panel instead
    for w in (combo, spin):
        assert w.focusPolicy() == QtCore.Qt.FocusPolicy.StrongFocus       # a wheel turn takes no focus
    # a spin box a view makes later is covered too
    late = QtWidgets.QSpinBox()
    late.setRange(0, 10)
    combo.parentWidget().layout().addWidget(late)
    late.show()
    QtWidgets.QApplication.processEvents()
    _wheel(late, +1)
    assert late.value() == 0 and late.focusPolicy() == QtCore.Qt.FocusPolicy.StrongFocus
    # negative control: a focused spin box does follow the wheel
    _focus(qtbot, window, spin)
    _wheel(spin, +1)
    assert spin.value() != before[1]


# ---------------------------------------------------------------------------- 4: stale models
def test_model_mismatch_names_the_density_and_the_settings():
    from explorer.state import default_train_config

    eight, two = densities.preset("eight_gaussians"), densities.preset("two_gaussians")
    cfg = default_train_config()
    assert model_mismatch(cfg, eight, cfg, eight) == ""
    assert model_mismatch(cfg, eight, cfg, densities.GaussianMixture.from_dict(eight.to_dict())) == ""
    why = model_mismatch(cfg, eight, cfg, two)
    assert "another density" in why and "eight_gaussians" in why and "two_gaussians" in why
    other = default_train_config()
    other.n_levels = 5
    why = model_mismatch(cfg, eight, other, eight)
    assert "settings" in why and "n_levels 10 → 5" in why and "density" not in why


def _model_views(window):
    return {k: window.views[k] for k in ("sampler", "score", "learned", "history")}


def test_a_density_change_makes_every_model_view_warn_with_a_retrain_button(window, qtbot, monkeypatch):
    state = window.state
    _give_model(state)
    views = _model_views(window)
    for key, v in views.items():
        assert v.stale_banner.text() == "", key
    state.set_density(densities.preset("two_gaussians"))
    for key, v in views.items():
        assert "another density" in v.stale_banner.text(), key
        assert v.stale_banner.retrain_btn.isVisibleTo(v.stale_banner), key
    started = []
    monkeypatch.setattr(window.views["training"], "start", lambda **kw: started.append(kw))
    views["sampler"].stale_banner.retrain_btn.click()
    assert started == [{"fresh": True}]
    state.undo()                                            # back on the density it was trained on
    for key, v in views.items():
        assert v.stale_banner.text() == "", key


def test_the_mismatch_survives_saving_and_reopening_the_session(window, qtbot, tmp_path):
    state = window.state
    _give_model(state)
    state.set_density(densities.preset("two_gaussians"))
    path = window.save_session(str(tmp_path / "s.pt"))
    state.undo()
    assert state.model_mismatch() == ""
    assert window.load_session(path)
    assert "another density" in state.model_mismatch()
    assert state.model_density.name == "eight_gaussians"
    assert "another density" in window.views["sampler"].stale_banner.text()
    # negative control: a session saved with a matching model reopens without a warning
    state.set_model(state.model, state.train, 5)
    window.save_session(str(tmp_path / "ok.pt"))
    assert window.load_session(str(tmp_path / "ok.pt")) and state.model_mismatch() == ""


# ---------------------------------------------------------------------------- 9: fixed dataset
def test_the_plateau_rule_watches_the_training_loss_with_a_fixed_dataset():
    from explorer.workers.training import PlateauRule

    rising_fisher = np.linspace(1.0, 3.0, 50)              # memorising: the divergence grows by design
    falling_loss = np.linspace(2.0, 0.5, 50)
    steps = np.arange(50) * 100
    fixed, fresh = PlateauRule(patience_steps=1000, fixed_data=True), PlateauRule(1000, fixed_data=False)
    stops = {True: None, False: None}
    for rule, key in ((fixed, True), (fresh, False)):
        for st, f, l in zip(steps, rising_fisher, falling_loss):
            rule.update(int(st), fisher=float(f), loss=float(l))
            if rule.stalled(int(st)) and stops[key] is None:
                stops[key] = int(st)
    assert stops[True] is None and "training loss" in fixed.reason()
    assert stops[False] == 1000 and "Fisher divergence" in fresh.reason()     # negative control


def test_the_score_field_finds_the_training_set_without_measuring(window, qtbot):
    sf = window.views["score"]
    _give_model(window.state)
    assert "No training set" in sf.status.text()
    window.state.update_train(n_data=20)
    assert "No training set" not in sf.status.text()
    assert sf.measure_btn.isEnabled()


def test_a_stale_models_training_points_come_from_the_density_it_was_trained_on(window):
    from trainers import fitting

    state, sf = window.state, window.views["score"]
    state.update_train(n_data=20)
    eight = state.density
    _give_model(state)
    state.set_density(densities.preset("two_gaussians"))
    points = sf.training_points()
    assert torch.equal(points, fitting.training_data(state.model_settings, eight)[1])
    assert not torch.equal(points, fitting.training_data(state.model_settings, state.density)[1])   # control


# ---------------------------------------------------------------------------- 10: stale texts
def test_training_on_a_fixed_dataset_stops_on_its_loss_and_says_so(window, qtbot):
    tv = window.views["training"]
    window.state.update_train(objective="dsm", sigma=0.5, lr=1e-5, n_data=20, batch=32)   # lr too small to make progress
    tv.patience.setValue(100)
    tv.start()
    qtbot.waitUntil(lambda: not tv.is_running() and tv.start_btn.text() == "Start", timeout=60_000)
    assert "training loss (fixed dataset) has not improved by 1% for 100 steps" in tv.stop_reason



def test_a_failed_start_leaves_no_stale_progress_texts(window, qtbot, tmp_path):
    tab = window.views["image_runs"]
    tab.config.setCurrentText("no_such_config_xyz")
    tab.out_edit.setText(str(tmp_path / "run"))
    tab.estimate_label.setText("measuring the first steps …")      # as a start event leaves it
    tab.stats["eta_s"].setText("3m 10s")
    assert tab.start()
    qtbot.waitUntil(lambda: not tab.is_running() and not tab.start_btn.isHidden()
                    and tab.start_btn.isEnabled(), timeout=60_000)
    assert "measuring" not in tab.estimate_label.text()
    assert tab.stats["eta_s"].text() == "–"
    assert "step 0 / 1" not in tab.progress.text()


def test_the_auto_run_folder_follows_the_config(window):
    tab = window.views["image_runs"]
    tab.config.setCurrentText("ddpm_digits")
    auto = tab._run_folder("ddpm_digits")
    assert auto.name.startswith("ddpm_digits-")
    tab.config.setCurrentText("ncsn_digits")
    assert tab._run_folder("ncsn_digits").name.startswith("ncsn_digits-")
    tab.out_edit.setText("/tmp/my-own-folder")          # a folder the user chose stays
    tab.config.setCurrentText("ddpm_digits")
    assert tab.out_edit.text() == "/tmp/my-own-folder"


def test_the_close_dialog_says_the_step_the_bar_shows(window):
    tab = window.views["image_runs"]
    tab._reset_live()
    tab._on_progress([{"step": 50, "loss": 1.0, "total_steps": 100}, {"event": "done"}], False)
    assert tab.progress.value() == 100                      # the bar is full
    text = tab.close_question_text()
    assert "100 steps" in text and "step 50" not in text and "still training" not in text
    tab._on_progress([{"step": 60, "loss": 1.0, "total_steps": 100}], True)
    assert "still training (step 60 / 100)" in tab.close_question_text()


def test_one_component_is_singular(window):        # fixed by gui-2 (density.py); kept as a check
    window.state.set_density(densities.GaussianMixture.from_dict(
        {"kind": "gmm", "components": [{"weight": 1.0, "mean": [0.5, -1.0], "cov": [[1.0, 0.2], [0.2, 0.5]]}]}))
    window.views["density"].refresh()
    assert "1 components" not in window.views["density"].info.text()


# ---------------------------------------------------------------------------- shared sampler axes
def test_sampler_panels_share_equal_axes(window, qtbot):
    sv = window.views["sampler"]
    window.tabs.setCurrentWidget(sv)
    sv.restart()
    sv.run_to_end()
    qtbot.waitUntil(lambda: sv.frame == sv.n_frames, timeout=60_000)
    plots = [sv.panels[i]["plot"] for i in sv.active]
    assert len(plots) == 4
    sv.panels[sv.active[1]]["title"] = "A sampler with a long name — and a long score source"   # on two lines
    sv.show_frame(sv.frame)
    QtWidgets.QApplication.processEvents()
    assert len({round(p.vb.height(), 3) for p in plots}) == 1 and len({round(p.vb.width(), 3) for p in plots}) == 1
    first = np.array(plots[0].vb.viewRange())
    for p in plots[1:]:
        assert np.allclose(np.array(p.vb.viewRange()), first, atol=1e-6)
    xmin, xmax, ymin, ymax = window.state.bounds          # the whole density is in view
    assert first[0][0] <= xmin and first[0][1] >= xmax and first[1][0] <= ymin and first[1][1] >= ymax
    for i in sv.active:                                   # histograms keep their baseline at 0
        assert sv.panels[i]["hist_plot"].vb.viewRange()[1][0] == pytest.approx(0.0, abs=1e-9)
    plots[2].vb.setRange(xRange=(-3.0, 1.0), yRange=(-2.0, 2.0), padding=0)       # zoom one panel
    QtWidgets.QApplication.processEvents()
    zoomed = np.array(plots[2].vb.viewRange())
    for p in plots:
        assert np.allclose(np.array(p.vb.viewRange()), zoomed, atol=1e-6)


# ---------------------------------------------------------------------------- Save session? on quit
def test_quit_with_an_unsaved_model_asks_and_obeys(window, qtbot, monkeypatch, tmp_path):
    _give_model(window.state)
    asked = []

    def answer(choice):
        def ask():
            asked.append(choice)
            return choice
        monkeypatch.setattr(window, "ask_save_choice", ask)

    answer("cancel")
    _focus(qtbot, window, window.views["density"])
    qtbot.keyClick(window, Key.Key_Q, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert asked == ["cancel"] and window.isVisible()
    answer("save")
    path = tmp_path / "quit.pt"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    assert window.close()
    assert asked[-1] == "save" and path.exists()


def test_quit_without_anything_to_lose_does_not_ask(window, monkeypatch, tmp_path):
    monkeypatch.setattr(window, "ask_save_choice", lambda: pytest.fail("asked without a model"))
    assert window.close()                           # no model
    window.show()
    _give_model(window.state)
    window.save_session(str(tmp_path / "saved.pt"))
    assert window.close()                           # the model is saved


def test_discard_closes_and_the_box_offers_three_answers(window, monkeypatch):
    _give_model(window.state)
    box = window.save_question()
    names = {b.text().replace("&", "") for b in box.buttons()}
    assert {"Save", "Discard", "Cancel"} <= names or len(box.buttons()) == 3
    discard = box.button(QtWidgets.QMessageBox.StandardButton.Discard)
    discard.click()
    assert box.property("choice") == "discard"
    monkeypatch.setattr(window, "ask_save_choice", lambda: "discard")
    assert window.close()
