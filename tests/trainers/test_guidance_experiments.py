"""The guidance experiments hold, and their negative controls do not."""
import pytest

from trainers.studies.experiments import EXPERIMENTS, main
from trainers.studies.guidance_experiments import GUIDANCE_EXPERIMENTS


def test_guidance_trades_diversity_for_class_fidelity_and_its_control_does_not():
    e = GUIDANCE_EXPERIMENTS["guidance-diversity"]
    small = dict(n=800, seeds=3)
    r = e.run(small)
    assert r.holds, r.measured
    assert r.figures["spread_hi"] < r.figures["spread_w0"] and r.figures["share_hi"] >= 0.98
    c = e.run(small, control=True)
    assert not c.holds and c.measured.startswith("CONTROL")


@pytest.mark.slow
def test_cfg_does_not_sample_the_tilted_density_and_ddpm_ddim_disagree():
    e = GUIDANCE_EXPERIMENTS["cfg-not-tilted"]
    small = dict(null_reps=10, grid=384)        # n = 2000: at 1000 the w = 0 margin is too wide
    r = e.run(small)
    assert r.holds, r.measured
    assert r.figures["ddim_w_excess"] > 10 * r.figures["exact_excess_q95_w"]
    assert not e.run(small, control=True).holds


@pytest.mark.slow
def test_autoguidance_keeps_the_modes_cfg_drops_and_its_control_does_not():
    e = GUIDANCE_EXPERIMENTS["autoguidance-modes"]
    small = dict(steps=2000, bad_steps=400, n=1000, seeds=3, null_reps=10)
    r = e.run(small)
    assert r.holds, r.measured
    assert not e.run(small, control=True).holds


def test_they_are_in_the_one_registry_and_its_command_line(capsys):
    assert all(EXPERIMENTS[name] is e for name, e in GUIDANCE_EXPERIMENTS.items())
    assert main(["list"]) == 0 and "autoguidance-modes" in capsys.readouterr().out
    assert main(["run", "guidance-diversity", "nonsense=1"]) == 2
