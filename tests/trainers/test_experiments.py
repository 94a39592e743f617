"""Guided experiments (trainers/experiments.py): each claim reproduced headless with its shipped
settings and fixed seeds, and the command line. Models are shared within the session where two
experiments train the same configuration (the DDPM model of ddpm-forward-reverse, few-steps and one-model)."""
import json

import pytest

from trainers import experiments


def _run(name):
    result = experiments.run(name)
    print(result.measured)
    assert set(result.to_dict()) >= {"name", "holds", "criterion", "measured", "figures", "params"}
    assert all(isinstance(v, (int, float)) for v in result.figures.values())
    return result, result.figures


def test_registry_lists_every_experiment_with_claim_expectation_and_defaults():
    expected = {"score-wrong-without-data", "ssm-needs-noise", "langevin-mode-weights", "noise-levels-fix-both",
                "ddpm-forward-reverse", "ebm-vs-score", "few-steps", "one-model", "memorisation"}
    assert expected <= set(experiments.EXPERIMENTS)
    for e in experiments.EXPERIMENTS.values():
        assert e.title and e.claim and e.expected and e.criterion and e.defaults and "seed" in e.defaults


def test_parameters_are_validated_and_converted():
    e = experiments.get("langevin-mode-weights")
    p = e.params({"n": "500", "eps": "0.02", "density": "eight_gaussians"})
    assert p["n"] == 500 and p["eps"] == 0.02 and p["density"] == "eight_gaussians"
    with pytest.raises(ValueError, match="no parameter 'bogus'"):
        e.params({"bogus": 1})
    with pytest.raises(ValueError, match="n must be an integer"):
        e.params({"n": "many"})
    with pytest.raises(ValueError, match="unknown experiment"):
        experiments.get("nope")


def test_score_is_wrong_where_there_is_no_data():
    result, f = _run("score-wrong-without-data")
    assert result.holds
    assert f["fisher_low_density"] > 10 * f["fisher_high_density"]
    assert f["fisher_high_density"] < 0.1


def test_ssm_learns_better_from_slightly_noised_data():
    result, f = _run("ssm-needs-noise")
    assert result.holds
    assert f["relative_fisher_noised"] < 0.5 * f["relative_fisher_clean"]
    # on clean data the loss stays far above its optimum −½E‖∇log p‖²; with noise it gets close
    assert f["loss_final_clean"] > 0.5 * f["loss_optimum_clean"]
    assert f["loss_final_noised"] < 0.7 * f["loss_optimum_noised"]


def test_plain_langevin_keeps_the_start_split_and_annealed_recovers_the_weights():
    result, f = _run("langevin-mode-weights")
    assert result.holds
    assert f["langevin_heavy_weight"] < 0.65
    assert abs(f["annealed_heavy_weight"] - 0.8) < 0.05
    assert abs(f["langevin_heavy_weight"] - f["start_heavy_weight"]) < 0.05


def test_noise_levels_fix_both_sample_quality_and_mode_weights():
    result, f = _run("noise-levels-fix-both")
    assert result.holds
    assert f["ncsn_annealed_energy_distance"] < f["dsm_langevin_energy_distance"] / 10
    assert f["ncsn_annealed_mode_weight_error"] < 0.05 < f["dsm_langevin_mode_weight_error"]


@pytest.mark.slow
def test_ddpm_forward_reaches_noise_and_the_reverse_chain_returns():
    result, f = _run("ddpm-forward-reverse")
    assert result.holds
    kls = [v for k, v in f.items() if k.startswith("kl_t")]
    assert kls[0] > 5 and kls[-1] < 0.01 and all(b < a for a, b in zip(kls, kls[1:]))
    assert f["energy_distance"] <= 2 * f["floor_energy_distance"] + 0.003
    assert f["elbo_nats"] >= f["true_nll_nats"]


def test_ebm_and_score_network_both_learn():
    result, f = _run("ebm-vs-score")
    for kind in ("mlp", "ebm"):
        assert f[f"fisher_{kind}"] < 0.1 * f[f"fisher_untrained_{kind}"]
        assert f[f"steps_per_second_{kind}"] > 0     # reported; not asserted against each other (a timing)


@pytest.mark.slow
def test_few_steps_ddpm_and_ddim_reach_the_density_at_10_nfe_the_pf_ode_at_50():
    result, f = _run("few-steps")
    assert result.holds
    assert f["ed_ddim_exact_10"] <= f["threshold"] < f["ed_pf-ode_exact_10"]
    assert f["reached_exact_50"] == 3 and f["reached_model_50"] == 3


@pytest.mark.slow
def test_one_model_is_sampled_by_the_other_family_s_samplers():
    result, f = _run("one-model")
    assert result.holds
    own_ncsn, own_ddpm = f["ncsn_model_annealed_energy_distance"], f["ddpm_model_ddpm_energy_distance"]
    for name in ("ddpm", "ddim"):
        assert f[f"ncsn_model_{name}_energy_distance"] <= 2 * own_ncsn + 0.003
    assert f["ddpm_model_annealed_energy_distance"] <= 2 * own_ddpm + 0.003


@pytest.mark.slow
def test_memorisation_the_empirical_optimum_and_a_20_point_model_copy_their_training_set():
    result, f = _run("memorisation")
    assert result.holds
    assert f["share_near_training_empirical_optimum"] > 0.9
    assert f["share_near_training_trained_on_points"] > 0.5 > 0.15 > f["share_near_training_trained_on_fresh"]


# ------------------------------------------------------------------ command line
def test_cli_list(capsys):
    assert experiments.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in experiments.EXPERIMENTS:
        assert name in out
    assert "claim:" in out and "defaults:" in out


def test_cli_run_json_with_overrides(capsys):
    assert experiments.main(["run", "langevin-mode-weights", "--json", "n=400", "langevin_steps=200",
                   "steps_per_level=20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "langevin-mode-weights" and out["params"]["n"] == 400
    assert isinstance(out["holds"], bool) and "langevin_heavy_weight" in out["figures"]


def test_cli_run_prints_a_table(capsys):
    assert experiments.main(["run", "langevin-mode-weights", "n=200", "langevin_steps=50", "steps_per_level=5"]) == 0
    out = capsys.readouterr().out
    assert "verdict:" in out and "annealed_heavy_weight" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
    (["run", "langevin-mode-weights", "bogus=1"], "has no parameter 'bogus'"),
    (["run", "langevin-mode-weights", "n=lots"], "n must be an integer"),
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
