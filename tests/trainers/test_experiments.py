"""Guided experiments (trainers/studies/experiments.py): every claim holds over its seeds and its negative control
(the mechanism removed) does not, and the command line.

Each experiment runs here with a small configuration of its own parameters (fewer steps, particles and
seeds' work than its defaults, which `benchmarks/bench_experiments.py` runs) that still decides both
the claim and the control; 3 seeds each, so every verdict uses a t·SE margin over seeds. Models are
shared within the session where two experiments train the same configuration (the DDPM model of
ddpm-forward-reverse, few-steps and one-model)."""
import json
import math

import pytest

from trainers.studies import experiments

# small configurations: the claim still holds and its control still fails (measured on this 2-core CPU)
SMALL = {
    "score-wrong-without-data": {"steps": 800, "grid": 40},
    "ssm-needs-noise": {"steps": 500, "n_eval": 1000},
    "langevin-mode-weights": {"langevin_steps": 300, "null_reps": 30},
    "noise-levels-fix-both": {"steps": 600, "n": 1000, "langevin_steps": 300, "null_reps": 10},
    "ddpm-forward-reverse": {"n_kl": 2000, "n_elbo": 300, "null_reps": 20},    # its DDPM models: few-steps' too
    "ebm-vs-score": {"steps": 500, "n_eval": 500, "timing_steps": 30},
    "few-steps": {"null_reps": 20},
    "one-model": {"null_reps": 20},
    "memorisation": {"n_data": 10, "steps": 2000, "fresh_steps": 1000, "n": 200},
    "dpmpp-lower-order-final": {"seeds": 3, "n": 1000, "null_reps": 20},
    # flow matching (trainers/studies/flow_experiments.py): the FM models are shared between the three
    "fm-same-map": {"steps": 300, "width": 64, "batch": 128, "n": 300, "nfe": 50, "ode_steps": 100},
    "reflow-straightens": {"steps": 300, "width": 64, "batch": 128, "n": 300, "nfe": 50, "null_reps": 10,
                           "reflow_steps": 300, "pairs": 2000, "pair_nfe": 20},
    "ot-straightens": {"steps": 300, "width": 64, "batch": 128, "n": 300, "nfe": 50, "null_reps": 10},
}


def test_registry_lists_every_experiment_with_claim_expectation_control_and_defaults():
    expected = {"score-wrong-without-data", "ssm-needs-noise", "langevin-mode-weights", "noise-levels-fix-both",
                "ddpm-forward-reverse", "ebm-vs-score", "few-steps", "one-model", "memorisation",
                "dpmpp-lower-order-final", "fm-same-map", "reflow-straightens", "ot-straightens"}
    guidance = {"guidance-diversity", "cfg-not-tilted", "autoguidance-modes"}   # test_guidance_experiments.py
    assert set(experiments.EXPERIMENTS) == expected | guidance and set(SMALL) == expected
    for e in experiments.EXPERIMENTS.values():
        assert e.title and e.claim and e.expected and e.criterion and e.control and e.defaults
        assert "seed" in e.defaults and e.defaults["seeds"] >= 3
        e.params(SMALL.get(e.name, {}))              # the small configurations name real parameters


def test_parameters_are_validated_and_converted():
    e = experiments.get("langevin-mode-weights")
    p = e.params({"n": "500", "eps": "0.02", "density": "eight_gaussians"})
    assert p["n"] == 500 and p["eps"] == 0.02 and p["density"] == "eight_gaussians"
    with pytest.raises(ValueError, match="no parameter 'bogus'"):
        e.params({"bogus": 1})
    with pytest.raises(ValueError, match="n must be an integer"):
        e.params({"n": "many"})
    with pytest.raises(ValueError, match="seeds must be at least 2"):
        e.params({"seeds": 1})
    with pytest.raises(ValueError, match="unknown experiment"):
        experiments.get("nope")


def test_t_quantiles_and_the_margin_over_seeds():
    assert experiments.t95(1) == pytest.approx(6.314, abs=1e-3)
    assert experiments.t95(2) == pytest.approx(2.920, abs=1e-3)
    assert experiments.t95(20) == pytest.approx(1.725, abs=2e-3)     # Student t, 0.95, 20 dof
    assert experiments.t95(120) == pytest.approx(1.658, abs=2e-3)
    S = experiments.Stats({"a": [1.0, 2.0, 3.0]})
    assert S.mean("a") == 2.0 and S.sd("a") == 1.0
    assert S.hi("a") == pytest.approx(2.0 + 2.920 / math.sqrt(3), abs=1e-3)
    assert S.lo("a") == pytest.approx(2.0 - 2.920 / math.sqrt(3), abs=1e-3)
    assert experiments.format_value(0.79061, 0.00252) == "0.7906 ± 0.0025"
    assert experiments.format_value(48.7, 12.3) == "49 ± 12"
    assert experiments.format_value(0.8, 0.0) == "0.8"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SMALL))
def test_the_claim_holds_over_its_seeds_and_its_negative_control_does_not(name):
    params = SMALL[name]
    result = experiments.run(name, params)
    print(result.measured)
    assert result.holds, result.measured
    assert not result.control and result.seeds == [0, 1, 2]
    for key, values in result.per_seed.items():
        assert len(values) == 3 and result.figures[key] == pytest.approx(sum(values) / 3)
        assert key in result.spread
    control = experiments.run(name, params, control=True)
    print(control.measured)
    assert control.control and not control.holds, control.measured
    assert control.measured.startswith("CONTROL") and control.control_what == experiments.get(name).control


# ------------------------------------------------------------------ command line
def test_cli_list(capsys):
    assert experiments.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in experiments.EXPERIMENTS:
        assert name in out
    assert "claim:" in out and "defaults:" in out and "control:" in out


_FAST = ["n=300", "langevin_steps=200", "steps_per_level=10", "n_levels=5", "null_reps=10", "seeds=2"]


def test_cli_run_json_with_overrides(capsys):
    assert experiments.main(["run", "langevin-mode-weights", "--json", *_FAST]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "langevin-mode-weights" and out["params"]["n"] == 300 and out["control"] is False
    assert isinstance(out["holds"], bool) and "langevin_heavy_weight" in out["figures"]
    assert out["seeds"] == [0, 1] and len(out["per_seed"]["langevin_heavy_weight"]) == 2
    assert out["spread"]["langevin_heavy_weight"] >= 0


def test_cli_run_control_prints_a_table_and_does_not_hold(capsys):
    assert experiments.main(["run", "langevin-mode-weights", "--control", *_FAST]) == 0
    out = capsys.readouterr().out
    assert "NEGATIVE CONTROL" in out and "does NOT hold" in out and "annealed_heavy_weight" in out and " ± " in out


@pytest.mark.parametrize("argv, message", [
    (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
    (["run", "langevin-mode-weights", "bogus=1"], "has no parameter 'bogus'"),
    (["run", "langevin-mode-weights", "n=lots"], "n must be an integer"),
    (["run", "langevin-mode-weights", "seeds=1"], "seeds must be at least 2"),
    (["run", "langevin-mode-weights", "n"], "parameters are key=value"),
])
def test_cli_errors_are_one_line_and_exit_2(capsys, argv, message):
    assert experiments.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        experiments.main(["frobnicate"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
