"""Score field and samplers, driven like a user: slider, hover, play, step, scrub, divergence."""
from __future__ import annotations

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
    qtbot.waitUntil(lambda: not tv.is_running() and tv.start_btn.text() == "Start", timeout=30000)
    assert window.state.model is not None
    assert sv.level.maximum() == 5
    labels = []
    for i in range(6):                              # (how fast: benchmarks/bench_gui_responsiveness.py)
        sv.level.setValue(i)
        labels.append(sv.level_label.text())
    assert len(set(labels)) == 6
    assert len(sv.model_arrows.getData()[0]) == len(sv.true_arrows.getData()[0])
    assert sv.err_img.isVisible()
    sv.error_mode.setCurrentIndex(sv.error_mode.findData("weighted"))
    assert sv.err_img.image.max() > 0
    text = sv.show_vectors_at(0.0, 4.0)
    assert "learned" in text and "difference" in text
    sv.grid_n.setValue(40)
    assert len(sv.true_arrows.getData()[0]) == 6 * 40 * 40


def _use_exact(sp):
    for i in range(len(sp.active)):
        c = sp.controls[i]
        c.source.setCurrentIndex(c.source.findData("exact"))


def test_four_samplers_run_to_the_end_from_the_same_particles(window, qtbot):
    sp = window.views["sampler"]
    window.tabs.setCurrentWidget(sp)
    _use_exact(sp)
    sp.set_panel(0, "langevin", "exact", steps=40)
    sp.init.setCurrentIndex(sp.init.findData("uniform"))
    assert [p["title"].split(" —")[0] for p in sp.panels] == ["Langevin", "DDPM", "DDIM η=0", "PF-ODE (heun)"]
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=30000)
    chains = sp.worker.chains
    assert len(chains) == 4
    for i, chain in enumerate(chains):
        sampler = chain.spec.sampler
        assert len(chain.frames) == sp.n_frames + 1 and not chain.error
        assert chain.k == sampler.n_steps and chain.nfes[-1] == sampler.nfe
        shown = sp.panel_numbers(i)
        assert (shown["nfe"], shown["nfe_total"], shown["diverged"]) == (sampler.nfe, sampler.nfe, False)
    assert [c.spec.sampler.nfe for c in chains] == [40, 50, 20, 39]
    # every panel started from the same particles
    assert all(np.array_equal(c.frames[0], chains[0].frames[0]) for c in chains)
    # the exact-score DDPM chain ends near the density: small energy distance
    metrics = sp.metrics_now()
    assert metrics[1]["energy_distance"] < 0.2, metrics
    assert abs(sum(metrics[1]["mode_weights"]) - 1) < 1e-6
    assert f"energy dist {metrics[1]['energy_distance']:.3g}" in sp.panel_text(1)    # the number shown
    # scrub
    sp.scrub.setValue(7)
    assert sp.frame == 7 and sp.panel_numbers(3)["nfe"] == chains[3].nfes[7] < chains[3].nfes[-1]
    assert np.array_equal(sp.panels[1]["points"].data(), chains[1].frames[7])
    assert np.array_equal(sp.frame_positions(1), chains[1].frames[7])
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Right)          # Right = one step forward
    assert sp.frame == 8
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Left)
    assert sp.frame == 7
    # Gaussian start: the same z through each sampler's matched prior N(m, C + σ₀²I) (VP: times √ᾱ₀)
    import torch
    from trainers import samplers
    sp.init.setCurrentIndex(sp.init.findData("gaussian"))
    ss = window.state.sampler
    z = samplers.initial_particles(ss.n_particles, "gaussian", window.state.bounds, torch.Generator().manual_seed(ss.seed))
    for c in sp.worker.chains:
        assert np.allclose(c.frames[0], samplers.prior_sample(c.spec.sampler, z).numpy(), atol=1e-4)
    pf = sp.worker.chains[3]
    assert pf.spec.sampler.prior_std > 3                                           # PF-ODE starts at σ_max
    se = pf.spec.sampler.prior_std / len(z) ** 0.5
    assert np.all(np.abs(pf.frames[0].mean(0) - window.state.density.mean().numpy()) < 4 * se)   # centred on m
    # exact start: the exact-score panels draw p_σ₀ itself
    sp.init.setCurrentIndex(sp.init.findData("exact"))
    assert not np.allclose(sp.worker.chains[3].frames[0], pf.frames[0])


def test_flow_lines_draw_whole_paths_of_deterministic_samplers(window, qtbot):
    from explorer.views.sampler import FLOW_PARTICLES

    sp = window.views["sampler"]
    _use_exact(sp)
    sp.flow.setChecked(True)
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=30000)
    f = sp.frame
    assert len(sp.panels[3]["trail"].getData()[0]) == FLOW_PARTICLES * (f + 2)     # PF-ODE: frames 0 … f
    assert len(sp.panels[2]["trail"].getData()[0]) == FLOW_PARTICLES * (f + 2)     # DDIM η = 0
    n_trail = sp.trails.value()
    assert len(sp.panels[0]["trail"].getData()[0]) == n_trail * (min(f, 30) + 2)   # annealed: a short trail
    assert window.state.sampler.flow_lines


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
    sp.set_panel(0, "langevin", "exact", steps=40, eps=5.0)   # ε ≫ σ² of the modes: x ← x(1 − ε/σ²) explodes
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.available() == sp.n_frames + 1, timeout=30000)
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=5000)
    lang, *others = sp.worker.chains
    assert "diverged" in lang.error and "smaller step" in lang.error
    assert not any(c.error for c in others)
    assert sp.panel_numbers(0)["diverged"] and not sp.panel_numbers(1)["diverged"]
    assert "diverged" in sp.panel_text(0) and "diverged" not in sp.panel_text(1)
    assert any("diverged" in m for m in messages)


