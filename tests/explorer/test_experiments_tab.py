"""Experiments tab: choose a guided experiment, change a parameter, run it or its negative control, read the
verdict and the figures (mean ± sd over the seeds, each seed's value)."""
from __future__ import annotations

import pytest
from PySide6 import QtCore

from trainers.densities import preset
from trainers.studies.experiments import EXPERIMENTS, ExperimentResult


def _open(window, name):
    """Choose `name` from the Experiments menu, as a user would."""
    action = next(a for a in window.experiments_menu.actions() if a.text() == EXPERIMENTS[name].title)
    action.trigger()
    tab = window.views["experiments"]
    assert window.tabs.currentWidget() is tab and tab.experiment().name == name
    return tab


def _type(qtbot, widget, text):
    widget.selectAll()
    qtbot.keyClicks(widget, text)
    qtbot.keyClick(widget, QtCore.Qt.Key.Key_Return)


def test_the_experiments_menu_has_one_action_per_experiment_and_the_list_one_row_each(window):
    titles = [a.text() for a in window.experiments_menu.actions()]
    assert titles == [e.title for e in EXPERIMENTS.values()]
    tab = window.views["experiments"]
    assert tab.list.count() == len(EXPERIMENTS)
    for name, e in EXPERIMENTS.items():
        _open(window, name)
        assert tab.claim.text() == e.claim and tab.expected.text() == e.expected
        assert tab.criterion.text() == e.criterion and e.control in tab.control_text.text()
        assert tab.values() == e.defaults                     # the form starts at the defaults, typed alike
    assert window.tabs.tabText(window.tabs.indexOf(window.views["experiments"])) == "Experiments"


FAST = {"null_reps": 20}     # fewer exact samples for the weight error's 99th percentile


def test_run_langevin_mode_weights_with_a_changed_parameter(window, qtbot):
    tab = _open(window, "langevin-mode-weights")
    for key, value in FAST.items():
        tab.set_value(key, value)
    _type(qtbot, tab.fields["langevin_steps"], "300")
    assert tab.values()["langevin_steps"] == 300 and tab._labels["langevin_steps"].font().bold()
    assert window.state.density.to_dict() != preset("two_gaussians").to_dict()
    qtbot.mouseClick(tab.run_btn, QtCore.Qt.MouseButton.LeftButton)
    assert tab.is_running() and not tab.run_btn.isEnabled() and tab.cancel_btn.isEnabled()
    # the app now shows the experiment's density in the other tabs
    assert window.state.density.to_dict() == preset("two_gaussians").to_dict()
    qtbot.waitUntil(lambda: tab.current_result() is not None, timeout=45000)
    r = tab.current_result()
    assert isinstance(r, ExperimentResult) and r.params["langevin_steps"] == 300
    assert r.holds is True and "✓" in tab.verdict_text() and not tab.disagree.isVisible()
    shown = tab.table_figures()
    assert set(shown) == set(r.figures) and len(r.seeds) == 3
    for key in ("true_heavy_weight", "langevin_heavy_weight", "annealed_heavy_weight"):
        assert isinstance(shown[key], float) and shown[key] == r.figures[key]
        row = list(shown).index(key)
        label, value, seeds = (tab.table.item(row, c).text() for c in range(3))
        assert label == r.labels[key] and "_" not in label               # a short label, not the raw name
        mean, sd = (float(t) for t in value.split(" ± ")) if "±" in value else (float(value), 0.0)
        assert mean == pytest.approx(r.figures[key], abs=max(r.spread[key], 1e-9))   # rounded to its spread
        assert len(value) <= 20                                          # no 7-digit raw numbers
        assert [float(v) for v in seeds.split(", ")] == pytest.approx(r.per_seed[key], rel=1e-2)
    assert abs(shown["annealed_heavy_weight"] - shown["true_heavy_weight"]) < 0.05
    assert shown["langevin_heavy_weight"] < 0.65
    assert tab.measured.text() == r.measured
    assert "langevin_steps=300" in tab.footer.text() and "seeds 0, 1, 2" in tab.footer.text()
    assert tab.run_btn.isEnabled() and not tab.cancel_btn.isEnabled() and tab.progress.value() == 1000
    # reset puts the form back; the shown result stays the one measured
    tab.reset_btn.click()
    assert tab.values() == EXPERIMENTS["langevin-mode-weights"].defaults
    assert not tab._labels["langevin_steps"].font().bold()


