"""The lab's statistics and its three-way error decomposition, on an off-centre, anisotropic,
unequally weighted density (n = 500, few NFE: each test takes a few seconds)."""
import json
import math

import numpy as np
import pytest
import torch

from trainers.densities import GaussianMixture
from trainers.studies.lab import (EXACT, EXACT_START, MODEL, LabResult, format_table, null_distribution, quantile_of_means, references,
                          run_lab, seed_streams)
from trainers.metrics import energy_distance
from trainers.score_models import ExactScore

# three modes, weights 0.6 / 0.3 / 0.1, anisotropic; the heavy one ~8 units from the origin
WEIGHTS = [0.6, 0.3, 0.1]
MEANS = [[8.0, 1.0], [5.5, 4.0], [0.5, -0.5]]
COVS = [[[0.6, 0.2], [0.2, 0.3]], [[0.2, 0.0], [0.0, 0.8]], [[0.4, -0.1], [-0.1, 0.2]]]
OFF = GaussianMixture(WEIGHTS, MEANS, COVS, name="off-centre")
N = 500


def _values(result, sampler, source, nfe):
    (row,) = [r for r in result.rows if (r.sampler, r.source, r.nfe_target) == (sampler, source, nfe)]
    return row


def test_with_the_exact_score_as_model_the_model_and_exact_rows_are_identical():
    """Same start particles, same noise: the model's rows equal the exact score's to the bit, and the
    model column of the decomposition is 0 exactly (a stochastic and a deterministic sampler)."""
    exact = ExactScore(OFF)
    r = run_lab(OFF, ExactScore(OFF), exact, ["ddpm", "pf-ode"], [10], n=N, seeds=2, null_draws=3)
    for s in ("ddpm", "pf-ode"):
        m, e = _values(r, s, MODEL, 10), _values(r, s, EXACT, 10)
        assert m.energy_distances == e.energy_distances and m.mode_weight_errors == e.mode_weight_errors
        assert m.energy_distances != _values(r, s, EXACT_START, 10).energy_distances   # another start
    for row in r.decomposition():
        assert row["model"] == 0.0 and row["model_sd"] == 0.0


def test_seeds_are_fresh_per_seed_and_reproducible_from_the_base_seed():
    exact = ExactScore(OFF)
    a = run_lab(OFF, None, exact, ["ddpm"], [5], n=200, seeds=3, null_draws=2)
    b = run_lab(OFF, None, exact, ["ddpm"], [5], n=200, seeds=3, null_draws=2)
    assert [r.energy_distances for r in a.rows] == [r.energy_distances for r in b.rows]
    assert a.threshold == b.threshold
    for r in a.rows:                                         # three different draws per cell
        assert len(set(r.energy_distances)) == 3 and r.energy_distance_sd > 0
    assert len(set(seed_streams(0, 3))) == 3 and seed_streams(0, 2) == seed_streams(0, 3)[:2]
    fewer = run_lab(OFF, None, exact, ["ddpm"], [5], n=200, seeds=2, null_draws=2)   # seed k does not depend on K
    assert [r.energy_distances for r in fewer.rows] == [r.energy_distances[:2] for r in a.rows]
    other = run_lab(OFF, None, exact, ["ddpm"], [5], n=200, seeds=3, null_draws=2, seed=1)
    assert not set(other.rows[0].energy_distances) & set(a.rows[0].energy_distances)


def test_the_threshold_is_the_95th_percentile_of_k_seed_means_of_exact_samples():
    """Simulated against the lab's own K references: K-seed means of fresh exact samples exceed the
    threshold about 5 % of the time (400 draws: binomial sd 1.1 %), and the threshold agrees with the
    direct 95th percentile of those means."""
    n, k = 100, 3
    pools, threshold = null_distribution(OFF, n, seeds=k, seed=5, null_draws=150)
    refs = references(OFF, n, seeds=k, seed=5)
    g = torch.Generator().manual_seed(123)
    means = np.array([np.mean([energy_distance(OFF.sample(n, g), ref) for ref in refs]) for _ in range(400)])
    exceed = float((means > threshold).mean())
    assert 0.015 <= exceed <= 0.10, exceed
    assert threshold == pytest.approx(np.quantile(means, 0.95), abs=0.25 * means.std())
    assert threshold > np.median(means) + means.std()          # a high quantile, not the mean
    # the lab itself reports the same threshold from the same draws
    r = run_lab(OFF, None, ExactScore(OFF), ["ddpm"], [2], n=n, seeds=k, seed=5, null_draws=150)
    assert r.threshold == threshold and r.null_draws == k * 150 and r.quantile == 0.95
    # quantile_of_means is a quantile of means
    assert quantile_of_means([[1.0, 1.0], [3.0]]) == pytest.approx(2.0)
    assert quantile_of_means([list(range(101))], 0.95, resamples=20000) == pytest.approx(95, abs=1.5)


