"""Resuming an image run with another config (issue #25 item 5): refused before anything loads, in one
line naming the fields that differ and how to go on, with a ``failed`` line in progress.jsonl; the
Image-runs tab refuses the same way in its banner instead of silently using the run's own config."""
from __future__ import annotations

from pathlib import Path

import pytest

from trainers.image import progress as events
from trainers.image import run_layout as layout
from trainers.image.__main__ import main
from trainers.image.checkpoints import list_checkpoints
from trainers.image.config import (RESUME_FREE, ResumeMismatch, check_resume, load_config, resume_differences,
                                   resume_refusal, run_config_name)

# the overrides the session's tiny_ddpm_run was trained with (tests/conftest.py TINY_IMAGE_OVERRIDES):
# the refusal tests below name exactly the fields they change against it
TINY = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "train.batch_size=8", "train.warmup=1", "train.threads=1", "train.sample_every=0", "ddpm.T=10",
        "train.log_every=1"]


@pytest.fixture
def trained_run(tiny_ddpm_run) -> Path:
    """The session's 2-step ddpm_digits run (tests/conftest.py: the overrides of TINY, checkpoint at step 2)."""
    return tiny_ddpm_run


def _copy(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to)
    return to


# ---------------------------------------------------------------------------------- the rule
def test_fields_that_decide_what_is_trained_must_match_the_rest_may_change():
    run = load_config("ddpm_digits", TINY)
    assert resume_differences(run.to_dict(), load_config("ddpm_digits", TINY + ["train.n_steps=50", "train.device=cpu",
                                                                                "train.threads=2"])) == []
    assert resume_differences(run, load_config("ncsn_digits", TINY))[0] == ("method", "ddpm", "ncsn")
    assert resume_differences(run, load_config("ddpm_digits", TINY + ["model.ch=32", "train.lr=3e-4"])) == [
        ("model.ch", 8, 32), ("train.lr", run.train.lr, 3e-4)]
    with pytest.raises(ResumeMismatch) as err:
        check_resume(run.to_dict(), load_config("ddpm_digits", TINY + ["model.ch=32"]), "RUN")
    msg = str(err.value)
    assert "\n" not in msg and "model.ch: run 8, asked 32" in msg and "start a new run" in msg
    # every free field exists (a renamed field would silently become 'must match')
    flat = {"method", "name", *(f"{s}.{k}" for s, sec in run.to_dict().items() if isinstance(sec, dict) for k in sec)}
    assert RESUME_FREE <= flat


# ---------------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("args, field", [
    (["--config", "ncsn_digits", *TINY], 'method: run "ddpm", asked "ncsn"'),     # another method
    (["model.ch=32"], "model.ch: run 8, asked 32"),                                  # an override on the run's own
])
def test_cli_resume_with_another_config_is_refused_in_one_line_with_a_failed_event(trained_run, tmp_path, capsys,
                                                                                  args, field):
    run = _copy(trained_run, tmp_path / "run")
    before = (run / layout.PROGRESS).read_bytes()
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--quiet", *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot resume") and field in lines[0], err
    assert "Traceback" not in err and "size mismatch" not in err
    recs = events.read_records(run / layout.PROGRESS)
    assert recs[-1]["event"] == events.FAILED and recs[-1]["step"] == 2 and field in recs[-1]["message"]
    assert recs[-1]["error"] == "ResumeMismatch"
    assert (run / layout.PROGRESS).read_bytes().startswith(before)           # appended, nothing lost
    assert [s for s, _ in list_checkpoints(run)] == [2]                      # nothing trained or written


def test_after_a_refusal_resuming_with_the_run_s_own_config_continues_and_drops_the_failed_line(trained_run, tmp_path):
    run = _copy(trained_run, tmp_path / "run")
    assert main(["train", "--out", str(run), "--resume", "--quiet", "model.ch=32"]) == 2
    # negative control: the free fields (here the length) are not a mismatch
    assert main(["train", "--out", str(run), "--resume", "--quiet", "train.n_steps=3"]) == 0
    recs = events.read_records(run / layout.PROGRESS)
    assert not any(r.get("event") == events.FAILED for r in recs)
    assert recs[-1]["event"] == events.DONE and recs[-1]["step"] == 3


def test_a_torn_last_log_line_is_closed_off_before_the_failed_event(trained_run, tmp_path):
    run = _copy(trained_run, tmp_path / "run")
    with open(run / layout.PROGRESS, "ab") as f:
        f.write(b'{"step": 3, "lo')                                         # a kill mid-line
    assert main(["train", "--out", str(run), "--resume", "--quiet", "model.ch=32"]) == 2
    recs = events.read_records(run / layout.PROGRESS)
    assert recs[-1]["event"] == events.FAILED


# ---------------------------------------------------------------------------------- the tab's check
def test_resume_refusal_judges_the_config_a_front_end_names(trained_run):
    assert run_config_name(trained_run) == "ddpm_digits"
    assert resume_refusal(trained_run, "ddpm_digits", ["train.n_steps=20"]) == ""      # its own, longer
    assert resume_refusal(trained_run, str(trained_run / layout.CONFIG), []) == ""      # its config.toml
    other = resume_refusal(trained_run, "ncsn_digits", [], hint="untick Resume")
    assert 'method: run "ddpm", asked "ncsn"' in other and other.endswith("untick Resume")
    assert "model.ch: run 8, asked 32" in resume_refusal(trained_run, "ddpm_digits", ["model.ch=32"])
    assert resume_refusal(trained_run.parent / "nowhere", "ncsn_digits") == ""          # nothing to judge
