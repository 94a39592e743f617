"""Image-runs tab, class-conditional runs (issue #22): the ``--class K --guidance W`` command lines, the
grid names that carry class and w, and the browser's Class / w controls, enabled by the viewed run's
config (``model.n_classes``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer import runs
from explorer.views.parts.run_browser import UNCONDITIONAL, RunBrowser, SampleRequest
from trainers.image import progress as events
from trainers.image import run_layout as layout
from trainers.image import runs as run_files


def _value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


# ---------------------------------------------------------------------------- command lines
def test_sample_and_rate_args_carry_class_and_guidance(tmp_path):
    args = runs.sample_args(tmp_path, 15, 9, "ddim", nfe=50, label=3, guidance=2.0)
    assert (_value(args, "--class"), _value(args, "--guidance")) == ("3", "2.0")
    assert Path(_value(args, "--out")).name == "ckpt_00000015-ddim.class3.w2.png"
    # w = 0 is the conditional model: --class only, and a name of its own
    args = runs.sample_args(tmp_path, 15, 9, "ddim", label=3, frames=5)
    assert "--guidance" not in args and _value(args, "--class") == "3"
    assert Path(_value(args, "--out")).name == "ckpt_00000015-ddim.class3.w0.png"
    assert Path(_value(args, "--chain")).name == "ckpt_00000015-ddim.class3.w0.npz"
    raw = runs.sample_args(tmp_path, 15, 9, "pf-ode", weights="raw", label=0, guidance=-0.5)
    assert Path(_value(raw, "--out")).name == "ckpt_00000015-pf-ode.class0.w-0.5.raw.png"
    # unconditional: the old names and no class flags
    plain = runs.sample_args(tmp_path, 15, 9, "ddim")
    assert Path(_value(plain, "--out")).name == "ckpt_00000015-ddim.png"
    assert "--class" not in plain and "--guidance" not in plain
    rate = runs.rate_args(tmp_path, 15, 64, 0, "ddim", 50, label=7, guidance=3)
    assert (_value(rate, "--class"), _value(rate, "--guidance"), rate[-1]) == ("7", "3.0", "--json")
    assert "--class" not in runs.rate_args(tmp_path, 15, 64, 0, "ddim", 50)


@pytest.mark.parametrize("label, guidance, message", [
    (None, 2.0, "needs a class"), (-1, 0.0, "class must be"), (True, 0.0, "class must be"),
    (3, float("nan"), "finite"), (2.5, 0.0, "class must be")])
def test_bad_class_or_guidance_is_refused_with_a_clear_message(tmp_path, label, guidance, message):
    with pytest.raises(ValueError, match=message):
        runs.sample_args(tmp_path, 15, 9, "ddim", label=label, guidance=guidance)
    with pytest.raises(ValueError, match=message):
        runs.rate_args(tmp_path, 15, 9, 0, "ddim", label=label, guidance=guidance)


def test_drawn_grids_are_listed_with_class_and_w_and_old_names_as_before(tmp_path):
    names = {"ckpt_00000015-ddim.png": (None, 0.0, "ema", "checkpoint 15, ddim sampler, EMA weights"),
             "ckpt_00000015-ddim.class3.w2.png": (3, 2.0, "ema",
                                                  "checkpoint 15, ddim sampler, class 3, w = 2, EMA weights"),
             "ckpt_00000015-pf-ode.class3.w0.5.raw.png": (3, 0.5, "raw", "checkpoint 15, pf-ode sampler, "
                                                                         "class 3, w = 0.5, raw weights"),
             "ckpt_00000015-default.class9.w-1.png": (9, -1.0, "ema", "checkpoint 15, default sampler, "
                                                                      "class 9, w = -1, EMA weights"),
             "ckpt_00000015-pf-ode.raw.png": (None, 0.0, "raw", "checkpoint 15, pf-ode sampler, raw weights")}
    layout.drawn_dir(tmp_path).mkdir()
    for name in names:
        (layout.drawn_dir(tmp_path) / name).write_bytes(b"")
    grids = {g.path.name: g for g in run_files.list_grids(tmp_path)}
    assert set(grids) == set(names)
    for name, (k, w, weights, label) in names.items():
        g = grids[name]
        assert (g.class_id, g.guidance, g.weights, g.label) == (k, w, weights, label), name
    assert grids["ckpt_00000015-pf-ode.class3.w0.5.raw.png"].sampler == "pf-ode"
    # the other weights' grid keeps sampler, class and w
    assert run_files.counterpart(grids["ckpt_00000015-ddim.class3.w2.png"]).name == \
        "ckpt_00000015-ddim.class3.w2.raw.png"
    assert run_files.counterpart(grids["ckpt_00000015-pf-ode.class3.w0.5.raw.png"]).name == \
        "ckpt_00000015-pf-ode.class3.w0.5.png"
    assert run_files.counterpart(grids["ckpt_00000015-pf-ode.raw.png"]).name == "ckpt_00000015-pf-ode.png"


# ---------------------------------------------------------------------------- the browser's controls
def fake_run(root: Path, name: str, config: str | None) -> Path:
    """A finished run folder with checkpoint 10 and, unless None, this config.toml."""
    run = root / name
    run.mkdir(parents=True)
    log = events.ProgressLog(layout.progress_path(run), truncate_after=-1)
    log.event(events.START, 0, total_steps=10)
    log.write(step=10, loss=1.0, total_steps=10)
    log.event(events.DONE, 10)
    log.close()
    layout.ckpt_path(run, 10).parent.mkdir()
    layout.ckpt_path(run, 10).write_bytes(b"")
    if config is not None:
        layout.config_path(run).write_text(config)
    return run


@pytest.fixture
def browser(qtbot, tmp_path):
    b = RunBrowser(tmp_path / "runs")
    qtbot.addWidget(b)
    return b


def _view(browser: RunBrowser, run: Path) -> None:
    browser.refresh(select=run)
    assert browser.viewed_run() == run


def test_class_and_w_are_offered_for_a_conditional_run_only(qtbot, browser, tmp_path):
    root = tmp_path / "runs"
    cond = fake_run(root, "cond", 'method = "ddpm"\n[model]\nn_classes = 10\n')
    plain = fake_run(root, "plain", 'method = "ddpm"\n[model]\nch = 16\n')
    bare = fake_run(root, "bare", None)                      # no readable config: unconditional
    assert run_files.run_classes(cond) == [str(k) for k in range(10)]
    assert run_files.run_classes(plain) == run_files.run_classes(bare) == []

    _view(browser, cond)
    combo = browser.class_choice
    assert combo.isEnabled() and combo.count() == 11
    assert [combo.itemData(i) for i in range(11)] == [UNCONDITIONAL, *range(10)]
    assert combo.currentData() == UNCONDITIONAL and not browser.guidance.isEnabled()   # w needs a class
    combo.setCurrentIndex(combo.findData(3))
    assert browser.guidance.isEnabled()
    browser.guidance.setValue(2.0)
    with qtbot.waitSignal(browser.sampleRequested) as blocker:
        browser.sample_btn.click()
    [request] = blocker.args
    assert (request.label, request.guidance) == (3, 2.0)
    assert request.args() == runs.sample_args(cond, 10, request.n, request.sampler, request.frames,
                                              "ema", request.nfe, 3, 2.0)
    # "unconditional" on a conditional run: no class, and w is not sent
    combo.setCurrentIndex(0)
    with qtbot.waitSignal(browser.sampleRequested) as blocker:
        browser.sample_btn.click()
    assert (blocker.args[0].label, blocker.args[0].guidance) == (None, 0.0)

    for run in (plain, bare):                                 # the negative controls
        _view(browser, run)
        assert not browser.class_choice.isEnabled() and not browser.guidance.isEnabled()
        assert browser.class_choice.count() == 1
        with qtbot.waitSignal(browser.sampleRequested) as blocker:
            browser.sample_btn.click()
        assert (blocker.args[0].label, blocker.args[0].guidance) == (None, 0.0)
        assert "--class" not in blocker.args[0].args()


def test_training_grids_of_a_conditional_run_say_they_cycle_through_the_classes(tmp_path):
    for name, config in (("cond", "[model]\nn_classes = 10\n"), ("plain", "[model]\nch = 16\n")):
        run = fake_run(tmp_path, name, config)
        layout.samples_dir(run).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(layout.sample_grid_path(run, 10))
    [cond] = run_files.list_grids(tmp_path / "cond")
    [plain] = run_files.list_grids(tmp_path / "plain")
    assert cond.label == "step 10 (EMA weights, classes 0–9 in turn, w = 0)"
    assert plain.label == "step 10 (EMA weights)"


def test_the_class_controls_say_the_guidance_convention(browser):
    tip = browser.guidance.toolTip()
    assert "(1+w) s(x|c) − w s(x)" in tip and "w = 0" in tip and "--guidance" in tip
    assert "n_classes" in browser.class_choice.toolTip() and "--class" in browser.class_choice.toolTip()


def test_toggling_a_conditional_grid_asks_for_the_same_class_and_w(qtbot, browser, tmp_path):
    run = fake_run(tmp_path / "runs", "cond", 'method = "ddpm"\n[model]\nn_classes = 10\n')
    grid, _ = layout.drawn_paths(run, 10, "ddim", "ema", 4, 1.5)
    grid.parent.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(grid)
    _view(browser, run)
    assert browser.shown_grid().label == "checkpoint 10, ddim sampler, class 4, w = 1.5, EMA weights"
    with qtbot.waitSignal(browser.sampleRequested) as blocker:
        browser.toggle_weights_btn.click()
    [request] = blocker.args
    assert (request.weights, request.label, request.guidance, request.sampler) == ("raw", 4, 1.5, "ddim")
    assert Path(_value(request.args(), "--out")).name == "ckpt_00000010-ddim.class4.w1.5.raw.png"


def test_sample_request_defaults_are_unconditional(tmp_path):
    r = SampleRequest(tmp_path, 10, 4, "ddim", 0, "ema", 50)
    assert (r.label, r.guidance) == (None, 0.0) and "--class" not in r.args()


# ---------------------------------------------------------------------------- end to end
def test_eval_lines_of_a_class_and_w_are_a_kind_of_their_own(tmp_path):
    layout.ckpt_path(tmp_path, 4).parent.mkdir()
    layout.ckpt_path(tmp_path, 4).write_bytes(b"")
    layout.eval_path(tmp_path).write_text(
        '{"step": 4, "sampler": "ddim", "nfe": 50, "weights": "ema", "class": 3, "guidance": 2.0}\n')
    records = run_files.read_evals(tmp_path)
    assert run_files.eval_kinds(records) == ["ddim 50 NFE, class 3, w = 2, EMA weights"]
    assert run_files.unrated_steps(tmp_path, "ddim", 50, 3, 2.0) == []
    # another w, another class, or unconditional: not rated yet
    assert run_files.unrated_steps(tmp_path, "ddim", 50, 3, 1.0) == [4]
    assert run_files.unrated_steps(tmp_path, "ddim", 50, 4, 2.0) == [4]
    assert run_files.unrated_steps(tmp_path, "ddim", 50) == run_files.unrated_steps(tmp_path) == [4]


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory) -> Path:
    """A 4-step class-conditional digits run (ddpm_digits_cond shrunk), trained in-process."""
    from trainers.image.__main__ import main

    run = tmp_path_factory.mktemp("runs") / "cond"
    assert main(["train", "--config", "ddpm_digits_cond", "--out", str(run), "--quiet", "train.n_steps=4",
                 "train.ckpt_every=4", "train.sample_every=0", "train.batch_size=32", "model.ch=16",
                 "model.num_res_blocks=1", "ddpm.T=100", "train.warmup=10"]) == 0
    return run


def test_the_tab_samples_a_conditional_run_for_class_3_with_w_2(qtbot, cond_run):
    from explorer.views.image_runs import ImageRunsView

    tab = ImageRunsView(runs_root=cond_run.parent)
    qtbot.addWidget(tab)
    try:
        b = tab.browser
        assert b.viewed_run() == cond_run and b.ckpt.currentData() == 4
        assert b.class_choice.isEnabled() and b.class_choice.count() == 11
        b.class_choice.setCurrentIndex(b.class_choice.findData(3))
        b.guidance.setValue(2.0)
        b.n_samples.setValue(9)
        b.frames.setValue(0)
        b.sample_btn.click()
        qtbot.waitUntil(lambda: b.sample_btn.isEnabled(), timeout=60_000)
        assert tab.error.isHidden(), tab.error.text()
        grid = b.shown_grid()
        assert grid.path == cond_run / "drawn" / f"ckpt_00000004-{runs.FAST_SAMPLER}.class3.w2.png"
        assert (grid.class_id, grid.guidance) == (3, 2.0) and "class 3, w = 2" in b.grid_label.text()
        assert [g.path.name for g in b.grids] == [grid.path.name]      # no unconditional grid was drawn
    finally:
        tab.shutdown()


def test_rate_checkpoints_rates_the_chosen_class_and_w(qtbot, cond_run):
    from explorer.views.image_runs import ImageRunsView

    tab = ImageRunsView(runs_root=cond_run.parent)
    qtbot.addWidget(tab)
    try:
        b, q = tab.browser, tab.quality
        b.class_choice.setCurrentIndex(b.class_choice.findData(5))
        b.guidance.setValue(1.0)
        q.n_samples.setValue(20)
        q.bpd_n.setValue(0)
        assert q.rate()
        qtbot.waitUntil(lambda: not q.is_rating(), timeout=60_000)
        assert tab.error.isHidden(), tab.error.text()
        [rec] = [r for r in run_files.read_evals(cond_run) if r.get("class") == 5]
        assert (rec["step"], rec["guidance"]) == (4, 1.0) and "share_requested" in rec["class_figures"]
        assert run_files.unrated_steps(cond_run, runs.FAST_SAMPLER, runs.FAST_NFE, 5, 1.0) == []
        assert not q.rate()                                      # rated already: nothing to do
        assert "class 5, w = 1" in q.status.text()
        b.guidance.setValue(3.0)                                 # another w is not rated yet
        assert run_files.unrated_steps(cond_run, runs.FAST_SAMPLER, runs.FAST_NFE, 5, 3.0) == [4]
    finally:
        tab.shutdown()
