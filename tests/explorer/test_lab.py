"""Sampler lab tab: run a small quality-vs-steps lab in its worker, export it, cancel a long one."""
from __future__ import annotations

import csv

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
    _choose(lab, ("annealed", "ddim", "pf-ode"), (5, 20), 300)
    lab.run_btn.click()
    assert lab.is_running() and not lab.run_btn.isEnabled()
    qtbot.waitUntil(lambda: lab.result is not None, timeout=60000)
    r = lab.result
    assert {(x.sampler, x.source, x.nfe_target) for x in r.rows} == {
        (s, src, n) for s in ("annealed", "ddim", "pf-ode") for src in ("model", "exact") for n in (5, 20)}
    assert lab.progress.value() == 1000 and lab.run_btn.isEnabled()
    exact_pf = {x.nfe_target: x.energy_distance for x in r.rows if x.sampler == "pf-ode" and x.source == "exact"}
    assert exact_pf[20] < exact_pf[5]                 # the exact score's curve falls with more steps
    assert lab.table.rowCount() == 3 and lab.table.item(0, 0).text() == "Annealed Langevin"
    assert len(lab.ed_plot.listDataItems()) == 6     # 3 samplers × (model, exact)
    path = lab.export_csv(str(tmp_path / "lab.csv"))
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(r.rows) == 12
    for row, x in zip(rows, r.rows):
        assert (row["sampler"], row["source"], int(row["nfe"])) == (x.sampler, x.source, x.nfe)
        assert abs(float(row["energy_distance"]) - x.energy_distance) < 1e-9
    png = lab.export_png(str(tmp_path / "lab.png"))
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.csv", "lab.png"]     # no temp files left


def test_the_lab_without_a_model_runs_the_exact_score_and_cancel_stops_it(window, qtbot):
    lab = window.views["lab"]
    _choose(lab, ("ddpm",), (5,), 200)
    lab.run()
    qtbot.waitUntil(lambda: lab.result is not None, timeout=60000)
    assert {x.source for x in lab.result.rows} == {"exact"}
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
