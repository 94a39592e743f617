"""Score field and samplers, driven like a user: slider, hover, play, step, scrub, divergence."""
from __future__ import annotations

import time

import numpy as np
from PySide6 import QtCore


def test_score_field_draws_true_arrows_and_hover_reads_them(window):
    sv = window.views["score"]
    window.tabs.setCurrentWidget(sv)
    x, y = sv.true_arrows.getData()
    n = sv.grid_n.value()
    assert len(x) == 6 * n * n                      # shaft + 2 barbs per grid point
    text = sv.show_vectors_at(4.0, 0.5)
    assert "true" in text and "learned" not in text  # no model yet


def test_score_field_compares_learned_and_true_over_levels(window, qtbot):
    tv, sv = window.views["training"], window.views["score"]
    window.tabs.setCurrentWidget(sv)
    window.state.update_train(objective="ncsn", n_levels=6)
    tv.start(max_steps=150)
    qtbot.waitUntil(lambda: not tv.is_running(), timeout=30000)
    assert window.state.model is not None
    assert sv.level.maximum() == 5
    labels, times = [], []
    for i in range(6):
        t0 = time.perf_counter()
        sv.level.setValue(i)
        times.append(time.perf_counter() - t0)
        labels.append(sv.level_label.text())
    assert len(set(labels)) == 6
    assert max(times) < 0.5, times                  # interactive
    assert len(sv.model_arrows.getData()[0]) == len(sv.true_arrows.getData()[0])
    assert sv.err_img.isVisible()
    sv.error_mode.setCurrentIndex(sv.error_mode.findData("weighted"))
    assert sv.err_img.image.max() > 0
    text = sv.show_vectors_at(0.0, 4.0)
    assert "learned" in text and "difference" in text
    sv.grid_n.setValue(40)
    assert len(sv.true_arrows.getData()[0]) == 6 * 40 * 40


def _use_exact(sp):
    sp.source.setCurrentIndex(sp.source.findData("exact"))


def test_each_sampler_runs_to_the_end_and_scrubs(window, qtbot):
    sp = window.views["sampler"]
    window.tabs.setCurrentWidget(sp)
    _use_exact(sp)
    assert [p["title"].split(" —")[0] for p in sp.panels] == ["Langevin", "Annealed Langevin", "DDPM"]
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=30000)
    for i, chain in enumerate(sp.worker.chains):
        assert len(chain.frames) == sp.n_frames + 1 and not chain.error
        assert chain.k == chain.spec.sampler.n_steps
    # all chains started from the same particles
    assert all(np.array_equal(c.frames[0], sp.worker.chains[0].frames[0]) for c in sp.worker.chains)
    # the exact-score DDPM chain ends near the density: small energy distance
    metrics = sp.metrics_now()
    ed = float(metrics[2].split("energy dist ")[1].split(" ")[0])
    assert ed < 0.2, metrics
    # scrub
    sp.scrub.setValue(7)
    assert sp.frame == 7
    assert np.array_equal(sp.panels[1]["points"].data(), sp.worker.chains[1].frames[7])
    assert np.array_equal(sp.frame_positions(1), sp.worker.chains[1].frames[7])
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Right)          # Right = one step forward
    assert sp.frame == 8
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Left)
    assert sp.frame == 7


def test_space_plays_the_animation_and_pauses_it(window, qtbot):
    sp = window.views["sampler"]
    _use_exact(sp)
    window.tabs.setCurrentWidget(sp)
    sp.play_btn.setFocus()
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    assert sp.playing
    qtbot.waitUntil(lambda: sp.frame >= 5, timeout=20000)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    assert not sp.playing
    f = sp.frame
    qtbot.wait(100)
    assert sp.frame == f


def test_a_diverging_chain_stops_with_a_message_and_the_others_go_on(window, qtbot):
    sp = window.views["sampler"]
    _use_exact(sp)
    messages = []
    window.state.status.connect(messages.append)
    sp.langevin_eps.setValue(5.0)                  # ε ≫ σ² of the modes: x ← x(1 − ε/σ²) explodes
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.available() == sp.n_frames + 1, timeout=30000)
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=5000)
    lang, ann, ddpm = sp.worker.chains
    assert "diverged" in lang.error and "smaller step" in lang.error
    assert not ann.error and not ddpm.error
    assert "diverged" in sp.panels[0]["plot"].titleLabel.text
    assert any("diverged" in m for m in messages)
    assert "diverged" in window.statusBar().currentMessage() or any("diverged" in m for m in messages)


def test_sampler_uses_the_trained_model_when_it_has_one(window, qtbot):
    tv, sp = window.views["training"], window.views["sampler"]
    window.state.update_train(objective="ddpm")
    tv.start(max_steps=100)
    qtbot.waitUntil(lambda: not tv.is_running(), timeout=30000)
    sp.restart()
    titles = [p["title"] for p in sp.panels]
    assert titles[2] == "DDPM — model"
    assert "model" in titles[0]
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=30000)


def test_unchecking_samplers_runs_and_shows_only_the_chosen_one(window, qtbot):
    sp = window.views["sampler"]
    _use_exact(sp)
    sp.chain_boxes["langevin"].setChecked(False)
    sp.chain_boxes["annealed"].setChecked(False)
    assert window.state.sampler.chains == ["ddpm"]
    assert len(sp.worker.chains) == 1 and sp.worker.chains[0].spec.title.startswith("DDPM")
    assert len(sp.plots.ci.items) == 2                       # one particle panel + its histogram
    sp.chain_boxes["ddpm"].setChecked(False)                 # the last one cannot be switched off
    assert sp.chain_boxes["ddpm"].isChecked() and window.state.sampler.chains == ["ddpm"]
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=30000)
    sp.chain_boxes["langevin"].setChecked(True)
    assert [c.spec.title.split(" —")[0] for c in sp.worker.chains] == ["Langevin", "DDPM"]
    assert len(sp.plots.ci.items) == 4


def test_every_control_explains_itself_in_a_tooltip(window):
    from PySide6 import QtWidgets

    kinds = (QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox, QtWidgets.QAbstractButton, QtWidgets.QSlider)
    missing = []
    for key in ("density", "training", "score", "sampler"):
        for w in window.views[key].findChildren(QtWidgets.QWidget):
            if isinstance(w, kinds) and not isinstance(w, QtWidgets.QTabBar) and w.isVisibleTo(window.views[key]) \
                    and not w.toolTip() and w.parent() is not None and not isinstance(w.parent(), QtWidgets.QTabBar):
                missing.append(f"{key}: {type(w).__name__} {getattr(w, 'text', lambda: '')()!r}")
    assert not missing, missing
    sampler = window.views["sampler"]
    assert "√(2ε)" in sampler.langevin_eps.toolTip()
    assert "σᵢ²/σ_L²" in sampler.annealed_eps.toolTip() and "√αᵢ z" in sampler.annealed_eps.toolTip()
