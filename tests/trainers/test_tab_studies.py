"""The tabs' studies on their own, without Qt (trainers.studies: score_field, chains, learned_density,
snapshots): what they compute and when a result counts as a failure. The tabs' tests drive them
through the GUI; these pin the functions themselves."""
from __future__ import annotations

import math

import numpy as np
import torch

from trainers import densities, fitting, grid
from trainers.studies import chains, learned_density, score_field, snapshots

BOUNDS = (-4.0, 4.0, -4.0, 4.0)


def test_the_score_field_without_a_model_is_the_true_score_of_the_level_target():
    density = densities.preset("two_gaussians")
    cfg = fitting.ToyConfig(objective="ncsn", n_levels=4)
    level = score_field.levels(cfg, density)[0]           # least noisy first
    field = score_field.score_field(None, cfg, density, level.value, BOUNDS, 5)
    assert field.points.shape == (25, 2) and field.true.shape == (25, 2) and field.points.dtype == np.float64
    assert field.learned is None and field.mean_squared_error is None
    assert math.isclose(field.cell, 8.0 / 5)
    expected = density.noised(level.sigma).score(torch.as_tensor(field.points)).numpy()
    np.testing.assert_allclose(field.true, expected, rtol=1e-6, atol=1e-9)
    # the grid's first row is at ymin, row-major
    assert field.points[0, 1] == field.points[4, 1] < field.points[5, 1]


def test_the_empirical_field_is_undefined_at_sigma_zero_and_pulls_to_the_training_points():
    points = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    cfg_esm = fitting.ToyConfig(objective="esm")
    assert score_field.empirical_field(cfg_esm, points, 0.0, grid.grid_points(BOUNDS, 3)) is None
    cfg = fitting.ToyConfig(objective="dsm", sigma=0.3)
    at = torch.tensor([[1.5, 0.0], [-1.5, 0.0]])
    field = score_field.empirical_field(cfg, points, 0.3, at)
    assert field[0, 0] < 0 < field[1, 0]                  # each point is pulled back to its nearest x_n


def _panel(sampler: str, source: str = "exact", **options) -> dict:
    return {"sampler": sampler, "source": source, "options": options}


def test_chains_share_their_start_and_say_which_draw_a_flow():
    density = densities.preset("two_gaussians")
    cfg = fitting.ToyConfig(objective="ncsn", n_levels=5)
    trained, exact = chains.score_models(None, cfg, density, density)
    assert trained is None
    panels = [_panel("pf-ode", steps=5), _panel("langevin", steps=5), _panel("annealed", "model", steps=2)]
    setup = chains.set_up_chains(panels, trained, exact, 64, "gaussian", BOUNDS, 3, density)
    assert [len(s) for s in setup.starts] == [64, 64, 64]
    assert setup.flowing == [True, False, False]
    assert "no trained model yet" in setup.specs[2].note and "exact score" in setup.specs[2].title
    again = chains.set_up_chains(panels, trained, exact, 64, "gaussian", BOUNDS, 3, density)
    for a, b in zip(setup.starts, again.starts):
        assert torch.equal(a, b)                          # a seed gives the same particles
    m = setup.metric_fn(setup.starts[0].numpy())
    assert set(m) == {"energy_distance", "mode_weight_tv", "mode_weights"} and len(m["mode_weights"]) == 2
    assert setup.metric_fn(np.full((64, 2), np.nan, np.float32)) == {}     # no finite particle: no metrics


def test_the_chain_metrics_of_true_samples_are_small_and_of_one_mode_are_not():
    density = densities.preset("two_gaussians")
    ref = chains.reference_samples(density)
    assert torch.equal(ref, chains.reference_samples(density))
    idx = torch.arange(500)
    true = density.sample(500, generator=torch.Generator().manual_seed(1)).float().numpy()
    one_mode = np.repeat(true[:1], 500, 0)
    from trainers import metrics
    ref_self = metrics.mean_pairwise_distance(ref)
    good = chains.chain_metrics(true, idx, ref, ref_self, density)
    bad = chains.chain_metrics(one_mode, idx, ref, ref_self, density)
    assert good["energy_distance"] < 0.05 < bad["energy_distance"]
    assert good["mode_weight_tv"] < 0.1 < bad["mode_weight_tv"]


def test_a_non_finite_result_is_a_failure_with_a_reason():
    def density_result(nll):
        return learned_density.LearnedDensity(BOUNDS, 2, 1, 0.01, 1.0, np.zeros((2, 2)), np.zeros((2, 2)), nll, 1.0,
                                              10, 0.0, 0.0)
    assert learned_density.problem(density_result(1.5)) == ""
    assert "non-finite" in learned_density.problem(density_result(float("nan")))

    def pictures(fisher):
        return snapshots.SnapshotPictures(40, BOUNDS, "σ", np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), 1.0,
                                          fisher, None, "", np.zeros((1, 2)), "langevin", 0.0)
    assert snapshots.problem(pictures(0.3)) == ""
    assert "step 40" in snapshots.problem(pictures(float("inf")))


def test_a_cancelled_study_returns_none():
    density = densities.preset("two_gaussians")
    cfg = fitting.ToyConfig(objective="ncsn", n_levels=3)
    _, exact = chains.score_models(None, cfg, density, density)
    assert learned_density.compute_learned_density(exact, density, BOUNDS, n_grid=4, n_steps=2, n_samples=8,
                                                   cancelled=lambda: True) is None
