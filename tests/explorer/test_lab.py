"""Sampler lab tab: run a small quality-vs-steps lab in its worker, export it, cancel a long one."""
from __future__ import annotations

import csv

import pyqtgraph as pg

from PIL import Image


def _choose(lab, samplers, nfes, n):
    for name, cb in lab.sampler_boxes.items():
        cb.setChecked(name in samplers)
    for nfe, cb in lab.nfe_boxes.items():
        cb.setChecked(nfe in nfes)
    lab.n.setValue(n)


def test_a_small_lab_runs_to_completion_and_exports_matching_csv(window, qtbot, tmp_path):
    import copy

    from explorer.state import build_network

    cfg = copy.deepcopy(window.state.train)          # an (untrained) NCSN model: model and exact curves
    window.state.set_model(build_network(cfg), cfg, step=1)
    lab = window.views["lab"]
    window.tabs.setCurrentWidget(lab)
    assert 2 <= lab.seeds.value() <= 3 and lab.seeds.minimum() == 2     # > 1 seed, with a note on the CLI's 5
    _choose(lab, ("annealed", "ddim", "pf-ode"), (5, 20), 300)
    lab.seeds.setValue(2)
    lab.run_btn.click()
    assert lab.is_running() and not lab.run_btn.isEnabled()
    qtbot.waitUntil(lambda: lab.result is not None, timeout=60000)
    r = lab.result
    sources = ("exact·exact-start", "exact", "model")
    assert {(x.sampler, x.source, x.nfe_target) for x in r.rows} == {
        (s, src, n) for s in ("annealed", "ddim", "pf-ode") for src in sources for n in (5, 20)}
    assert r.seeds == 2 and all(x.n_seeds == 2 for x in r.rows)
    assert lab.progress.value() == 1000 and lab.run_btn.isEnabled()
    exact_pf = {x.nfe_target: x.energy_distance for x in r.rows if x.sampler == "pf-ode" and x.source == "exact"}
    assert exact_pf[20] < exact_pf[5]                 # the exact score's curve falls with more steps
    assert lab.table.rowCount() == 3 and lab.table.item(0, 0).text() == "Annealed Langevin"
    for col, src in enumerate(sources, start=1):      # NFE to reach the threshold, per source
        reach = r.nfe_to_reach("pf-ode", src)
        assert lab.table.item(2, col).text() == (str(reach) if reach else "—")
    assert f"threshold {r.threshold:.3g}" in lab.table_label.text()
    curves = [i for i in lab.ed_plot.listDataItems() if pg.mkPen(i.opts["pen"]).color().alpha() > 0]
    assert len(curves) == 9                           # 3 samplers × 3 sources, each with a band
    bands = [i for i in lab.ed_plot.items if type(i).__name__ == "FillBetweenItem"]
    assert len(bands) == 9
    legend = [label.text for _, label in lab.ed_legend.items]
    assert "model, prior start" in legend and "exact score, exact start" in legend
    dec = [label.text for _, label in lab.dec_legend.items]
    assert len(dec) == 3 and dec[0].startswith("discretisation")
    path = lab.export_csv(str(tmp_path / "lab.csv"))
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(r.rows) == 18
    for row, x in zip(rows, r.rows):
        assert (row["sampler"], row["source"], int(row["nfe"])) == (x.sampler, x.source, x.nfe)
        assert abs(float(row["energy_distance"]) - x.energy_distance) < 1e-9
        assert abs(float(row["energy_distance_sd"]) - x.energy_distance_sd) < 1e-9
        assert int(row["seeds"]) == 2 and abs(float(row["threshold"]) - r.threshold) < 1e-12
    png = lab.export_png(str(tmp_path / "lab.png"))
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.csv", "lab.png"]     # no temp files left


def test_the_lab_s_axes_and_table_headers_are_readable_at_1400_by_860(window, qtbot):
    """Log axes label major ticks only (no "1 0.9 0.8 0.7" piles, no "x0.001" rescaling); every table
    header fits its column, the columns fit the table, and each header has a tooltip saying what it is."""
    from explorer.views.parts import axes

    window.resize(1400, 860)
    lab = window.views["lab"]
    window.tabs.setCurrentWidget(lab)
    _choose(lab, ("ddim", "pf-ode"), (5, 10, 20), 200)
    lab.seeds.setValue(2)
    lab.run()
    qtbot.waitUntil(lambda: lab.result is not None, timeout=60000)
    qtbot.wait(50)
    for plot in (lab.ed_plot, lab.mw_plot, lab.dec_plot):
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            assert isinstance(axis, axes.ReadableAxis) and not axis.autoSIPrefix
    left = lab.ed_plot.getAxis("left")
    lo, hi = lab.ed_plot.viewRange()[1]
    levels = left.tickValues(lo, hi, left.height() or 200)
    assert left.style["maxTextLevel"] == 0                       # only the first (major) level is labelled
    strings = left.tickStrings(levels[0][1], 1, 1)
    assert all(s and "x0." not in s for s in strings) and 2 <= len(strings) <= (left.height() or 200) // 20
    header = lab.table.horizontalHeader()
    metrics = header.fontMetrics()
    for col in range(lab.table.columnCount()):
        item = lab.table.horizontalHeaderItem(col)
        assert metrics.horizontalAdvance(item.text()) + 8 <= header.sectionSize(col), (item.text(), col)
        assert item.toolTip()                                      # the full meaning of the short header
    assert sum(header.sectionSize(c) for c in range(lab.table.columnCount())) <= lab.table.viewport().width() + 2


def test_the_lab_without_a_model_runs_the_exact_score_and_cancel_stops_it(window, qtbot):
    lab = window.views["lab"]
    _choose(lab, ("ddpm",), (5,), 200)
    lab.run()
    qtbot.waitUntil(lambda: lab.result is not None, timeout=60000)
    assert {x.source for x in lab.result.rows} == {"exact·exact-start", "exact"}
    first = lab.result
    _choose(lab, tuple(lab.sampler_boxes), (200, 1000), 5000)      # long: cancel it
    lab.run()
    assert lab.cancel_btn.isEnabled()
    qtbot.wait(200)
    lab.cancel_btn.click()
    qtbot.waitUntil(lambda: not lab.is_running(), timeout=20000)
    qtbot.waitUntil(lambda: lab.status.text() == "Cancelled.", timeout=5000)
    assert lab.result is first and lab.run_btn.isEnabled() and not lab.cancel_btn.isEnabled()


def test_stale_signals_from_a_retired_lab_worker_are_ignored(window, restart_with_stale_signals):
    lab = window.views["lab"]
    _choose(lab, tuple(lab.sampler_boxes), (200, 1000), 5000)      # long: still running at the end
    new = restart_with_stale_signals(lab, lab.run)
    assert lab.worker is new and not lab.run_btn.isEnabled()
    lab.stop_worker()
