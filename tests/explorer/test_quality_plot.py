"""The Image-runs tab's "Quality per checkpoint" panel (offscreen): the plot's data are the numbers
of eval.jsonl (torn last line skipped, same-step lines averaged), it follows the file as it grows,
and "Rate checkpoints" runs real ``python -m trainers.image evaluate`` processes on a tiny run, one
per checkpoint not rated yet; a failing evaluate shows its message."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from explorer import runs
from trainers.image import progress as events
from trainers.image import run_layout as layout
from trainers.image import runs as run_files

RATE_TIMEOUT_MS = 240_000
# ddpm_digits shrunk to seconds: checkpoints at steps 2 and 4
TINY = ("train.log_every=2 train.sample_every=0 train.ckpt_every=2 train.n_grid=16 "
        "train.batch_size=32 model.ch=16 ddpm.T=100 train.warmup=2 train.n_steps=4").split()


@pytest.fixture
def make_tab(qtbot):
    from explorer.views.image_runs import ImageRunsView

    made = []

    def make(root: Path) -> ImageRunsView:
        tab = ImageRunsView(runs_root=root)
        qtbot.addWidget(tab)
        made.append(tab)
        return tab

    yield make
    for tab in made:
        tab.shutdown()


def _judge(conf: float, share: float) -> dict:
    return {"mean_confidence": conf, "frac_confident": share, "class_entropy": 0.9,
            "classes_present": 10, "min_class_fraction": 0.05, "nn_distance_to_train": 1.0}


def _line(step: int, conf: float, share: float, bpd: float | None, seed: int = 1,
          sampler: str = "ddpm", nfe: int = 1000, weights: str = "ema",
          ref: tuple = (0.93, 0.80), noise: tuple = (0.50, 0.05)) -> dict:
    return {"step": step, "checkpoint": f"ckpt_{step:08d}.pt", "time": "2026-11-25T16:00:00Z",
            "weights": weights, "sampler": sampler, "nfe": nfe, "n_samples": 200, "seed": seed,
            "judge": "digits", "classifier_test_accuracy": 0.97, "samples": _judge(conf, share),
            "reference": _judge(*ref), "noise": _judge(*noise), "bits_per_dim": bpd,
            "fid": None, "is_mean": None}


def _fake_run(root: Path) -> Path:
    run = root / "judged"
    run.mkdir(parents=True)
    log = events.ProgressLog(layout.progress_path(run), truncate_after=-1)
    log.event(events.START, 0, total_steps=300)
    log.close()
    lines = [_line(100, 0.40, 0.10, 3.0),
             _line(200, 0.60, 0.30, 2.5, ref=(0.95, 0.84), noise=(0.52, 0.07)),
             _line(200, 0.70, 0.40, 2.3, seed=2),             # another seed: averaged with it
             _line(300, 0.80, 0.50, None),                    # bits/dim skipped there
             _line(200, 0.10, 0.00, 9.0, sampler="ddim", nfe=50, weights="raw")]
    text = "".join(json.dumps(l) + "\n" for l in lines)
    layout.eval_path(run).write_text(text + '{"step": 400, "samples": {"mean_conf')   # killed mid-line
    return run


def _data(item) -> tuple[list, list]:
    xs, ys = item.getData()
    return ([] if xs is None else [float(x) for x in xs]), ([] if ys is None else list(ys))


def test_the_plot_holds_the_numbers_of_eval_jsonl(qtbot, make_tab, tmp_path):
    run = _fake_run(tmp_path / "runs")
    tab = make_tab(tmp_path / "runs")
    q = tab.quality
    assert q.run == run
    assert [q.kind.itemData(i) for i in range(q.kind.count())] == \
        ["ddpm 1000 NFE, EMA weights", "ddim 50 NFE, raw weights"]   # most checkpoints first
    steps, conf = _data(q.sample_curves["mean_confidence"])
    assert steps == [100, 200, 300]                                   # the torn step 400 is not read
    assert conf == pytest.approx([0.40, 0.65, 0.80], abs=1e-12)
    assert _data(q.sample_curves["frac_confident"])[1] == pytest.approx([0.10, 0.35, 0.50], abs=1e-12)
    # real digits and noise: each figure's mean over the four lines of this kind
    assert q.levels["reference", "mean_confidence"].value() == pytest.approx((3 * 0.93 + 0.95) / 4)
    assert q.levels["reference", "frac_confident"].value() == pytest.approx((3 * 0.80 + 0.84) / 4)
    assert q.levels["noise", "mean_confidence"].value() == pytest.approx((3 * 0.50 + 0.52) / 4)
    assert q.levels["noise", "frac_confident"].value() == pytest.approx((3 * 0.05 + 0.07) / 4)
    assert all(line.isVisible() for line in q.levels.values())
    assert _data(q.bpd_curve) == ([100, 200], pytest.approx([3.0, 2.4], abs=1e-12))
    assert not q.bpd_plot.isHidden()

    q.kind.setCurrentIndex(1)                                         # the other kind alone
    assert _data(q.sample_curves["mean_confidence"]) == ([200], [0.10])
    q.kind.setCurrentIndex(0)

    # the file grows (an evaluation finishing elsewhere): the panel's poll redraws
    from trainers.image.evaluate import append_eval_record

    append_eval_record(run, _line(400, 0.90, 0.70, 2.0))              # closes off the torn line
    qtbot.waitUntil(lambda: _data(q.sample_curves["mean_confidence"])[0] == [100, 200, 300, 400],
                    timeout=10_000)
    assert _data(q.sample_curves["mean_confidence"])[1][-1] == pytest.approx(0.90)
    assert [r["step"] for r in run_files.read_evals(run)] == [100, 200, 200, 300, 200, 400]


def test_a_run_without_evaluations_draws_nothing(make_tab, tmp_path):
    run = _fake_run(tmp_path / "runs")
    layout.eval_path(run).unlink()
    q = make_tab(tmp_path / "runs").quality
    assert _data(q.sample_curves["mean_confidence"]) == ([], [])
    assert not any(line.isVisible() for line in q.levels.values()) and q.bpd_plot.isHidden()
    assert "No evaluations yet" in q.status.text()
    assert not q.rate()                                               # no checkpoints to rate
    assert q.status.text() == "This run has no checkpoints yet."


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 4-step ddpm_digits run with checkpoints at steps 2 and 4, trained in-process."""
    from trainers.image.__main__ import main

    run = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--config", "ddpm_digits", "--out", str(run), "--quiet", *TINY]) == 0
    return run