def test_a_ddpm_model_drives_annealed_langevin_and_the_pf_ode_in_one_batch(window, qtbot, monkeypatch):
    import copy

    from explorer.state import build_network
    from trainers.nets import ScoreMLP

    sp = window.views["sampler"]
    cfg = copy.deepcopy(window.state.train)
    cfg.objective = "ddpm"
    net = build_network(cfg)                       # untrained: speed and wiring do not need good weights
    calls = []                                     # rows per network call (sampling goes through infer)
    infer = ScoreMLP.infer
    monkeypatch.setattr(ScoreMLP, "infer", lambda self, batches: calls.append(sum(len(x) for x, _ in batches))
                        or infer(self, batches))
    window.state.set_model(net, cfg, step=1)
    sp.n_panels.setValue(2)
    sp.set_panel(0, "annealed", "model", steps=3, n_levels=5)
    sp.set_panel(1, "pf-ode", "model", steps=10, sigma_min=0.001)
    titles = [p["title"] for p in sp.panels[:2]]
    assert titles == ["Annealed Langevin — DDPM model", "PF-ODE (heun) — DDPM model"]
    a, b = sp.worker.chains
    assert a.spec.sampler.model is b.spec.sampler.model         # one ScoreModel for both panels
    assert a.spec.range_note == "" and "extrapolates" in b.spec.range_note   # σ_min below the schedule's σ₁
    calls.clear()
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=30000)
    assert not a.error and not b.error
    assert a.nfes[-1] == 15 and b.nfes[-1] == 19
    # one forward pass per round: fewer calls than evaluations, some with both chains' particles
    assert len(calls) < 15 + 19 and max(calls) == 2 * window.state.sampler.n_particles
    assert "Outside its training" in sp.panel_text(1) and "Outside" not in sp.panel_text(0)


def test_a_stale_signal_from_a_retired_worker_is_ignored(window, qtbot, queue_stale):
    sp = window.views["sampler"]
    _use_exact(sp)
    old = sp.worker
    messages = []
    window.state.status.connect(messages.append)
    # posted by the worker before the restart, delivered after it
    queue_stale(old.chainFailed, sp._on_chain_failed, 2, "stale: queued chain failure")
    queue_stale(old.failed, sp._on_failed, "stale: queued failure")
    queue_stale(old.framesReady, sp._on_frames, 99)
    sp.restart()
    assert sp.worker is not old
    before = [sp.panel_text(i) for i in range(4)]
    # emitted by the retired worker after the restart (a direct call: its sender is the old worker)
    old.chainFailed.connect(sp._on_chain_failed)
    old.chainFailed.emit(3, "stale: diverged at step 1")
    old.framesReady.connect(sp._on_frames)
    old.framesReady.emit(99)
    assert [sp.panel_text(i) for i in range(4)] == before
    qtbot.wait(50)                                     # the queued ones arrive
    assert not any("stale" in m for m in messages) and "stale" not in sp.note.text()
    assert not any(p.get("error") for p in sp.panels)
    sp.stop_worker()
    frame = sp.frame
    sp.scrub.setValue(5)                               # no worker: nothing to scrub, no error
    assert sp.frame == frame and sp.worker is None


def test_fewer_panels_run_and_show_only_the_chosen_ones(window, qtbot):
    sp = window.views["sampler"]
    _use_exact(sp)
    sp.n_panels.setValue(1)
    assert window.state.sampler.n_panels == 1
    assert len(sp.worker.chains) == 1 and sp.worker.chains[0].spec.title.startswith("Annealed")
    assert len(sp.plots.ci.items) == 2                       # one particle panel + its histogram
    assert not sp.controls[1].isVisibleTo(sp)
    sp.run_to_end()
    qtbot.waitUntil(lambda: sp.frame == sp.n_frames, timeout=30000)
    sp.n_panels.setValue(3)
    assert [c.spec.title.split(" —")[0] for c in sp.worker.chains] == ["Annealed Langevin", "DDPM", "DDIM η=0"]
    assert len(sp.plots.ci.items) == 6


def test_a_panel_shows_only_its_samplers_settings(window):
    from trainers.samplers import SAMPLERS

    sp = window.views["sampler"]
    c = sp.controls[0]
    for name, info in SAMPLERS.items():
        sp.set_panel(0, name, "exact")
        shown = {f for f, w in c.widgets.items() if w.isVisibleTo(c)}
        assert shown == set(info.params), name
        assert info.convention in c.sampler.toolTip()
        assert window.state.sampler.panels[0]["sampler"] == name


def test_every_control_explains_itself_in_a_tooltip(window):
    from PySide6 import QtWidgets

    kinds = (QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox, QtWidgets.QAbstractButton, QtWidgets.QSlider)
    missing = []
    sampler = window.views["sampler"]
    sampler.set_panel(1, "langevin", "exact")
    for key in ("density", "training", "score", "sampler", "lab"):
        for w in window.views[key].findChildren(QtWidgets.QWidget):
            if isinstance(w, kinds) and not isinstance(w, QtWidgets.QTabBar) and w.isVisibleTo(window.views[key]) \
                    and not w.toolTip() and w.parent() is not None and not isinstance(w.parent(), QtWidgets.QTabBar):
                missing.append(f"{key}: {type(w).__name__} {getattr(w, 'text', lambda: '')()!r}")
    assert not missing, missing
    assert "√(2ε)" in sampler.controls[1].widgets["eps"].toolTip()
    assert "σᵢ²/σ_L²" in sampler.controls[0].widgets["eps"].toolTip()
    assert "√αᵢ z" in sampler.controls[0].widgets["eps"].toolTip()