def test_a_wrong_model_is_blamed_on_the_model_not_on_the_prior_or_the_steps():
    """The model is the exact score of the same modes with the weights reversed (0.1 / 0.3 / 0.6),
    carrying the true data's mean and variance (as a network trained on this data does): its error
    shows in the model column only."""
    wrong = ExactScore(GaussianMixture(WEIGHTS[::-1], MEANS, COVS))
    truth = ExactScore(OFF)
    wrong.with_data_stats(truth.data_mean, truth.data_var)
    r = run_lab(OFF, wrong, truth, ["ddpm", "ddim"], [50], n=N, seeds=3, null_draws=5)
    for row in r.decomposition():
        assert row["model"] > 0.3 and row["model"] > 5 * row["model_sd"], row
        assert abs(row["prior"]) < 0.05 and abs(row["discretisation"]) < 0.05, row
        assert _values(r, row["sampler"], MODEL, 50).mode_weight_error > 0.3
    assert r.nfe_to_reach("ddpm", MODEL) is None and r.nfe_to_reach("ddpm", EXACT_START) == 50


def test_an_origin_centred_start_off_centre_is_prior_error_and_the_matched_start_removes_it():
    """The legacy N(0, σ_max² I) start (a score model without its data mean) on a density ~8 units from
    the origin: the prior column is large while model and discretisation stay small; the start matched
    to p_σmax (data mean and variance known) makes the prior column small (DDIM η = 0 and the PF-ODE,
    whose deterministic flow keeps the start's error)."""
    exact = ExactScore(OFF)
    legacy = ExactScore(OFF)
    legacy.data_mean, legacy.data_var = None, None               # the old origin-centred start
    old = run_lab(OFF, legacy, exact, ["ddim", "pf-ode"], [50], n=N, seeds=3, null_draws=5)
    new = run_lab(OFF, None, exact, ["ddim", "pf-ode"], [50], n=N, seeds=3, null_draws=5)
    for row_old, row_new in zip(old.decomposition(), new.decomposition()):
        assert row_old["model"] == 0.0                           # the same exact score drives both
        assert row_old["prior"] > 0.1 and row_old["prior"] > 5 * row_old["prior_sd"], row_old
        assert abs(row_new["prior"]) < 0.03 and abs(row_new["prior"]) < row_old["prior"] / 5, row_new
        assert row_new["discretisation"] == row_old["discretisation"]    # the exact start is the same
    text = format_table(old)
    assert "threshold" in text and "prior" in text and "±" in text


def test_results_serialise_with_mean_sd_seeds_and_threshold():
    r = run_lab(OFF, ExactScore(OFF), ExactScore(OFF), ["ddim"], [5], n=100, seeds=2, null_draws=2,
                model_exact_start=True)
    d = r.to_dict()
    assert {"threshold", "seeds", "null_draws", "floor", "floor_sd", "decomposition"} <= set(d)
    assert {row["source"] for row in d["rows"]} == {EXACT_START, EXACT, MODEL, "model·exact-start"}
    back = LabResult.from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == d and format_table(back) == format_table(r)
    lines = r.to_csv().splitlines()
    assert lines[0].split(",")[-3:] == ["seeds", "threshold", "reached"] and len(lines) == 5
    with pytest.raises(ValueError, match="seeds ≥ 1"):
        run_lab(OFF, None, ExactScore(OFF), ["ddim"], [5], n=100, seeds=0)
    assert math.isfinite(d["threshold"])


def test_a_diverging_chain_is_a_nan_row_with_its_message_never_reached():
    from trainers.samplers import SamplerOptions

    r = run_lab(OFF, None, ExactScore(OFF), ["langevin"], [50], {"langevin": SamplerOptions(eps=50.0)}, n=50,
                seeds=2, null_draws=2)
    row = _values(r, "langevin", EXACT, 50)       # from the Gaussian start the huge step blows up
    assert math.isnan(row.energy_distance) and row.n_seeds == 0
    assert row.error.startswith("2/2 seeds: ") and "diverged at step" in row.error
    assert r.nfe_to_reach("langevin", EXACT, threshold=math.inf) is None
    assert ",0\n" in r.to_csv() or r.to_csv().rstrip().endswith(",0")
    assert "div." in format_table(r)