def test_rate_checkpoints_evaluates_each_checkpoint_once_and_plots_it(qtbot, make_tab, tiny_run):
    tab = make_tab(tiny_run.parent)
    q = tab.quality
    assert run_files.checkpoint_steps(tiny_run) == [2, 4] and run_files.unrated_steps(tiny_run) == [2, 4]
    q.n_samples.setValue(20)
    q.bpd_n.setValue(4)
    said = []
    q.rater.begun.connect(lambda *_: said.append(q.status.text()))
    q.rate_btn.click()
    assert q.is_rating() and not q.rate_btn.isEnabled() and q.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: not q.is_rating(), timeout=RATE_TIMEOUT_MS)

    assert tab.error.isHidden(), tab.error.text()
    fast = f"with DDIM {runs.FAST_NFE} steps (fast)"             # the cheap default, labelled
    assert said[0] == f"Rating checkpoint 1 of 2 (step 2) of tiny {fast}; time left: known after the first checkpoint …"
    assert said[1].startswith(f"Rating checkpoint 2 of 2 (step 4) of tiny {fast}; about ")
    assert said[1].endswith(" left …") and len(said) == 2             # an estimate from the first
    assert q.status.text().startswith("Rated every checkpoint.")
    recs = run_files.read_evals(tiny_run)
    assert [r["step"] for r in recs] == [2, 4]
    assert all(r["judge"] == "digits" and r["n_samples"] == 20 and r["weights"] == "ema"
               and r["sampler"] == runs.FAST_SAMPLER and r["nfe"] == runs.FAST_NFE for r in recs)
    steps, conf = _data(q.sample_curves["mean_confidence"])
    assert steps == [2, 4] and conf == [r["samples"]["mean_confidence"] for r in recs]
    assert _data(q.sample_curves["frac_confident"])[1] == [r["samples"]["frac_confident"] for r in recs]
    assert q.levels["reference", "mean_confidence"].value() == pytest.approx(
        sum(r["reference"]["mean_confidence"] for r in recs) / 2)
    assert _data(q.bpd_curve) == ([2, 4], [r["bits_per_dim"] for r in recs])
    assert "evaluate --run" in tab.log.toPlainText()
    assert run_files.unrated_steps(tiny_run) == [] and run_files.unrated_steps(tiny_run, "ddpm") == [2, 4]
    assert not q.rate() and q.status.text() == f"Every checkpoint is rated already (DDIM {runs.FAST_NFE} steps (fast))."


def test_cancel_stops_the_rating_without_an_error(qtbot, make_tab, tiny_run, tmp_path):
    import shutil

    run = tmp_path / "runs" / "copy"
    shutil.copytree(tiny_run, run)
    layout.eval_path(run).unlink(missing_ok=True)
    tab = make_tab(run.parent)
    q = tab.quality
    q.n_samples.setValue(20)
    assert q.rate()
    q.cancel_btn.click()
    qtbot.waitUntil(lambda: not q.is_rating(), timeout=60_000)
    assert q.status.text().startswith("Rating stopped.")
    assert tab.error.isHidden() and not layout.eval_path(run).exists()
    assert q.rate_btn.isEnabled() and not q.cancel_btn.isEnabled()


def test_an_evaluation_that_could_not_be_recorded_is_reported(make_tab, tmp_path):
    from explorer.workers import process

    run = _fake_run(tmp_path / "runs")
    tab = make_tab(tmp_path / "runs")
    tab.quality.rating_run, tab.quality.rating_steps = run, [300]
    note = f"could not append to {layout.eval_path(run)} (Permission denied)"
    reply = json.dumps({"step": 300, "record_note": note}, indent=2)     # as evaluate --json prints
    tab.quality.rater.ended.emit(0, process.ProcessExit(0, False, reply, ""))
    assert not tab.error.isHidden() and tab.error.text() == f"Rating checkpoint 300: {note}"


def test_a_failing_evaluate_shows_its_message_and_the_rest_is_skipped(qtbot, make_tab, tmp_path):
    run = tmp_path / "runs" / "broken"
    for step in (2, 4):                                   # not checkpoints: the CLI refuses them
        path = layout.ckpt_path(run, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a checkpoint")
    tab = make_tab(tmp_path / "runs")
    started = []
    tab.quality.rater.begun.connect(lambda i, n: started.append((i, n)))
    assert tab.quality.rate()
    qtbot.waitUntil(lambda: not tab.quality.is_rating(), timeout=60_000)
    assert started == [(0, 2)]                            # the second was never launched
    assert not tab.error.isHidden()
    assert tab.error.text().startswith("Rating checkpoint 2 failed: no usable checkpoint")
    assert "unreadable" in tab.error.text()
    assert tab.quality.status.text().startswith("Rating stopped.")
    assert not layout.eval_path(run).exists()
