"""Gaussian-mixture density: exact score, noised marginals, constructors and JSON validation."""
import json
import math

import numpy as np
import pytest
import torch

from trainers.densities import (MAX_COMPONENTS, PRESET_NAMES, DensityError, GaussianMixture, Stroke, from_image,
                                from_points, from_strokes, load_density, preset)


def _random_mixture(seed=0, k=4):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, 2, 2))
    covs = a @ a.transpose(0, 2, 1) + 0.1 * np.eye(2)
    return GaussianMixture(rng.uniform(0.2, 1, k), rng.normal(0, 2, (k, 2)), covs)


def test_log_prob_matches_torch_distributions():
    d = _random_mixture()
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=d.weights),
        torch.distributions.MultivariateNormal(d.means, covariance_matrix=d.covs))
    x = torch.randn(200, 2, dtype=torch.float64) * 3
    torch.testing.assert_close(d.log_prob(x), mix.log_prob(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_score_equals_autograd_of_log_prob(name):
    d = preset(name)
    x = d.sample(300, torch.Generator().manual_seed(1)).double().requires_grad_(True)
    (grad,) = torch.autograd.grad(d.log_prob(x).sum(), x)
    torch.testing.assert_close(d.score(x.detach()), grad, rtol=1e-8, atol=1e-8)


def test_sample_moments_match_mixture():
    d = _random_mixture(3)
    x = d.sample(200_000, torch.Generator().manual_seed(0)).double()
    mean = (d.weights[:, None] * d.means).sum(0)
    second = (d.weights[:, None, None] * (d.covs + d.means[:, :, None] * d.means[:, None, :])).sum(0)
    cov = second - mean[:, None] * mean[None, :]
    scale = float(cov.diagonal().sqrt().max())
    assert torch.allclose(x.mean(0), mean, atol=0.02 * scale)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.03 * scale**2)


def test_sampling_is_reproducible_with_a_seed():
    d = preset("spiral")
    a = d.sample(10, torch.Generator().manual_seed(7))
    b = d.sample(10, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_noised_density_matches_monte_carlo_convolution():
    d, sigma = preset("two_moons"), 0.7
    g = torch.Generator().manual_seed(0)
    x = d.sample(200_000, g).double() + sigma * torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    p_sigma = d.noised(sigma)
    # The exact p_σ must explain the Monte Carlo samples as well as it explains its own (same mean log-lik).
    own = p_sigma.sample(200_000, g).double()
    assert abs(float(p_sigma.log_prob(x).mean() - p_sigma.log_prob(own).mean())) < 0.01
    # and its moments: covariance of p_σ = covariance of p + σ²I
    torch.testing.assert_close(torch.cov(x.T), torch.cov(own.T), atol=0.03, rtol=0.02)


def test_ddpm_marginal_matches_monte_carlo_forward_process():
    d, ab = preset("eight_gaussians"), 0.3
    g = torch.Generator().manual_seed(0)
    x0 = d.sample(200_000, g).double()
    xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    q = d.ddpm_marginal(ab)
    own = q.sample(200_000, g).double()
    assert abs(float(q.log_prob(xt).mean() - q.log_prob(own).mean())) < 0.01
    torch.testing.assert_close(xt.mean(0), own.mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(xt.T), torch.cov(own.T), atol=0.03, rtol=0.02)
    # ᾱ → 0 is N(0, I); ᾱ = 1 is the data
    torch.testing.assert_close(d.ddpm_marginal(1e-12).score(xt[:5]), -xt[:5], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d.ddpm_marginal(1.0).log_prob(x0[:5]), d.log_prob(x0[:5]))


def test_json_round_trip(tmp_path):
    d = _random_mixture(5)
    d.name, d.bounds = "mine", (-5.0, 5.0, -4.0, 4.0)
    path = d.save(tmp_path / "d.json")
    e = GaussianMixture.load(path)
    assert e.name == "mine" and e.bounds == d.bounds
    x = torch.randn(20, 2, dtype=torch.float64)
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x))
    assert load_density(str(path)).n_components == 4