def test_a_failing_criterion_shows_the_cross_mark(window, qtbot, monkeypatch):
    e = EXPERIMENTS["memorisation"]

    def fake_run(self, params=None, progress=None, control=False):
        progress(0.5, "halfway")
        return ExperimentResult(self.name, {"share_near_training_empirical_optimum": 0.42}, False, self.criterion,
                                "share 0.42", self.params(params), 0.1)

    monkeypatch.setattr(type(e), "run", fake_run)
    tab = _open(window, "memorisation")
    tab.sync_density.setChecked(False)
    before = window.state.density
    tab.run_btn.click()
    qtbot.waitUntil(lambda: tab.current_result() is not None, timeout=10000)
    assert tab.current_result().holds is False
    assert tab.verdict_text().startswith("✗") and "does not hold" in tab.verdict_text()
    assert "#b3261e" in tab.verdict.styleSheet()                    # red
    assert tab.disagree.isVisible() and "Disagreement" in tab.disagree.text()
    assert tab.criterion.text() == e.criterion and tab.measured.text() == "share 0.42"
    assert tab.table_figures() == {"share_near_training_empirical_optimum": 0.42}
    assert tab.list.currentItem().text().startswith("✗")
    assert window.state.density is before                           # not synced when unticked


def test_cancel_stops_a_run_at_its_next_progress_point(window, qtbot):
    tab = _open(window, "langevin-mode-weights")
    tab.sync_density.setChecked(False)
    tab.run_btn.click()
    tab.cancel_btn.click()
    qtbot.waitUntil(lambda: not tab.is_running() and tab.worker is None, timeout=30000)
    assert tab.status.text() == "Cancelled." and tab.current_result() is None and tab.run_btn.isEnabled()


def test_stale_signals_from_a_retired_experiment_worker_are_ignored(window, qtbot, queue_stale):
    tab = _open(window, "langevin-mode-weights")
    tab.sync_density.setChecked(False)
    messages = []
    window.state.status.connect(messages.append)
    tab.run()
    old = tab.worker
    stale = ExperimentResult("langevin-mode-weights", {"stale": 1.0}, False, "stale", "stale", {}, 0.0)
    queue_stale(old.progress, tab._on_progress, 0.5, "stale progress")
    queue_stale(old.failed, tab._on_failed, "stale: stopped")
    queue_stale(old.cancelled, tab._on_cancelled)
    queue_stale(old.done, tab._on_done, stale)
    tab.stop_worker()
    tab.run()
    new = tab.worker
    assert new is not old
    qtbot.wait(100)
    assert tab.current_result() is None and tab.table.rowCount() == 0
    assert "stale" not in tab.status.text() and tab.status.text() != "Cancelled."
    assert not any("stale" in m for m in messages)
    assert tab.worker is new and tab.is_running() and tab.cancel_btn.isEnabled() and not tab.run_btn.isEnabled()
    tab.stop_worker()


def test_the_control_button_runs_the_negative_control_in_the_worker(window, qtbot):
    tab = _open(window, "langevin-mode-weights")
    tab.sync_density.setChecked(False)
    for key, value in {**FAST, "n": 600, "langevin_steps": 300}.items():
        tab.set_value(key, value)
    assert "must not hold" in tab.control_text.text()
    qtbot.mouseClick(tab.control_btn, QtCore.Qt.MouseButton.LeftButton)
    assert tab.is_running() and not tab.run_btn.isEnabled() and not tab.control_btn.isEnabled()
    assert tab.worker.args["control"] and "negative control" in tab.status.text()
    qtbot.waitUntil(lambda: tab.current_result() is not None, timeout=45000)
    r = tab.current_result()
    assert r.control and not r.holds and r.control_what == EXPERIMENTS["langevin-mode-weights"].control
    assert tab.verdict_text().startswith("✗") and "negative control" in tab.verdict_text()
    assert "as it must" in tab.verdict_text() and "#1a5fb4" in tab.verdict.styleSheet()     # blue, not red
    assert not tab.disagree.isVisible() and tab.measured.text().startswith("CONTROL")
    assert "Negative control ran" in tab.footer.text() and "negative control" in tab.status.text()
    assert not tab.list.currentItem().text().startswith(("✓", "✗"))     # the list marks real runs only
    assert tab.run_btn.isEnabled() and tab.control_btn.isEnabled()


def test_a_control_that_holds_is_shown_as_a_problem(window, qtbot, monkeypatch):
    e = EXPERIMENTS["memorisation"]

    def fake_run(self, params=None, progress=None, control=False):
        key = "share_near_training_empirical_optimum"
        return ExperimentResult(self.name, {key: 0.99}, True, self.criterion, "CONTROL: share 0.99",
                                self.params(params), 0.1, {key: 0.01}, {key: [0.98, 0.99, 1.0]}, [0, 1, 2], control,
                                self.control if control else "", dict(self.labels))

    monkeypatch.setattr(type(e), "run", fake_run)
    tab = _open(window, "memorisation")
    tab.sync_density.setChecked(False)
    tab.run_control()
    qtbot.waitUntil(lambda: tab.current_result() is not None, timeout=10000)
    assert tab.current_result().control and tab.current_result().holds
    assert "NEGATIVE CONTROL" in tab.verdict_text() and "#b3261e" in tab.verdict.styleSheet()
    assert tab.disagree.isVisible() and "cannot tell" in tab.disagree.text()
    assert tab.table.item(0, 0).text() == "empirical optimum: share near"
    assert tab.table.item(0, 1).text() == "0.990 ± 0.010"
    assert tab.table.item(0, 2).text() == "0.98, 0.99, 1"


