"""The matched start and the σ_max rule (trainers.priors, docs/math.md §10.1), on densities no other
test uses: three anisotropic modes weighted 0.6 / 0.3 / 0.1 near the origin, and the same moved by
(8, −6) — where a user drawing in a corner of the canvas puts it."""
import math

import numpy as np
import pytest
import torch

from trainers import priors, samplers
from trainers.densities import GaussianMixture
from trainers.fitting import ToyConfig, data_stats, load_checkpoint, save_checkpoint, score_model
from trainers.metrics import mode_weight_error
from trainers.nets import build_model
from trainers.score_models import ExactScore

N = 2000          # particles per chain (the CLI default)
SEEDS = 5


def three_modes(shift=(0.0, 0.0)) -> GaussianMixture:
    means = np.array([[-2.0, 0.5], [1.5, 1.5], [0.5, -2.0]]) + np.asarray(shift)
    covs = np.array([[[0.5, 0.3], [0.3, 0.3]], [[0.2, -0.1], [-0.1, 0.6]], [[0.4, 0.0], [0.0, 0.1]]])
    return GaussianMixture([0.6, 0.3, 0.1], means, covs, "three_modes")


def grid_kl(d: GaussianMixture, sigma: float, n: int = 401) -> float:
    """KL(p_σ ‖ N(m, C + σ²I)) by the trapezoid rule on a fine grid (independent of Gauss–Hermite)."""
    m, c = d.mean(), d.covariance() + sigma**2 * torch.eye(2, dtype=torch.float64)
    half = 9 * math.sqrt(float(torch.linalg.eigvalsh(c).max())) + 4
    xs = torch.linspace(float(m[0]) - half, float(m[0]) + half, n, dtype=torch.float64)
    ys = torch.linspace(float(m[1]) - half, float(m[1]) + half, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten()], 1)
    logp = d.noised(sigma).log_prob(pts, exact=True)
    logq = torch.distributions.MultivariateNormal(m, c).log_prob(pts)
    return float((logp.exp() * (logp - logq)).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0]))


@pytest.mark.parametrize("shift", [(0.0, 0.0), (8.0, -6.0)])
def test_prior_kl_matches_an_independent_grid_quadrature_and_never_increases(shift):
    """Closer the nearer p_σ is to Gaussian: 16² nodes give 1e-6 relative where the rule looks (KL ~ 1e-5
    to 1e-4), 1e-3 at KL ~ 1e-2 and a few % at σ = 1, where p_σ is still multimodal."""
    d = three_modes(shift)
    sigmas, rels = (1.0, 2.0, 4.0, priors.sigma_max_for(d)), (3e-2, 1e-3, 1e-6, 1e-6)
    kls = [priors.prior_kl(d, s) for s in sigmas]
    for s, kl, rel in zip(sigmas, kls, rels):
        assert kl == pytest.approx(grid_kl(d, s), rel=rel)
    assert all(a > b for a, b in zip(kls, kls[1:]))          # data processing: q_σ = q₀ * N(0, σ²I)


def test_a_single_gaussian_is_its_own_matched_prior_and_the_origin_start_is_not():
    """KL = 0 for one Gaussian anywhere (the matched start is exact); the closed form of the origin
    start's KL, ½|m|²/s² for equal covariances, is what the rule removes (negative control)."""
    d = GaussianMixture([1.0], [[5.0, -3.0]], [[[2.0, 0.7], [0.7, 0.5]]])
    assert priors.prior_kl(d, 1.5) < 1e-12
    assert priors.sigma_max_for(d) == pytest.approx(priors.sigma_floor(d))
    assert priors.sigma_floor(d) == pytest.approx(math.sqrt(2.5))
    c = d.covariance() + 1.5**2 * torch.eye(2, dtype=torch.float64)
    origin = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), c)
    truth = torch.distributions.MultivariateNormal(d.mean(), c)
    kl = float(torch.distributions.kl_divergence(truth, origin))
    assert kl == pytest.approx(0.5 * float(d.mean() @ torch.linalg.solve(c, d.mean())))
    assert kl > 1.0


