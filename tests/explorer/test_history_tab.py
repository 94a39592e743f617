"""The History tab and the weight snapshots behind it: snapshots kept during live training (AppState.history),
the slider that loads one, its three pictures (score field, PF-ODE density, samples), and the session file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

STEPS = (10, 100, 200, 300, 400)     # the training steps of the module's snapshots


@pytest.fixture(scope="module")
def run():
    """An NCSN model (width 64, as the window fixture) trained 400 steps on the default density, with
    its weights copied at STEPS: (config, {step: state_dict}). One torch thread, as in the app."""
    from explorer.state import default_train_config
    from trainers import densities
    from trainers import fitting

    density = densities.preset(densities.DEFAULT_DENSITY)
    cfg = default_train_config()
    cfg.width, cfg.n_timesteps = 64, 50
    model, method = fitting.build_model_and_method(cfg, density)
    gen = torch.Generator().manual_seed(1)
    states = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for info in fitting.training_steps(model, method, lambda n: density.sample(n, gen), lr=cfg.lr,
                                       batch=cfg.batch, seed=0):
        if info.step in STEPS:
            states[info.step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if info.step >= STEPS[-1]:
            break
    torch.set_num_threads(threads)
    return cfg, states


def _feed(state, run):
    """Send the snapshots through AppState.set_model, as the Training tab does with live weights."""
    from explorer.state import build_network

    cfg, states = run
    for step, sd in states.items():
        model = build_network(cfg)
        model.load_state_dict(sd)
        model.eval()
        state.set_model(model, cfg, step)


def test_record_keeps_the_newest_weights_and_snapshots_every_n_steps_under_a_cap():
    from trainers.studies.history import SnapshotHistory

    h = SnapshotHistory(every=50, max_snapshots=6)
    arrivals = list(range(7, 2000, 37))                   # weights arrive at uneven steps
    for step in arrivals:
        h.record(step, {"w": torch.tensor([float(step)])})
        assert h.steps[-1] == step and float(h.states[-1]["w"]) == step      # newest = latest weights
        assert h.steps[0] == 7 and len(h.steps) <= 6
        assert all(b - a >= 50 for a, b in zip(h.steps[:-2], h.steps[1:-1]))   # all but the newest gap
        assert all(float(s["w"]) == t for t, s in zip(h.steps, h.states))
    with pytest.raises(ValueError, match="before the newest"):
        h.record(5, {})


def test_snapshots_accumulate_during_live_training_and_respect_the_cap(window, qtbot, monkeypatch):
    from explorer import state as state_module

    monkeypatch.setattr(state_module, "HISTORY_EVERY", 20)
    monkeypatch.setattr(state_module, "HISTORY_CAP", 5)
    s, tv = window.state, window.views["training"]
    seen = []
    s.historyChanged.connect(lambda: seen.append(list(s.history.steps)))
    tv.start(max_steps=400, fresh=True)
    qtbot.waitUntil(lambda: not tv.is_running() and tv.start_btn.text() == "Start", timeout=120000)
    h = s.history
    assert h.every == 20 and h.max_snapshots == 5
    assert max(len(x) for x in seen) <= 5
    assert len({step for x in seen for step in x}) > 5           # more were kept than the cap holds now
    assert 2 <= len(h.steps) <= 5 and h.steps == sorted(h.steps)
    assert h.steps[0] == seen[0][0]                              # the first snapshot stays
    assert h.steps[-1] == s.model_step == 400                     # the newest is the final model
    for k, v in s.model.state_dict().items():
        assert torch.equal(h.states[-1][k], v)
    assert s.history_settings == s.model_settings and s.history_density is s.density
    # the History tab's slider has one position per snapshot
    view = window.views["history"]
    assert view.slider.maximum() == len(h.steps) - 1 and view.selected_step == 400


def test_a_new_run_with_other_settings_or_a_reset_starts_a_new_history(window, run):
    s = window.state
    _feed(s, run)
    assert s.history.steps == list(STEPS)
    cfg, states = run
    other = type(cfg).from_dict({**cfg.to_dict(), "width": 32})
    from explorer.state import build_network
    s.set_model(build_network(other), other, 5)
    assert s.history.steps == [5] and s.history_settings.width == 32
    window.views["training"].reset()
    assert s.history.steps == [] and window.views["history"].model is None


def test_the_slider_loads_exactly_that_snapshots_weights(window, run):
    _, states = run
    s, view = window.state, window.views["history"]
    _feed(s, run)
    assert view.slider.value() == len(STEPS) - 1 and view.selected_step == STEPS[-1]
    for i, step in enumerate(STEPS):
        view.set_index(i)
        assert view.selected_step == step and str(step) in view.step_label.text()
        got = view.model.state_dict()
        assert set(got) == set(states[step])
        for k, v in states[step].items():
            assert torch.equal(got[k], v), (step, k)
    # and not another one's: the early and the late weights differ
    assert any(not torch.equal(states[STEPS[0]][k], states[STEPS[-1]][k]) for k in states[STEPS[0]])


def test_moving_the_slider_redraws_the_three_pictures_and_early_is_worse_than_late(window, qtbot, run):
    s, view = window.state, window.views["history"]
    view.n_grid.setValue(24)
    view.n_particles.setValue(1000)
    _feed(s, run)
    window.tabs.setCurrentWidget(view)
    assert view.settle(120), view.status.text()
    last = view.numbers()
    assert view.shown_step == STEPS[-1] == last["step"]
    late_samples, late_arrows = view.points.data().copy(), view.model_arrows.getData()[0].copy()
    late_img = view.density_img.image.copy()

    view.set_index(0)
    assert view.shown_step == STEPS[-1]            # the old pictures stay until the new ones are ready
    assert view.settle(120), view.status.text()
    first = view.numbers()
    assert view.shown_step == STEPS[0] == first["step"] and view.fisher == first["fisher"]
    # the model after 10 steps is far from the truth; after 400 much closer
    assert first["fisher"] > 2 * last["fisher"], (first, last)
    assert first["gap"] > last["gap"] and last["model_nll"] >= last["true_nll"] - 0.1
    assert first["true_nll"] == pytest.approx(last["true_nll"])   # the same fresh data both times
    # all three pictures changed
    assert view.points.data().shape == (1000, 2) and not np.allclose(view.points.data(), late_samples)
    assert not np.allclose(view.model_arrows.getData()[0], late_arrows)
    assert view.density_img.image.shape == (24, 24) and not np.allclose(view.density_img.image, late_img)
    assert f"{first['fisher']:.4g}" in view.numbers_label.text()


def test_a_stale_request_is_cancelled_when_the_slider_moves_on(window, qtbot, run):
    s, view = window.state, window.views["history"]
    view.n_grid.setValue(24)
    _feed(s, run)
    window.tabs.setCurrentWidget(view)
    assert view.settle(120), view.status.text()
    shown = []
    original = view.show_result
    view.show_result = lambda r: (shown.append(r.step), original(r))
    view.set_index(0)
    qtbot.waitUntil(view.is_running, timeout=5000)
    stale = view.worker
    view.set_index(2)                              # before step 10's pictures are ready
    qtbot.waitUntil(lambda: view.worker is not stale, timeout=5000)
    assert stale._cancel.is_set()
    assert view.settle(120), view.status.text()
    assert view.shown_step == STEPS[2] and shown == [STEPS[2]]   # step 10's pictures never arrived


def test_session_save_and_load_round_trips_the_snapshots(window, tmp_path, run):
    s = window.state
    _feed(s, run)
    saved_steps = list(s.history.steps)
    saved = [{k: v.clone() for k, v in sd.items()} for sd in s.history.states]
    path = window.save_session(str(tmp_path / "s.pt"))
    d = torch.load(path, weights_only=True)               # still tensors and plain values only
    assert d["history"]["snapshots"]["steps"] == saved_steps

    window.views["training"].reset()
    window.views["density"].load_preset("spiral")
    assert s.history.steps == []
    assert window.load_session(path)
    assert s.history.steps == saved_steps and s.history_settings == run[0]
    assert s.history_density is s.density                  # trained on the restored density
    for a, b in zip(s.history.states, saved):
        assert all(torch.equal(a[k], b[k]) for k in b)
    view = window.views["history"]
    view.set_index(1)
    assert view.selected_step == saved_steps[1]
    assert all(torch.equal(view.model.state_dict()[k], v) for k, v in saved[1].items())


def test_an_old_session_without_snapshots_still_loads(window, tmp_path, run):
    s = window.state
    _feed(s, run)
    old = s.to_session()
    del old["history"]
    path = tmp_path / "old.pt"
    torch.save(old, path)
    window.views["training"].reset()
    assert window.load_session(str(path))
    # its model becomes the first snapshot of a new history
    assert s.history.steps == [STEPS[-1]] and s.model_step == STEPS[-1]
    assert all(torch.equal(s.history.states[0][k], v) for k, v in run[1][STEPS[-1]].items())
    no_model = {**old, "model_state": None, "model_settings": None}
    torch.save(no_model, path)
    assert window.load_session(str(path))
    assert s.model is None and s.history.steps == [] and window.views["history"].model is None


def test_a_damaged_history_is_refused_and_leaves_the_session_as_it_was(window, tmp_path, run, monkeypatch):
    from PySide6 import QtWidgets

    shown = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "critical", lambda *a: shown.append(a[2]))
    s = window.state
    _feed(s, run)
    bad = s.to_session()
    bad["history"]["snapshots"]["states"][1] = {"nonsense": torch.zeros(2)}
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    before = list(s.history.steps)
    assert window.load_session(str(path)) is False
    assert shown and "unchanged" in shown[0] and s.history.steps == before


def test_history_tab_has_the_ninth_shortcut(window):
    view = window.views["history"]
    assert window.tabs.tabText(window.tabs.indexOf(view)) == "History"
    shortcuts = {a.shortcut().toString(): a.text() for a in window.actions()}
    assert shortcuts[f"Ctrl+{window.tabs.indexOf(view) + 1}"] == "History" and window.tabs.indexOf(view) == 8


def test_screenshots_of_the_history_at_three_steps(qtbot, screenshot_window, screenshot_dir, check_screenshots):
    """A short training on the default density and settings; the History tab at an early, a middle
    and the last snapshot. Regenerate the committed pictures with
        EXPLORER_SCREENSHOTS=docs/screenshots python -m pytest tests/explorer/test_history_tab.py -k screenshots"""
    win = screenshot_window
    paths, fishers = [], []
    tv = win.views["training"]
    tv.start(max_steps=1500, fresh=True)
    qtbot.waitUntil(lambda: not tv.is_running() and tv.start_btn.text() == "Start", timeout=300000)
    view = win.views["history"]
    steps = view.snapshot_steps()
    assert len(steps) >= 3 and steps[-1] == 1500
    win.tabs.setCurrentWidget(view)
    # named by stage, not by step: the snapshot steps depend on the training speed
    for stage, i in (("early", 0), ("middle", len(steps) // 2), ("last", len(steps) - 1)):
        view.set_index(i)
        assert view.settle(120) and view.shown_step == steps[i]
        fishers.append(view.fisher)
        paths.append(win.save_screenshot(str(screenshot_dir / f"history_step_{stage}.png"), "history"))
    assert fishers[0] > fishers[-1]
    check_screenshots(paths)
