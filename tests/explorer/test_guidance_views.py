"""Classes and guidance in the GUI (issue #22): the brush's class, the Training tab's conditional tick,
the Score-field tab's guided field and the Samplers tab's class and w per panel."""
from __future__ import annotations

import numpy as np

from trainers import densities, grid


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


def test_the_score_field_draws_the_tilted_target_and_says_what_it_is(window):
    sv = window.views["score"]
    window.tabs.setCurrentWidget(sv)
    _labelled(window)
    sv.guide_w.setValue(0.0)
    sv.guide_class.setCurrentIndex(sv.guide_class.findData(1))
    assert sv.show_tilted.isEnabled() and not sv.tilted_img.isVisible() and sv.tilted is None
    sv.show_tilted.setChecked(True)
    t0 = sv.tilted
    n = len(t0.image)
    area = (t0.bounds[1] - t0.bounds[0]) * (t0.bounds[3] - t0.bounds[2]) / n ** 2
    # at w = 0 the tilted target is p(x|c) itself, normalised on the grid
    cond = grid.density_image(window.state.density.conditional(1), t0.bounds, n)
    np.testing.assert_allclose(t0.image, cond, rtol=1e-3, atol=1e-9)
    sv.guide_w.setValue(3.0)
    t3 = sv.tilted
    assert sv.tilted_img.isVisible() and np.allclose(sv.tilted_img.image, t3.image)       # what is drawn
    assert abs(t3.image.sum() * area - 1) < 1e-6 and t3.edge_mass < 1e-6
    assert not np.allclose(t3.image, t0.image, atol=1e-3 * t0.image.max())                # w tilts it
    sv.set_level(1)
    assert sv.tilted is t3 and sv.tilted_img.isVisible()          # σ = 0's picture: kept while the level moves
    text = sv.summary.text()
    assert "tilted target" in text and "w = 3" in text and "NOT draws of it" in text
    assert "tilted target" in sv.plot.titleLabel.text
    sv.show_tilted.setChecked(False)
    assert not sv.tilted_img.isVisible() and "tilted" not in sv.summary.text()


def test_the_score_field_hover_names_the_guided_field(window):
    sv = window.views["score"]
    window.tabs.setCurrentWidget(sv)
    _labelled(window)
    assert "true ∇log p" in sv.show_vectors_at(1.0, 0.5)
    sv.guide_w.setValue(2.0)
    sv.guide_class.setCurrentIndex(sv.guide_class.findData(2))
    txt = sv.show_vectors_at(1.0, 0.5)
    g, pts = sv._guided, sv._grid[0]
    i = int(np.argmin(((pts - [1.0, 0.5]) ** 2).sum(1)))
    assert "true ∇log p" not in txt and "w = 2" in txt and "2: bottom" in txt
    assert f"exact guided (1 + w)∇log p(x|c) − w∇log p(x) = ({g.guided[i, 0]:.3g}, {g.guided[i, 1]:.3g})" in txt
    assert f"exact ∇log p(x|c) = ({g.conditional[i, 0]:.3g}" in txt and "exact ∇log p(x) = (" in txt


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
    # its figures are against p(x|c) and the tilted target, and say so; the unguided panel's against p(x)
    m = sp.metrics_now()
    assert "energy_distance_tilted" in m[0] and "energy_distance_tilted" not in m[1]
    text = sp.panel_text(0)
    assert f"energy dist {m[0]['energy_distance']:.3g} vs p(x|c=bottom)" in text
    assert f"energy dist {m[0]['energy_distance_tilted']:.3g} vs tilted p_w(x|c=bottom), w = 2" in text
    assert "vs p(x) ·" in sp.panel_text(1) and "p(x|c" not in sp.panel_text(1)


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
    qtbot.waitUntil(lambda: lv.guide_box.isVisible(), timeout=60000)
    text = lv.guide_text.toPlainText()
    assert "ED to tilted" in text and "bottom" in text and "exact score" in text
    # the plot: each point is the study's mean over the seeds, its error bar ± the sd over them
    a = lv.w_axis
    assert list(a.results) == ["exact"]                        # no trained model: the exact score's curves only
    r = a.results["exact"]
    for target in ("tilted", "conditional"):
        curve, bars = lv.guide_items[("exact", "ddim", target)]
        rows = [r.row("ddim", w) for w in (0.0, 2.0)]
        np.testing.assert_allclose(curve.getData()[1], [getattr(row, f"to_{target}") for row in rows])
        np.testing.assert_allclose(bars.opts["height"], [2 * getattr(row, f"to_{target}_sd") for row in rows])
        assert all(len(row.per_seed[f"to_{target}"]) == 2 for row in rows)
    assert "tilted target" in lv.tilted_plot.titleLabel.text and "2 seeds" in lv.conditional_plot.titleLabel.text


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
    # the lab's w axis draws the model's curves beside the exact score's, on the same seeds
    lv = window.views["lab"]
    window.tabs.setCurrentWidget(lv)
    for name, cb in lv.sampler_boxes.items():
        cb.setChecked(name == "ddim")
    lv.n.setValue(200)
    lv.seeds.setValue(2)
    lv.guide_ws.setText("0, 2")
    lv.run_guidance()
    qtbot.waitUntil(lambda: lv.guide_box.isVisible(), timeout=60000)
    assert list(lv.w_axis.results) == ["exact", "model"] and ("model", "ddim", "tilted") in lv.guide_items
    model_y = lv.guide_items[("model", "ddim", "conditional")][0].getData()[1]
    np.testing.assert_allclose(model_y, [lv.w_axis.results["model"].row("ddim", w).to_conditional for w in (0.0, 2.0)])
    assert "trained model" in lv.guide_text.toPlainText()
    # the Score-field hover names the model's guided field beside the exact one
    sv = window.views["score"]
    window.tabs.setCurrentWidget(sv)
    sv.guide_w.setValue(1.0)
    sv.guide_class.setCurrentIndex(sv.guide_class.findData(1))
    txt, g = sv.show_vectors_at(2.5, 1.5), sv._guided
    i = int(np.argmin(((sv._grid[0] - [2.5, 1.5]) ** 2).sum(1)))
    assert g.learned is not None and "exact guided (1 + w)∇log p(x|c)" in txt
    assert f"model's guided (1 + w)s_θ(x|c) − w s_θ(x) = ({g.learned[i, 0]:.3g}, {g.learned[i, 1]:.3g})" in txt