@pytest.mark.parametrize("components, message", [
    ([{"weight": 1, "mean": [0, 0], "cov": [[1, 2], [2, 1]]}], "component 0: covariance .* not positive definite"),
    ([{"weight": 1, "mean": [0, 0], "cov": [[1, 0], [0, 1]]},
      {"weight": -1, "mean": [0, 0], "cov": [[1, 0], [0, 1]]}], "component 1: weight -1 is negative"),
    ([{"weight": 0, "mean": [0, 0], "cov": [[1, 0], [0, 1]]}], "all component weights are zero"),
    ([{"weight": 1, "mean": [float("nan"), 0], "cov": [[1, 0], [0, 1]]}], "component 0: contains NaN"),
    ([{"weight": 1, "mean": [0, 0, 0], "cov": [[1, 0], [0, 1]]}], "component 0: mean must be"),
    ([{"weight": 1, "mean": [0, 0]}], "component 0: needs numeric"),
    ([{"weight": 1, "mean": [0, 0], "cov": [[1, 0.5], [0.2, 1]]}], "component 0: covariance .* not symmetric"),
    ([], "empty"),
])
def test_invalid_density_json_names_the_problem(tmp_path, components, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"kind": "gmm", "components": components}))
    with pytest.raises(DensityError, match=message):
        GaussianMixture.load(path)