def test_the_status_line_belongs_to_the_selected_experiment(window, qtbot):
    """Issue #25 item 10: "X finished in 2.1 s" / "Cancelled." stayed under another experiment."""
    tab = _open(window, "langevin-mode-weights")
    tab.sync_density.setChecked(False)
    tab.run_btn.click()
    assert "langevin-mode-weights" in tab.status.text()
    tab.select("score-wrong-without-data")                       # another one while the first runs
    assert tab.status.text().startswith("Running langevin-mode-weights…")
    tab.select("langevin-mode-weights")
    tab.cancel_btn.click()
    qtbot.waitUntil(lambda: not tab.is_running() and tab.worker is None, timeout=30000)
    assert tab.status.text() == "Cancelled."
    tab.select("score-wrong-without-data")                       # its own (empty) history, not the other's
    assert "Cancelled" not in tab.status.text() and "langevin" not in tab.status.text()
    tab.select("langevin-mode-weights")
    assert tab.status.text() == "Cancelled."


def _fake_result(name, figures, per_seed):
    """A result as `Experiment.run` returns it, with given per-seed values (means and sds from them)."""
    import statistics
    means = {k: statistics.fmean(v) for k, v in per_seed.items()}
    sds = {k: statistics.stdev(v) for k, v in per_seed.items()}
    assert set(figures) == set(per_seed)
    return ExperimentResult(name, means, True, EXPERIMENTS[name].criterion, "fake", dict(EXPERIMENTS[name].defaults),
                            0.1, sds, per_seed, [0, 1, 2], labels=dict(EXPERIMENTS[name].labels))


def test_the_figures_plot_shows_the_selected_results_seeds_and_means(window):
    """Issue #25: the results as a plot — every seed's value as a dot and each figure's mean, for the selected
    experiment; selecting another shows its own; a spread over > 2 decades gets a log axis."""
    tab = _open(window, "memorisation")
    a = _fake_result("memorisation", ["near", "far"], {"near": [0.2, 0.25, 0.31], "far": [4.0, 5.5, 3.1]})
    b = _fake_result("langevin-mode-weights", ["err", "share"],
                     {"err": [0.001, 0.002, 0.0015], "share": [0.9, 0.95, 0.99]})
    tab.results.update({a.name: a, b.name: b})
    tab.select("langevin-mode-weights")
    tab.select("memorisation")

    def drawn():
        dots = sorted(float(x) for x in tab.seed_dots.xData)
        means = sorted(float(x) for x in tab.mean_marks.xData)
        return dots, means

    assert tab.plotted_figures() == {k: (a.figures[k], a.per_seed[k]) for k in a.figures}
    dots, means = drawn()
    assert dots == pytest.approx(sorted(v for vs in a.per_seed.values() for v in vs))
    assert means == pytest.approx(sorted(a.figures.values()))
    ticks = [label for _, label in tab.figures_axis._tickLevels[0]]
    assert ticks == [a.label("near"), a.label("far")]
    assert not tab.figures_plot.getPlotItem().ctrl.logXCheck.isChecked()     # 0.2 … 5.5: linear
    # a whisker of ±sd around each mean, on the mean's row
    bars = list(zip(tab.sd_bars.xData, tab.sd_bars.yData))
    assert len(bars) == 4
    for (x0, y0), (x1, y1), k in zip(bars[::2], bars[1::2], a.figures):
        assert y0 == y1 and (x0 + x1) / 2 == pytest.approx(a.figures[k]) and x1 - x0 == pytest.approx(2 * a.spread[k])

    tab.select("langevin-mode-weights")
    assert tab.plotted_figures() == {k: (b.figures[k], b.per_seed[k]) for k in b.figures}
    dots, means = drawn()
    assert dots == pytest.approx(sorted(v for vs in b.per_seed.values() for v in vs))
    assert means == pytest.approx(sorted(b.figures.values()))
    assert tab.figures_plot.getPlotItem().ctrl.logXCheck.isChecked()         # 0.001 … 0.99: log

    tab.select("score-wrong-without-data")                                      # not run: an empty plot
    assert tab.plotted_figures() == {} and (tab.seed_dots.xData is None or len(tab.seed_dots.xData) == 0)