@pytest.mark.parametrize("tol", [1e-4, priors.TOL])
def test_sigma_max_is_the_smallest_sigma_within_the_tolerance(tol):
    d = three_modes((8.0, -6.0))
    s = priors.sigma_max_for(d, tol)
    assert priors.prior_kl(d, s) <= tol < priors.prior_kl(d, s / 1.01)
    assert s >= priors.sigma_floor(d)
    assert priors.sigma_max_for(d, tol) == s and tol in priors._cache[d]      # cached per density
    assert priors.sigma_max_for(three_modes(), tol) == pytest.approx(s, rel=1e-9)  # a shift changes nothing
    with pytest.raises(ValueError, match="tolerance must be positive"):
        priors.sigma_max_for(d, 0.0)


def test_the_exact_score_starts_from_the_matched_gaussian():
    """ExactScore: σ_max by the rule; prior_sample draws N(m, C + σ₀²I) (VE), and √ᾱ₀ times it (VP)."""
    d = three_modes((8.0, -6.0))
    ex = ExactScore(d)
    assert ex.sigma_max == priors.sigma_max_for(d)
    z = torch.randn(40000, 2, generator=torch.Generator().manual_seed(0))
    for name in ("pf-ode", "ddim"):
        sampler = samplers.build_sampler(name, ex, samplers.SamplerOptions(nfe=10))
        sigma0, c = samplers.start_level(sampler)
        x = samplers.prior_sample(sampler, z).double() / c
        want = d.covariance() + sigma0**2 * torch.eye(2, dtype=torch.float64)
        se = (torch.diagonal(want) / len(z)).sqrt()
        assert torch.all((x.mean(0) - d.mean()).abs() < 4 * se)
        torch.testing.assert_close(torch.cov(x.T), want, rtol=0.03, atol=0.03 * float(want.max()))


def _null_quantile(d: GaussianMixture, q: float = 0.99, groups: int = 300) -> float:
    """The q-quantile of the mean mode-weight TV of SEEDS exact samples of size N."""
    gen = torch.Generator().manual_seed(12345)
    tv = torch.tensor([mode_weight_error(d.sample(N, gen), d) for _ in range(groups * SEEDS)])
    return float(torch.quantile(tv.reshape(groups, SEEDS).mean(1), q))


def _mean_tv(name: str, model, d: GaussianMixture) -> float:
    tvs = []
    for seed in range(SEEDS):
        sampler = samplers.build_sampler(name, model, samplers.SamplerOptions(nfe=50))
        g = torch.Generator().manual_seed(seed)
        x = sampler.run(samplers.prior_sample(sampler, torch.randn(N, 2, generator=g)), g).x
        tvs.append(mode_weight_error(x, d))
    return sum(tvs) / SEEDS


@pytest.mark.slow
@pytest.mark.parametrize("shift", [(0.0, 0.0), (8.0, -6.0)])
def test_exact_score_samplers_land_within_sampling_noise_of_the_mode_weights_and_the_origin_start_does_not(shift):
    """CLI defaults at 50 NFE (exact score, σ_max by the rule, matched start): the mean mode-weight TV
    over 5 seeds is below the 99 % quantile of that of exact samples of the same size. Negative
    control: the legacy start N(0, σ_max²I) with the old σ_max (largest pairwise distance) is above it
    for the deterministic samplers, and for DDPM too once the density is off-centre."""
    d = three_modes(shift)
    threshold = _null_quantile(d)
    new = ExactScore(d)
    x = d.sample(2000, torch.Generator().manual_seed(0))
    old = ExactScore(d, sigma_max=float(torch.cdist(x, x).max()))
    old.data_mean = old.data_cov = None                       # the legacy, origin-centred start
    for name in ("ddim", "pf-ode", "ddpm"):
        assert _mean_tv(name, new, d) < threshold, name
        if name != "ddpm" or shift != (0.0, 0.0):             # a stochastic chain partly forgets its start
            assert _mean_tv(name, old, d) > threshold, name