def test_too_many_components_and_bad_files(tmp_path):
    comps = [{"weight": 1, "mean": [0, 0], "cov": [[1, 0], [0, 1]]}] * (MAX_COMPONENTS + 1)
    (tmp_path / "big.json").write_text(json.dumps({"kind": "gmm", "components": comps}))
    with pytest.raises(DensityError, match="at most 5000"):
        GaussianMixture.load(tmp_path / "big.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DensityError, match="not valid JSON"):
        GaussianMixture.load(tmp_path / "broken.json")
    (tmp_path / "kind.json").write_text(json.dumps({"kind": "flow"}))
    with pytest.raises(DensityError, match="unknown density kind"):
        GaussianMixture.load(tmp_path / "kind.json")
    with pytest.raises(DensityError, match="no density file"):
        GaussianMixture.load(tmp_path / "missing.json")
    with pytest.raises(DensityError, match="neither a preset"):
        load_density("no_such_preset")


def test_from_strokes_places_mass_along_the_stroke_and_erases():
    line = Stroke(np.array([[-2.0, 0.0], [2.0, 0.0]]), width=0.4, strength=1.0)
    d = from_strokes([line])
    assert d.n_components >= 4 * 4 / 0.4
    assert float(d.log_prob(torch.tensor([[0.0, 0.0]]))) > float(d.log_prob(torch.tensor([[0.0, 1.0]]))) + 5
    erase = Stroke(np.array([[2.0, 0.0]]), width=1.0, erase=True)
    e = from_strokes([line, erase])
    assert e.n_components < d.n_components
    assert float(e.means[:, 0].max()) < 1.6
    with pytest.raises(DensityError, match="nothing is drawn"):
        from_strokes([line, Stroke(np.array([[-3.0, 0.0], [3.0, 0.0]]), width=2.0, erase=True)])


def test_from_points_is_a_kde():
    pts = np.array([[0.0, 0.0], [3.0, 0.0]])
    d = from_points(pts, bandwidth=0.5)
    x = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    kde = np.mean([np.exp(-np.sum((x.numpy()[0] - p) ** 2) / (2 * 0.25)) / (2 * np.pi * 0.25) for p in pts])
    assert float(d.log_prob(x).exp()) == pytest.approx(kde, rel=1e-10)


def test_from_image_puts_mass_where_pixels_are_bright():
    img = np.zeros((20, 20))
    img[2:5, 15:18] = 1.0           # top-right block
    d = from_image(img, bounds=(-1, 1, -1, 1))
    assert torch.all(d.means[:, 0] > 0.4) and torch.all(d.means[:, 1] > 0.4)
    with pytest.raises(DensityError, match="black everywhere"):
        from_image(np.zeros((4, 4)))
    big = from_image(np.random.default_rng(0).uniform(size=(200, 200)), max_components=500)
    assert big.n_components <= 500


# ------------------------------------------------------------ fast kernel vs the direct (reference) form
from trainers.densities import _reference_log_prob, _reference_responsibilities, _reference_score  # noqa: E402


def _hard_mixture(seed, k):
    """Random mixture with narrow, near-singular (condition up to 1e6) and wide components."""
    rng = np.random.default_rng(seed)
    ang = rng.uniform(0, np.pi, k)
    rot = np.stack([np.stack([np.cos(ang), -np.sin(ang)], -1), np.stack([np.sin(ang), np.cos(ang)], -1)], -2)
    ev = np.stack([10 ** rng.uniform(-4, 0.5, k), 10 ** rng.uniform(-4, 0.5, k)], 1)
    ev[: k // 3, 1] = ev[: k // 3, 0] * 1e-6 + 1e-9                  # near-singular
    covs = rot @ (ev[:, :, None] * np.eye(2)) @ rot.transpose(0, 2, 1)
    return GaussianMixture(rng.uniform(0, 1, k), rng.normal(3, 2, (k, 2)), covs)


def _points(d, seed):
    g = torch.Generator().manual_seed(seed)
    near = d.sample(300, g).double()
    wide = torch.rand(300, 2, generator=g, dtype=torch.float64) * 20 - 7             # the drawing area
    far = torch.randn(50, 2, generator=g, dtype=torch.float64) * 1e3                  # far away
    return torch.cat([near, wide, far])


@pytest.mark.parametrize("seed, k", [(0, 3), (1, 40), (2, 700)])
def test_fast_forms_match_reference_in_float64(seed, k):
    d = _hard_mixture(seed, k)
    x = _points(d, seed)
    ref_lp, ref_s, ref_r = _reference_log_prob(d, x), _reference_score(d, x), _reference_responsibilities(d, x)
    lp, s = d.log_prob(x), d.score(x)
    # Both forms round the quadratic terms at ε·λmax(P_k)·(|x| + |μ_k|)² for the components that matter
    # (near-singular ones have λmax up to 1e10): compare at that scale, ε = 2.2e-16.
    lam = torch.linalg.eigvalsh(d._precisions)[:, 1]
    size = x.norm(dim=1, keepdim=True) + d.means.norm(dim=1)[None] + 1
    quad = (ref_r * lam[None] * size**2).sum(1)
    eps = torch.finfo(torch.float64).eps
    assert bool(((lp - ref_lp).abs() <= 64 * eps * (quad + ref_lp.abs() + 1)).all())
    lin = (ref_r * lam[None] * size).sum(1)
    assert bool(((s - ref_s).norm(dim=1) <= 64 * eps * (lin * quad.sqrt() + ref_s.norm(dim=1) + 1)).all())
    r = d.responsibilities(x)
    assert bool(((r - ref_r).abs() <= 64 * eps * (quad[:, None] + 1)).all())


@pytest.mark.parametrize("seed, k", [(3, 5), (4, 300)])
def test_fast_forms_in_float32_are_as_accurate_as_float32_inputs_allow(seed, k):
    """float32 x: the error is that of rounding x itself, |∇ log p|·ε|x| (log p) and
    ‖∇ score‖·ε|x| (score), up to a small factor, against the float64 reference."""
    d = _hard_mixture(seed, k)
    x = _points(d, seed)[:650]              # near and in the drawing area
    x32 = x.float()
    ref_lp, ref_s = _reference_log_prob(d, x32.double()), _reference_score(d, x32.double())
    eps = float(torch.finfo(torch.float32).eps)
    xs = x32.double().abs().max(1).values + 1
    prec_max = float(torch.linalg.eigvalsh(d._precisions).max())
    lp_tol = 8 * eps * (ref_s.norm(dim=1) * xs + ref_lp.abs() + 1)
    assert bool(((d.log_prob(x32).double() - ref_lp).abs() <= lp_tol).all())
    s_tol = 8 * eps * (prec_max * xs * xs + ref_s.norm(dim=1) + 1)
    assert bool(((d.score(x32).double() - ref_s).norm(dim=1) <= s_tol).all())


def test_noised_and_ddpm_marginals_match_reference():
    d = _hard_mixture(5, 200)
    x = _points(d, 5)
    for m in (d.noised(0.3), d.ddpm_marginal(0.4)):
        torch.testing.assert_close(m.log_prob(x), _reference_log_prob(m, x), rtol=1e-9, atol=1e-9)
        ref = _reference_score(m, x)
        assert float(((m.score(x) - ref).abs() / (ref.norm(dim=1, keepdim=True) + 1)).max()) < 1e-9


def test_score_keeps_autograd_for_likelihood():
    d = preset("two_moons")
    x = torch.randn(20, 2, dtype=torch.float64, requires_grad=True)
    (div,) = torch.autograd.grad(d.score(x)[:, 0].sum(), x)
    assert torch.isfinite(div).all() and float(div.abs().sum()) > 0


def test_image_density_in_float32_across_the_drawing_area():
    """Narrow components (an image's pixels) are where the expanded quadratic cancels in float32."""
    rng = np.random.default_rng(0)
    d = from_image(rng.uniform(size=(40, 40)) ** 4, bounds=(-4, 4, -4, 4))
    x = torch.rand(2000, 2, generator=torch.Generator().manual_seed(0)) * 8 - 4
    ref = _reference_log_prob(d, x.double())
    assert float((d.log_prob(x).double() - ref).abs().max()) < 1e-3


# ------------------------------------------------------------ truncated evaluation for large K (docs/math.md §12)
from trainers import truncation  # noqa: E402
from trainers.densities import _parallel_rows, _reference_log_components, _rows_kernel  # noqa: E402


def _truncated(d, x, want_logp=True, want_score=True):
    out = truncation.evaluate(d, x, want_logp, want_score, _rows_kernel, _parallel_rows)
    assert out is not None, "the truncated kernel fell back to the full one: this case tests nothing"
    return out


def _image_mixture(seed=0, size=48):
    return from_image(np.random.default_rng(seed).uniform(size=(size, size)) ** 4, bounds=(-4, 4, -4, 4))


def _wide_spread_mixture(seed, k):
    """Narrow anisotropic components spread over a wide area (so that most are far from most points)."""
    rng = np.random.default_rng(seed)
    ang = rng.uniform(0, np.pi, k)
    rot = np.stack([np.stack([np.cos(ang), -np.sin(ang)], -1), np.stack([np.sin(ang), np.cos(ang)], -1)], -2)
    ev = np.stack([10 ** rng.uniform(-3, -1, k), 10 ** rng.uniform(-3, -1.5, k)], 1)
    covs = rot @ (ev[:, :, None] * np.eye(2)) @ rot.transpose(0, 2, 1)
    return GaussianMixture(rng.uniform(0, 1, k), rng.uniform(-6, 6, (k, 2)), covs)


def _score_bound_scale(d, x, s):
    """max_k |P_k(x − μ_k) + s(x)|: the bound's factor for the score (over all k ⊇ the dropped ones)."""
    _, pdiff = _reference_log_components(d, x)
    return (pdiff + s[:, None, :]).norm(dim=2).amax(1)


@pytest.mark.parametrize("make", [lambda: _wide_spread_mixture(0, 900), lambda: _wide_spread_mixture(1, 2500),
                                  _image_mixture])
def test_truncated_evaluation_is_within_its_bound_in_float64(make):
    d = make()
    g = torch.Generator().manual_seed(0)
    x = torch.cat([d.sample(1500, g).double(),
                   torch.rand(1500, 2, generator=g, dtype=torch.float64) * 14 - 7,     # the drawing area
                   torch.randn(100, 2, generator=g, dtype=torch.float64) * 30])        # far away
    lp, s = _truncated(d, x)
    ref_lp, ref_s = _reference_log_prob(d, x), _reference_score(d, x)
    tol, eps = truncation.TOL[torch.float64], torch.finfo(torch.float64).eps
    # bound: |Δ log p| ≤ tol, plus the float64 rounding of the quadratic forms that the full kernel
    # has too (the scales of test_fast_forms_match_reference_in_float64)
    ref_r = _reference_responsibilities(d, x)
    lam = torch.linalg.eigvalsh(d._precisions)[:, 1]
    size = x.norm(dim=1, keepdim=True) + d.means.norm(dim=1)[None] + 1
    quad, lin = (ref_r * lam[None] * size**2).sum(1), (ref_r * lam[None] * size).sum(1)
    assert bool(((lp - ref_lp).abs() <= tol + 64 * eps * (quad + ref_lp.abs() + 1)).all())
    s_bound = tol * _score_bound_scale(d, x, ref_s) + 64 * eps * (lin * quad.sqrt() + ref_s.norm(dim=1) + 1)
    assert bool(((s - ref_s).norm(dim=1) <= s_bound).all())
    assert torch.equal(d.log_prob(x), lp) and torch.equal(d.score(x), s)        # the public path uses it


@pytest.mark.parametrize("make", [lambda: _wide_spread_mixture(2, 1200), _image_mixture])
def test_truncated_evaluation_in_float32_adds_at_most_its_tolerance(make):
    d = make()
    g = torch.Generator().manual_seed(1)
    x = torch.cat([d.sample(2000, g), torch.rand(2000, 2, generator=g) * 12 - 6])
    lp, s = _truncated(d, x)
    ref_lp, ref_s = _reference_log_prob(d, x.double()), _reference_score(d, x.double())
    eps = float(torch.finfo(torch.float32).eps)
    xs = x.double().abs().max(1).values + 1
    rounding = 8 * eps * (ref_s.norm(dim=1) * xs + ref_lp.abs() + 1)         # what exact float32 may be off by
    assert bool(((lp.double() - ref_lp).abs() <= truncation.TOL[torch.float32] + rounding).all())
    prec_max = float(torch.linalg.eigvalsh(d._precisions).max())
    s_round = 8 * eps * (prec_max * xs * xs + ref_s.norm(dim=1) + 1)
    s_bound = truncation.TOL[torch.float32] * _score_bound_scale(d, x.double(), ref_s) + s_round
    assert bool(((s.double() - ref_s).norm(dim=1) <= s_bound).all())


def test_truncation_drops_components_and_only_far_from_every_point():
    """The kernel really skips work (else it falls back), and far-away query points, where every
    component is far, still get the right log-density."""
    d = _wide_spread_mixture(3, 1500)
    far = torch.randn(600, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3 + 40
    lp, s = _truncated(d, far)
    torch.testing.assert_close(lp, _reference_log_prob(d, far), rtol=1e-12, atol=0)
    near = d.sample(3000, torch.Generator().manual_seed(3)).double()
    assert truncation.evaluate(d, near, True, False, _rows_kernel, _parallel_rows) is not None


def test_exact_forces_the_full_kernel_and_small_mixtures_never_truncate(monkeypatch):
    calls = []
    monkeypatch.setattr(truncation, "evaluate", lambda *a: calls.append(a) or None)
    d = _image_mixture()
    x = d.sample(3000, torch.Generator().manual_seed(4))
    d.score(x, exact=True), d.log_prob(x, exact=True), d.log_prob_and_score(x, exact=True)
    preset("rings").score(torch.zeros(5000, 2))
    assert calls == []
    d.score(x)
    assert len(calls) == 1


@pytest.mark.parametrize("tol", [1e-6, 1e-2])
def test_truncation_keeps_every_component_above_its_share_at_every_point(tol):
    """The selection itself, point by point: a dropped component's term is below tol/K of the largest
    term at every point of its region (the premise of the bound), checked against all K terms."""
    d = _wide_spread_mixture(4, 1500)
    g = torch.Generator().manual_seed(5)
    x = torch.cat([d.sample(2000, g).double(), torch.rand(2000, 2, generator=g, dtype=torch.float64) * 14 - 7])
    y = x - torch.from_numpy(d._centre)
    order, counts, keep = truncation.selection(d, y, tol)
    region = torch.repeat_interleave(torch.arange(len(counts)), counts)
    terms, _ = _reference_log_components(d, x[order])                       # (N, K) log w_k N_k(x)
    dropped = ~keep[region]
    worst = (terms - terms.amax(1, keepdim=True)).masked_fill(~dropped, -math.inf).amax(1)
    assert float(worst.max()) < math.log(tol / d.n_components)
    assert float(keep.float().mean()) < 0.5                                 # and it does drop most
