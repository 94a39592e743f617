"""common.FormBinding: each widget kind round-trips its value, `load` fires nothing, a person's edit fires
`changed` once with the field's name and value; every view has `shutdown()`, and closing the window
leaves no training or sampler thread running."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import shiboken6
from PySide6 import QtWidgets

from explorer.views.parts import common


@pytest.fixture
def form(qtbot):
    holder = QtWidgets.QWidget()
    qtbot.addWidget(holder)
    binding = common.FormBinding(holder)
    binding.add("count", common.spin(0, 100, 5))
    binding.add("rate", common.spin(0.0, 10.0, 1.0, decimals=3))
    binding.add("kind", common.combo([("a", "first"), ("b", "second"), ("c", "third")], "a"))
    binding.add("flag", QtWidgets.QCheckBox())
    binding.add("name", QtWidgets.QLineEdit())
    unset = common.spin(0, 50, 0)
    unset.setSpecialValueText("default")
    binding.add("steps", unset, none_at_minimum=True)
    fired = []
    binding.changed.connect(lambda name, value: fired.append((name, value)))
    yield binding, fired
    del holder                         # kept alive until here: it owns the binding


VALUES = {"count": 42, "rate": 2.125, "kind": "c", "flag": True, "name": "moons", "steps": 7}


def test_each_widget_kind_round_trips_a_dict_and_an_object(form):
    binding, _ = form
    binding.load(VALUES)
    assert binding.values() == VALUES
    assert type(binding.value("count")) is int and type(binding.value("rate")) is float
    other = {"count": 3, "rate": 0.5, "kind": "b", "flag": False, "name": "", "steps": None}
    binding.load(SimpleNamespace(**other))
    assert binding.values() == other
    assert binding.widgets["steps"].text() == "default"          # None shows the special value text
    assert binding.values(["kind", "count"]) == {"kind": "b", "count": 3}


def test_load_sets_only_the_fields_given_and_fires_nothing(form):
    binding, fired = form
    widget_signals = []
    binding.widgets["count"].valueChanged.connect(widget_signals.append)
    binding.load(VALUES)
    binding.load({"count": 9, "not_a_field": 1})
    assert fired == [] and widget_signals == []
    assert binding.values() == {**VALUES, "count": 9}


def test_an_edit_fires_changed_once_with_the_name_and_value(form):
    binding, fired = form
    binding.load(VALUES)
    edits = [("count", 17), ("rate", 3.5), ("kind", "b"), ("flag", False), ("name", "rings"), ("steps", None)]
    for name, value in edits:
        fired.clear()
        binding.set(name, value)
        assert fired == [(name, value)]
    fired.clear()
    binding.widgets["count"].setValue(18)                        # the widget itself, as a person would
    assert fired == [("count", 18)]


def test_a_value_no_item_holds_selects_the_first_and_bad_bindings_are_refused(form):
    binding, _ = form
    binding.load({"kind": "zzz"})
    assert binding.value("kind") == "a"
    with pytest.raises(ValueError, match="bound twice"):
        binding.add("count", common.spin(0, 1, 0))
    with pytest.raises(TypeError, match="cannot bind a QLabel"):
        binding.add("label", QtWidgets.QLabel())


def test_every_view_has_shutdown_and_closing_leaves_no_worker_running(window, qtbot):
    from explorer.app import MainWindow

    for key, cls in MainWindow.VIEWS:
        assert callable(getattr(cls, "shutdown", None)), key
    training, sampler = window.views["training"], window.views["sampler"]
    window.state.update_train(objective="dsm")
    training.start()
    qtbot.waitUntil(lambda: len(training.loss_history()[0]) >= 5, timeout=20000)
    # the status bar's training label follows the tab's `progressed` signal (numbers, not parsed text)
    qtbot.waitUntil(lambda: window.train_status.text().startswith("Training dsm: step "), timeout=5000)
    window.tabs.setCurrentWidget(sampler)
    sampler.restart()
    sampler.set_playing(True)
    train_worker, chain_worker = training.worker, sampler.worker
    assert train_worker.isRunning() and chain_worker.isRunning() and sampler.timer.isActive()
    window.close()
    assert training.worker is None and sampler.worker is None and not sampler.timer.isActive()
    for worker in (train_worker, chain_worker):
        assert not (shiboken6.isValid(worker) and worker.isRunning())


def test_schema_rows_are_generated_from_the_fields_and_read_unset_as_none(qtbot):
    from trainers import schema
    from trainers.samplers import DDPMSampler

    from explorer.views.parts.schema_form import SchemaRows, tooltip

    holder = QtWidgets.QWidget()
    qtbot.addWidget(holder)
    layout = QtWidgets.QFormLayout(holder)
    rows = SchemaRows(layout, DDPMSampler.Options, parent=holder)
    specs = {s.name: s for s in schema.specs(DDPMSampler.Options)}
    assert list(rows.widgets) == list(specs)
    assert rows.values() == schema.gui_defaults(DDPMSampler.Options)            # the GUI start values
    steps, variance = rows.widgets["steps"], rows.widgets["variance"]
    assert steps.toolTip() == tooltip(specs["steps"]) and specs["steps"].tip in steps.toolTip()
    assert layout.labelForField(variance).text() == specs["variance"].label
    assert [variance.itemData(i) for i in range(variance.count())] == ["beta", "beta_tilde"]
    rows.load({"steps": None, "variance": "beta_tilde", "clip_denoised": 1.0})
    assert (steps.text(), rows.values()["steps"], rows.values()["variance"]) == (specs["steps"].unset, None, "beta_tilde")
    assert rows.values()["clip_denoised"] == 1.0


def test_the_sampler_panel_form_comes_from_each_samplers_schema(qtbot):
    from trainers import schema
    from trainers.samplers import SAMPLERS

    from explorer.views.parts.sampler_panel import PanelControls

    c = PanelControls(0, (200, 100, 50))
    qtbot.addWidget(c)
    for name, cls in SAMPLERS.items():
        c.set_as_user(name, "exact")
        assert list(c.widgets) == list(cls.params)
        assert c.panel()["options"] == schema.gui_defaults(cls.Options)           # switching: the GUI starts
        for s in schema.specs(cls.Options):
            assert s.tip in c.widgets[s.name].toolTip(), (name, s.name)
    c.set_as_user("pc", "model", snr=0.3)
    assert c.panel() == {"sampler": "pc", "source": "model",
                         "options": {**schema.gui_defaults(SAMPLERS["pc"].Options), "snr": 0.3}}
    with pytest.raises(ValueError, match="unknown pc option"):
        c.set_as_user("pc", eta=0.5)
