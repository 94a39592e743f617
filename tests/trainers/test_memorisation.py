"""Finite training sets (docs/math.md §11): the empirical optimal score and the memorisation meter."""
import pytest
import torch

from trainers import samplers
from trainers import toy
from trainers.densities import preset
from trainers.fitting import ToyConfig, initial_for, make_sampler, train, training_data
from trainers.studies.memorisation import EmpiricalScore, memorisation_report

POINTS = preset("eight_gaussians").sample(20, torch.Generator().manual_seed(0))


# The empirical score against GaussianMixture(1/N, points, σ²I): test_independent_checks.py.


def test_sampling_the_empirical_score_to_zero_returns_the_training_points():
    model = EmpiricalScore(POINTS, 0.05)
    sampler = samplers.build_sampler("pf-ode", model, nfe=99)
    g = torch.Generator().manual_seed(2)
    x = sampler.run(initial_for(sampler, 500, generator=g), g).x
    fresh = preset("eight_gaussians").sample(500, g)
    report = memorisation_report(x, POINTS, fresh, 0.05)
    assert report["share_near_training"] > 0.99 and report["share_near_training_fresh"] < 0.1
    assert report["ratio"] < 0.01


def test_fixed_training_set_is_drawn_once_and_batches_resample_it():
    cfg = ToyConfig(n_data=20, seed=4)
    d = preset("two_moons")
    sample_batch, points = training_data(cfg, d)
    torch.testing.assert_close(points, training_data(cfg, d)[1])          # the same set every time
    batch = sample_batch(1000)
    assert (batch[:, None, :] == points[None]).all(-1).any(1).all()        # every batch point is a training point
    assert training_data(ToyConfig(), d)[1] is None
    with pytest.raises(ValueError, match="n_data must be 0"):
        ToyConfig(n_data=-1)


@pytest.mark.slow
def test_a_model_trained_on_20_points_copies_them_and_one_trained_on_fresh_data_does_not(trained_toy):
    d = preset("eight_gaussians")
    cfg = ToyConfig(density="eight_gaussians", objective="ncsn", steps=10_000, seed=0, n_data=20)
    small, _ = train(cfg, d)
    points = training_data(cfg, d)[1]
    fresh_cfg, fresh_model, _, _ = trained_toy("eight_gaussians", "ncsn")
    g = torch.Generator().manual_seed(3)
    fresh = d.sample(1000, g)
    reports = {}
    for name, (c, m) in {"n20": (cfg, small), "fresh": (fresh_cfg, fresh_model)}.items():
        sampler = make_sampler("pf-ode", c, m, d, nfe=199)
        x = sampler.run(initial_for(sampler, 1000, generator=g), g).x
        reports[name] = memorisation_report(x, points, fresh, 0.05)
        print(name, reports[name])
    assert reports["n20"]["share_near_training"] > 0.5
    assert reports["fresh"]["share_near_training"] < 0.15
    assert reports["n20"]["ratio"] < 0.5 < reports["fresh"]["ratio"]


def test_cli_train_n_data_and_evaluate_train_set(tmp_path, capsys):
    out = tmp_path / "n20.pt"
    assert toy.main(["train", "--density", "two_gaussians", "--objective", "ncsn", "--steps", "50", "--width", "16",
                     "--depth", "1", "--n-data", "20", "--out", str(out)]) == 0
    capsys.readouterr()
    assert toy.main(["evaluate", "--ckpt", str(out), "--density", "two_gaussians", "--n", "100", "--train-set",
                     "--json"]) == 0
    import json
    m = json.loads(capsys.readouterr().out)["memorisation"]
    assert 0 <= m["share_near_training"] <= 1 and m["threshold"] == pytest.approx(0.1, rel=1e-5)
    fresh = tmp_path / "fresh.pt"
    assert toy.main(["train", "--density", "two_gaussians", "--objective", "dsm", "--steps", "5", "--width", "8",
                     "--depth", "1", "--out", str(fresh)]) == 0
    assert toy.main(["evaluate", "--ckpt", str(fresh), "--density", "two_gaussians", "--n", "50",
                     "--train-set"]) == 1
    assert "train with --n-data N" in capsys.readouterr().err


def test_the_empirical_score_starts_from_its_training_sets_moments_off_centre():
    """EmpiricalScore carries the training set's mean and covariance, so the PF-ODE starts from the
    matched Gaussian and visits the 20 points of a set moved to (8, −6) as often as the empirical
    measure (1/20 each: the TV of the visit frequencies is within the 99 % quantile of multinomial
    draws); negative control: the legacy origin-centred start is far outside it."""
    points = POINTS + torch.tensor([8.0, -6.0])
    n = 2000
    g = torch.Generator().manual_seed(5)
    null = torch.stack([0.5 * (torch.bincount(torch.randint(20, (n,), generator=g), minlength=20) / n - 0.05).abs().sum()
                        for _ in range(500)])
    limit = float(torch.quantile(null, 0.99))
    tvs = {}
    for legacy in (False, True):
        model = EmpiricalScore(points, 0.05)
        if legacy:
            model.data_mean = model.data_cov = None
        else:
            torch.testing.assert_close(model.data_mean.double(), points.double().mean(0), rtol=0, atol=1e-6)
        sampler = samplers.build_sampler("pf-ode", model, nfe=99)
        x = sampler.run(initial_for(sampler, n, generator=torch.Generator().manual_seed(2)), g).x
        freq = torch.bincount(torch.cdist(x, points).argmin(1), minlength=20) / n
        tvs[legacy] = float(0.5 * (freq - 0.05).abs().sum())
    assert tvs[False] < limit < tvs[True], (tvs, limit)