def test_a_network_carries_its_training_data_moments_through_a_checkpoint(tmp_path):
    """fitting.score_model gives a network the moments of its data (the training set's with n_data);
    the checkpoint stores them, and one saved without them falls back to its density's."""
    d = three_modes((8.0, -6.0))
    cfg = ToyConfig(objective="ncsn", width=8, depth=1, n_data=50, sigma_max=5.0)
    net = build_model(cfg.model, cfg.cond, cfg.width, cfg.depth, cfg.n_timesteps)
    sm = score_model(net, cfg, d)
    stats = data_stats(cfg, d)
    assert sm.data_mean.tolist() == pytest.approx(stats["mean"])
    assert stats["mean"] != pytest.approx(d.mean().tolist(), abs=1e-3)   # 50 points, not the density
    save_checkpoint(tmp_path / "a.pt", net, cfg, d)
    extra = load_checkpoint(tmp_path / "a.pt")[3]
    assert extra["data_stats"]["mean"] == pytest.approx(stats["mean"])
    torch.testing.assert_close(torch.tensor(extra["data_stats"]["cov"]), torch.tensor(stats["cov"]))
    old = torch.load(tmp_path / "a.pt", weights_only=True)
    del old["extra"]["data_stats"]
    torch.save(old, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")[3]["data_stats"]["mean"] == pytest.approx(stats["mean"])
    del old["density"]
    torch.save(old, tmp_path / "older.pt")
    assert "data_stats" not in load_checkpoint(tmp_path / "older.pt")[3]
    assert score_model(net, cfg, None).data_mean is None                # legacy start, origin-centred


def test_plain_langevin_targets_the_same_sigma_with_a_network_and_the_exact_score():
    d = three_modes()
    cfg = ToyConfig(objective="ncsn", width=8, depth=1, sigma_max=5.0, sigma_min=0.1)
    net = build_model(cfg.model, cfg.cond, cfg.width, cfg.depth, cfg.n_timesteps)
    a = samplers.build_sampler("langevin", score_model(net, cfg, d))
    b = samplers.build_sampler("langevin", score_model(None, cfg, d))
    assert a.sigma == b.sigma == pytest.approx(0.1)


def test_toy_sample_starts_from_the_exact_p_sigma_max_only_with_the_exact_score(tmp_path, capsys):
    """`sample --start exact` draws p_σmax itself (other particles than the matched start, same seed);
    with a model, which cannot say what p_σmax is, it is a clear one-line error."""
    from trainers import toy
    d = three_modes((8.0, -6.0))
    spec = tmp_path / "d.json"
    d.save(spec)
    outs = {}
    for start in ("prior", "exact"):
        out = tmp_path / f"{start}.npy"
        assert toy.main(["sample", "--score", "exact", "--density", str(spec), "--sampler", "ddim", "--nfe", "5",
                         "--n", "300", "--start", start, "--out", str(out)]) == 0
        outs[start] = np.load(out)
        assert np.isfinite(outs[start]).all()
    assert not np.allclose(outs["prior"], outs["exact"])
    # plain Langevin (uniform by default) starts from exact draws too when asked; --init uniform refuses
    base = ["sample", "--score", "exact", "--density", str(spec), "--sampler", "langevin", "--nfe", "1",
            "--eps", "1e-6", "--n", "300", "--start", "exact", "--seed", "3"]
    assert toy.main(base + ["--out", str(tmp_path / "l.npy")]) == 0
    want = d.noised(0.01).sample(300, torch.Generator().manual_seed(3)).numpy()   # Langevin's σ₀: σ_min
    assert np.abs(np.load(tmp_path / "l.npy") - want).max() < 1e-2
    assert toy.main(base + ["--init", "uniform", "--out", str(tmp_path / "u.npy")]) == 1
    assert "cannot start from --init uniform" in capsys.readouterr().err
    cfg = ToyConfig(objective="ncsn", width=8, depth=1, sigma_max=5.0)
    net = build_model(cfg.model, cfg.cond, cfg.width, cfg.depth, cfg.n_timesteps)
    save_checkpoint(tmp_path / "m.pt", net, cfg, d)
    assert toy.main(["sample", "--ckpt", str(tmp_path / "m.pt"), "--sampler", "ddim", "--nfe", "5", "--n", "10",
                     "--start", "exact", "--out", str(tmp_path / "m.npy")]) == 1
    assert "needs the exact score" in capsys.readouterr().err
