"""Image-runs tab, resuming with another config (issue #25 item 5): a config (or an override) that is not
the run's own is refused in the banner, naming the fields that differ, and nothing starts; double-clicking
a run in the browser picks the run's own config, so Start continues it."""
from __future__ import annotations

from pathlib import Path

import pytest

from trainers.image import progress as events
from trainers.image import run_layout as layout

@pytest.fixture
def ddpm_run(tiny_ddpm_run) -> Path:
    """The session's tiny 2-step ddpm_digits run (tests/conftest.py)."""
    return tiny_ddpm_run


@pytest.fixture
def tab(qtbot, tmp_path):
    from explorer.views.image_runs import ImageRunsView

    t = ImageRunsView(runs_root=tmp_path / "runs")
    qtbot.addWidget(t)
    t.resize(1400, 860)
    t.show()
    qtbot.waitExposed(t)
    yield t
    t.shutdown()


def _start(tab, config: str, run: Path, overrides: str = ""):
    tab.config.setCurrentText(config)
    tab.out_edit.setText(str(run))
    tab.overrides.setText(overrides)
    tab.resume.setChecked(True)
    tab.start_btn.click()


@pytest.mark.parametrize("config, overrides, field", [
    ("ncsn_digits", "", 'method: run "ddpm", asked "ncsn"'),
    ("ddpm_digits", "model.ch=32", "model.ch: run 8, asked 32"),
])
def test_resume_with_another_config_is_refused_in_the_banner(qtbot, tab, ddpm_run, config, overrides, field):
    log_before = (ddpm_run / layout.PROGRESS).read_bytes()
    _start(tab, config, ddpm_run, overrides)
    assert not tab.is_running() and tab.start_btn.isEnabled()          # nothing started
    assert tab.error.isVisible()
    text = tab.error.text()
    assert text.startswith(f"cannot resume {ddpm_run}") and field in text and "untick Resume" in text
    assert (ddpm_run / layout.PROGRESS).read_bytes() == log_before      # the run is untouched


@pytest.mark.slow
def test_double_clicking_a_run_picks_its_own_config_and_start_continues_it(qtbot, tab, ddpm_run, tmp_path):
    import shutil

    run = tmp_path / "runs" / "ddpm"
    shutil.copytree(ddpm_run, run)
    tab.config.setCurrentText("ncsn_digits")
    tab.browser.runActivated.emit(run)                                  # a double-click in the browser
    assert tab.config.currentText() == "ddpm_digits" and tab.resume.isChecked()
    tab.overrides.setText("train.n_steps=3")
    tab.start_btn.click()
    assert tab.is_running() and tab.error.isHidden()
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=90_000)
    recs = events.read_records(run / layout.PROGRESS)
    assert recs[-1]["event"] == events.DONE and recs[-1]["step"] == 3
