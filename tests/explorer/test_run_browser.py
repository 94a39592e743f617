"""The Image-runs tab's run browser on its own, over fake run folders (progress records written with
trainers.image.progress, files placed with trainers.image.run_layout): what it lists and what
its signals carry."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explorer import runs
from explorer.views.parts.run_browser import PATH_ROLE, RunBrowser, SampleRequest
from trainers.image import progress as events
from trainers.image import run_layout as layout
from trainers.image import runs as run_files


def fake_run(root: Path, name: str, losses: list[float], end: str | None, message: str = "",
             ckpts: tuple[int, ...] = (), grids: tuple[int, ...] = ()) -> Path:
    """A run folder: a loss line every 10 steps, the closing event, empty checkpoint files and
    small grey sample grids."""
    run = root / name
    run.mkdir(parents=True)
    log = events.ProgressLog(layout.progress_path(run), truncate_after=-1)
    log.event(events.START, 0, total_steps=100)
    for i, loss in enumerate(losses):
        log.write(step=10 * (i + 1), loss=loss, total_steps=100)
    if end == events.FAILED:
        log.event(events.FAILED, 10 * len(losses), message=message, error="RuntimeError")
    elif end:
        log.event(end, 10 * len(losses))
    log.close()
    for step in ckpts:
        layout.ckpt_path(run, step).parent.mkdir(exist_ok=True)
        layout.ckpt_path(run, step).write_bytes(b"")
    for step in grids:
        from PIL import Image

        path = layout.sample_grid_path(run, step)
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((12, 20, 3), step, np.uint8)).save(path)
    return run


@pytest.fixture
def browser(qtbot, tmp_path):
    b = RunBrowser(tmp_path / "runs")
    qtbot.addWidget(b)
    return b


def items_by_name(browser: RunBrowser) -> dict:
    return {Path(browser.run_list.item(i).data(PATH_ROLE)).name: browser.run_list.item(i)
            for i in range(browser.run_list.count())}


def test_each_run_is_listed_with_its_status_step_and_last_loss(browser, tmp_path):
    root = tmp_path / "runs"
    fake_run(root, "a", [1.0, 0.8, 0.6], events.DONE)
    fake_run(root, "b", [1.2, 0.9], events.FAILED, "loss became nan at step 20")
    fake_run(root, "c", [1.1], events.STOPPED)
    (root / "not-a-run").mkdir()
    browser.refresh()
    texts = {name: item.text() for name, item in items_by_name(browser).items()}
    assert texts == {"a": "a — finished, step 30, loss 0.6",
                     "b": "b — failed: loss became nan at step 20, step 20, loss 0.9",
                     "c": "c — stopped, step 10, loss 1.1"}


def test_selecting_two_runs_emits_their_paths(qtbot, browser, tmp_path):
    root = tmp_path / "runs"
    a = fake_run(root, "a", [1.0], events.DONE)
    b = fake_run(root, "b", [2.0], events.DONE)
    browser.refresh()
    items = items_by_name(browser)
    emitted: list[list[Path]] = []
    browser.selectionChanged.connect(emitted.append)
    browser.run_list.setCurrentItem(items["a"])
    items["b"].setSelected(True)                          # Ctrl+click a second run
    assert sorted(emitted[-1]) == [a, b]
    items["b"].setSelected(False)
    assert emitted[-1] == [a]


def test_the_live_run_is_listed_as_running_and_its_line_follows_the_owner(browser, tmp_path):
    run = fake_run(tmp_path / "runs", "live", [1.0], None)
    browser.set_live_run(run)
    browser.refresh()
    assert browser.run_list.item(0).text() == "live — running, step 10, loss 1"
    browser.show_live_summary(run_files.RunSummary("running", 20, 0.5))
    assert browser.run_list.item(0).text() == "live — running, step 20, loss 0.5"
    browser.set_live_run(None)
    browser.show_live_summary(run_files.RunSummary("running", 30, 0.25))    # no live run: unchanged
    assert browser.run_list.item(0).text() == "live — running, step 20, loss 0.5"


def test_the_viewed_run_shows_its_latest_grid_and_checkpoints(browser, tmp_path):
    fake_run(tmp_path / "runs", "a", [1.0, 0.9], events.DONE, ckpts=(10, 20), grids=(10, 20))
    browser.refresh()
    assert browser.shown_grid().step == 20
    assert browser.image.image.shape == (12, 20, 3) and (browser.image.image == 20).all()
    assert [browser.ckpt.itemData(i) for i in range(browser.ckpt.count())] == [10, 20]
    assert browser.ckpt.currentData() == 20
    browser.grid_slider.setValue(0)
    assert browser.shown_grid().step == 10 and (browser.image.image == 10).all()
    assert not browser.chain_slider.isEnabled()               # training grids have no chain


def test_sample_asks_the_owner_with_the_chosen_settings(qtbot, browser, tmp_path):
    run = fake_run(tmp_path / "runs", "a", [1.0], events.DONE, ckpts=(10, 20))
    browser.refresh()
    browser.ckpt.setCurrentIndex(0)
    browser.n_samples.setValue(9)
    browser.frames.setValue(0)
    browser.sampler_kind.setCurrentIndex(browser.sampler_kind.findData("ddim"))
    with qtbot.waitSignal(browser.sampleRequested) as blocker:
        browser.sample_btn.click()
    [request] = blocker.args
    assert request == SampleRequest(run, 10, 9, "ddim", 0, "ema", runs.FAST_NFE)     # DDIM: the fast, labelled choice
    assert request.args() == runs.sample_args(run, 10, 9, "ddim", 0, "ema", runs.FAST_NFE)
    assert request.args()[request.args().index("--nfe") + 1] == str(runs.FAST_NFE)
    browser.set_sampling(True)                                # the owner is drawing it
    assert not browser.sample_btn.isEnabled() and not browser.sample_from_checkpoint()
    browser.set_sampling(False)
    assert browser.sample_btn.isEnabled()


def test_toggling_a_training_grid_asks_for_the_raw_weights(qtbot, browser, tmp_path):
    run = fake_run(tmp_path / "runs", "a", [1.0], events.DONE, ckpts=(10,), grids=(10,))
    browser.refresh()
    with qtbot.waitSignal(browser.sampleRequested) as blocker:
        assert browser.toggle_weights()
    assert (blocker.args[0].run, blocker.args[0].step, blocker.args[0].weights) == (run, 10, "raw")


def test_a_run_without_checkpoints_offers_no_sampling_and_double_click_activates(qtbot, browser,
                                                                                tmp_path):
    run = fake_run(tmp_path / "runs", "a", [1.0], events.DONE)
    browser.refresh()
    assert not browser.sample_btn.isEnabled() and not browser.sample_from_checkpoint()
    assert browser.grid_label.text() == "no sample grids yet"
    with qtbot.waitSignal(browser.runActivated) as blocker:
        browser.run_list.itemDoubleClicked.emit(browser.run_list.item(0))
    assert blocker.args == [run]


def test_the_newest_grids_of_the_selected_runs_are_shown_side_by_side(qtbot, browser, tmp_path):
    root = tmp_path / "runs"
    fake_run(root, "a", [1.0], events.DONE, grids=(10, 30))
    fake_run(root, "b", [1.0], events.DONE, grids=(20,))
    fake_run(root, "c", [1.0], events.DONE)                 # no grid: left out
    browser.refresh()
    assert not browser.side_by_side_btn.isEnabled()
    for item in items_by_name(browser).values():
        item.setSelected(True)
    assert browser.side_by_side_btn.isEnabled()
    browser.side_by_side_btn.click()
    order = [n for n in browser.run_names() if n != "c"]
    assert [(run.name, g.step) for run, g in browser.compared] == [(n, {"a": 30, "b": 20}[n]) for n in order]
    shown = browser.image.image                              # (12, 20 + 8 + 20, 3): grids 8 px apart
    assert shown.shape == (12, 48, 3)
    first, second = ({"a": 30, "b": 20}[n] for n in order)
    assert (shown[:, :20] == first).all() and (shown[:, 28:] == second).all() and (shown[:, 20:28] == 0).all()
    assert all(f"{n} (step" in browser.grid_label.text() for n in order)
