"""Classes and guidance in the GUI (issue #22): the brush's class, the Training tab's conditional tick,
the Score-field tab's guided field and the Samplers tab's class and w per panel."""
from __future__ import annotations

import numpy as np

from trainers import densities


def _labelled(window, name="three_classes"):
    window.state.set_density(densities.preset(name))


def test_the_brush_paints_a_class(window):
    dv = window.views["density"]
    dv.brush_class.setCurrentIndex(dv.brush_class.findData(1))
    dv._on_stroke(np.array([[0.0, 0.0], [1.0, 1.0]]))
    d = window.state.density
    assert d.labelled and "blue" in d.classes and int(d.labels[-1]) == 1


def test_the_training_tab_trains_conditionally_while_ticked(window):
    tv = window.views["training"]
    _labelled(window)
    window.state.update_train(objective="ddpm")
    tv.conditional.setChecked(True)
    assert window.state.train.n_classes == 3
    window.state.update_train(objective="dsm")            # no noise levels: not conditional
    assert window.state.train.n_classes == 0
    window.state.update_train(objective="ncsn")
    assert window.state.train.n_classes == 3
    tv.conditional.setChecked(False)
    assert window.state.train.n_classes == 0


def test_the_score_field_draws_the_guided_field(window):
    sv = window.views["score"]
    window.tabs.setCurrentWidget(sv)
    _labelled(window)
    assert sv.guide_class.count() == 4 and sv.guide_class.isEnabled()
    plain = sv.true_arrows.getData()[0].copy()
    sv.guide_w.setValue(3.0)
    sv.guide_class.setCurrentIndex(sv.guide_class.findData(1))
    assert "Guided on class 1" in sv.summary.text()
    assert len(sv.conditional_arrows.getData()[0]) == len(plain)
    assert not np.allclose(sv.true_arrows.getData()[0], plain)
    window.state.set_density(densities.preset("two_gaussians"))
    assert not sv.guide_class.isEnabled()


def test_a_sampler_panel_guides_on_a_class(window, qtbot):
    sp = window.views["sampler"]
    window.tabs.setCurrentWidget(sp)
    _labelled(window)
    sp.follow_density()
    c = sp.controls[0]
    c.source.setCurrentIndex(c.source.findData("exact"))
    c.guidance.setValue(2.0)
    c.cls.setCurrentIndex(c.cls.findData(2))
    assert window.state.sampler.panels[0]["class"] == 2 and window.state.sampler.panels[0]["guidance"] == 2.0
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=30000)
    assert "class bottom, w = 2" in sp.worker.chains[0].spec.title


def test_the_lab_runs_the_w_axis(window, qtbot):
    lv = window.views["lab"]
    window.tabs.setCurrentWidget(lv)
    _labelled(window)
    for name, cb in lv.sampler_boxes.items():
        cb.setChecked(name == "ddim")
    lv.n.setValue(200)
    lv.seeds.setValue(2)
    lv.guide_ws.setText("0, 2")
    lv.guide_class.setCurrentIndex(lv.guide_class.findData(2))
    lv.run_guidance()
    qtbot.waitUntil(lambda: lv.guide_text.isVisible(), timeout=60000)
    text = lv.guide_text.toPlainText()
    assert "ED to tilted" in text and "bottom" in text


def test_a_labelled_density_shows_its_classes_in_colour(window):
    dv = window.views["density"]
    _labelled(window)
    assert dv.class_dots.isVisible() and len(dv.class_dots.data) == 6
    window.state.set_density(densities.preset("two_gaussians"))
    assert not dv.class_dots.isVisible()


def test_a_panel_autoguides_the_model_with_a_history_snapshot(window, qtbot):
    tv, sp = window.views["training"], window.views["sampler"]
    _labelled(window)
    window.state.update_train(objective="ddpm")
    tv.conditional.setChecked(True)
    tv.start(max_steps=200)
    qtbot.waitUntil(lambda: not tv.is_running() and tv.start_btn.text() == "Start", timeout=60000)
    assert window.state.model is not None and len(window.state.history) >= 1
    window.tabs.setCurrentWidget(sp)
    sp.follow_density()
    c = sp.controls[1]                                   # the DDPM panel, on the model
    c.guide_kind.setCurrentIndex(c.guide_kind.findData("auto"))
    c.cls.setCurrentIndex(c.cls.findData(1))
    c.guidance.setValue(1.0)
    assert window.state.sampler.panels[1]["guide"] == "auto"
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=60000)
    assert "autoguidance class right, w = 1" in sp.worker.chains[1].spec.title
