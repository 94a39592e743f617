"""Independent checks of the samplers and estimators (issue #19 item 5): each is compared with a result
derived here, not with another path through the same code, on off-centre, anisotropic or unequally
weighted densities, and each check has a negative control showing it can fail.

- PF-ODE: for data N(μ, diag(s²)) the VE probability-flow map is closed form per axis,
  y(σ) − μ = (y(σ₀) − μ) √((s² + σ²)/(s² + σ₀²)); Euler's and Heun's errors against it are predicted
  from their local truncation errors (derived below) and checked per particle.
- Predictor–corrector: one step reproduced by hand (Song et al. 2021, Alg. 2, VE; the corrector's
  a = 2 (r ‖z‖/‖s‖)², norms per particle averaged over the batch).
- Memorisation: the empirical optimal score is the score of GaussianMixture(1/N, points, σ²I).
- Divergence of the PF-ODE drift: ∇·f = −σ tr ∇² log p_σ with the mixture's Hessian in closed form.
- Optional (torchdiffeq): an adaptive dopri5 solve of the PF-ODE against our Heun solver.
"""
import math

import pytest
import torch

from trainers import samplers
from trainers.densities import GaussianMixture
from trainers.likelihood import _drift_and_divergence
from trainers.studies.memorisation import EmpiricalScore, empirical_log_density, empirical_score
from trainers.schedules import karras_sigmas
from trainers.score_models import ExactScore, ScoreFunction

# Off-centre, unequally weighted, anisotropic and correlated: nothing here is a preset.
MIX3 = GaussianMixture([0.6, 0.3, 0.1], [[5.0, 7.0], [7.5, 6.0], [4.0, 9.5]],
                       [[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.5]], [[0.25, -0.1], [-0.1, 0.15]]])


# ---------------------------------------------------------------------------------------- PF-ODE
def _gaussian(mu, s):
    return GaussianMixture([1.0], [list(mu)], [[[s[0] ** 2, 0.0], [0.0, s[1] ** 2]]])


def _flow_map(y0, mu, s, sigma0, sigma1):
    """The exact PF-ODE map of N(μ, diag(s²)) from σ₀ to σ₁, per axis."""
    mu, s2 = torch.tensor(mu, dtype=torch.float64), torch.tensor(s, dtype=torch.float64) ** 2
    return mu + (y0 - mu) * torch.sqrt((s2 + sigma1**2) / (s2 + sigma0**2))


def _predicted_relative_error(grid, s, solver):
    """Leading-order global error of the solver relative to y(σ_end) − μ, per axis.

    Per axis u = y − μ solves u' = a(σ) u, a = σ/(s² + σ²), so u'' = (a' + a²) u and
    u''' = (a'' + 3aa' + a³) u. One step of length h (negative when σ decreases):
      Euler  u + h a u                                    local error  (h²/2)(a' + a²) u
      Heun   u + (h/2)(a(σ) u + a(σ+h)(u + h a(σ) u))     local error  h³ (a³/6 − a''/12) u
    (exact Taylor terms minus the scheme's). The map is linear, so the relative errors of the steps add:
    the global relative error is −Σ_k (local error coefficient at the step's midpoint) to leading
    order; what is left is O(h) relative to it."""
    g = grid.double().tolist()
    s2 = torch.tensor(s, dtype=torch.float64) ** 2
    total = torch.zeros(2, dtype=torch.float64)
    for x0, x1 in zip(g[:-1], g[1:]):
        h, m = x1 - x0, 0.5 * (x0 + x1)
        a = m / (s2 + m**2)
        da = (s2 - m**2) / (s2 + m**2) ** 2
        dda = 2 * m * (m**2 - 3 * s2) / (s2 + m**2) ** 3
        total -= h**3 * (a**3 / 6 - dda / 12) if solver == "heun" else h**2 * (da + a**2) / 2
    return total


def _flow_errors(model, mu, s, grid, solver, y0):
    """Per-particle, per-axis error of PFODESampler against the closed form, relative to y(σ_end) − μ."""
    out = samplers.PFODESampler(model, grid, solver).run(y0).x
    exact = _flow_map(y0, mu, s, float(grid[0]), float(grid[-1]))
    return (out - exact) / (exact - torch.tensor(mu, dtype=torch.float64))


GAUSSIANS = [((-4.0, 8.0), (0.7, 0.7)),            # isotropic, off-centre
             ((6.0, -3.5), (0.5, 2.0))]            # anisotropic: the map differs per axis


@pytest.mark.parametrize("mu, s", GAUSSIANS)
@pytest.mark.parametrize("solver, order, rel_tol", [("heun", 2, 0.06), ("euler", 1, 0.04)])
def test_pf_ode_matches_the_closed_form_gaussian_flow_map_to_its_predicted_order(mu, s, solver, order, rel_tol):
    """Every particle's error equals the leading-order prediction within rel_tol (the O(h) remainder,
    measured at 40 steps: 3.7 % for Heun, 2 % for Euler), and halving the steps cuts it by 2^order."""
    model = ExactScore(_gaussian(mu, s), 0.05, 20.0)
    y0 = torch.tensor(mu, dtype=torch.float64) + 20.0 * torch.randn(
        300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = {}
    for n in (40, 80):
        grid = karras_sigmas(20.0, 0.05, n + 1)
        rel = _flow_errors(model, mu, s, grid, solver, y0)
        pred = _predicted_relative_error(grid, s, solver)
        assert (pred.abs() > 1e-5).all()                                          # the check has teeth
        assert ((rel - pred).abs() <= rel_tol * pred.abs()).all(), (n, rel.amin(0), rel.amax(0), pred)
        errors[n] = rel.abs().amax(0)
    ratio = errors[40] / errors[80]
    assert ((ratio > 0.9 * 2**order) & (ratio < 1.1 * 2**order)).all(), ratio
    # deterministic: no noise anywhere
    grid = karras_sigmas(20.0, 0.05, 41)
    torch.testing.assert_close(samplers.PFODESampler(model, grid, solver).run(y0).x,
                               samplers.PFODESampler(model, grid, solver).run(y0).x, rtol=0, atol=0)


def test_the_flow_map_check_fails_for_a_slightly_wrong_score():
    """Negative control: the score of N(μ, diag((1.02 s)²)) — 2 % too wide — fails the per-particle check
    that the exact score passes (the old 'runs back to its start' test passed for any drift)."""
    mu, s = GAUSSIANS[1]
    wrong = ExactScore(_gaussian(mu, (1.02 * s[0], 1.02 * s[1])), 0.05, 20.0)
    y0 = torch.tensor(mu, dtype=torch.float64) + 20.0 * torch.randn(
        50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = karras_sigmas(20.0, 0.05, 81)
    rel = _flow_errors(wrong, mu, s, grid, "heun", y0)
    pred = _predicted_relative_error(grid, s, "heun")
    assert ((rel - pred).abs() > 10 * 0.06 * pred.abs()).all()
    # and a drift that is run forward then backward returns to its start whatever it is: no check at all
    zero = ScoreFunction(lambda y, sig: torch.zeros_like(y))
    back = samplers.PFODESampler(zero, grid.flip(0), "heun").run(samplers.PFODESampler(zero, grid, "heun").run(y0).x).x
    torch.testing.assert_close(back, y0)


def test_heun_pf_ode_agrees_with_an_adaptive_dopri5_solve():
    """Optional (torchdiffeq): dopri5 at rtol = atol = 1e-9 on a three-component off-centre mixture, from
    σ = 12 to 0.05; Heun's error against it falls 4× (±15 %) as the steps double and is below 1e-3 at
    200 steps, so both converge to one solution."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    model = ExactScore(MIX3, 0.05, 12.0)
    y0 = MIX3.noised(12.0).sample(64, torch.Generator().manual_seed(0)).double()
    grids = {n: karras_sigmas(12.0, 0.05, n + 1) for n in (100, 200)}
    ends = torch.tensor([float(grids[100][0]), float(grids[100][-1])], dtype=torch.float64)

    def drift(sigma, y):
        return -sigma * MIX3.noised(float(sigma)).score(y)

    ref = torchdiffeq.odeint(drift, y0, ends, method="dopri5", rtol=1e-9, atol=1e-9)[-1]
    err = {n: float((samplers.PFODESampler(model, g, "heun").run(y0).x - ref).norm(dim=1).max())
           for n, g in grids.items()}
    assert err[200] < 1e-3, err
    assert 3.4 < err[100] / err[200] < 4.6, err


# ---------------------------------------------------------------------------------------- predictor–corrector
def _by_hand_pc_step(density, y, s0, s1, snr, m, generator, last=False):
    """Song et al. 2021, Alg. 2 (VE) written out: predictor y + (σ₀² − σ₁²) s + √(σ₀² − σ₁²) z, then m
    Langevin corrector steps at σ₁ with a = 2 (r · mean_i ‖z_i‖ / mean_i ‖s_i‖)²."""
    var = s0**2 - s1**2
    sc = density.noised(s0).score(y)
    y = y + var * sc
    if last:
        return y
    y = y + math.sqrt(var) * torch.randn(y.shape, generator=generator, dtype=y.dtype)
    for _ in range(m):
        sc = density.noised(s1).score(y)
        z = torch.randn(y.shape, generator=generator, dtype=y.dtype)
        a = 2 * (snr * z.norm(dim=1).mean() / sc.norm(dim=1).mean()) ** 2
        y = y + a * sc + torch.sqrt(2 * a) * z
    return y


@pytest.mark.parametrize("m", [1, 2])
def test_one_pc_step_is_the_by_hand_predictor_and_corrector(m):
    sigmas = torch.tensor([6.0, 2.5, 0.8, 0.3], dtype=torch.float64)
    sampler = samplers.PCSampler(ExactScore(MIX3), sigmas, snr=0.16, corrector_steps=m)
    y = MIX3.noised(6.0).sample(400, torch.Generator().manual_seed(1)).double()
    for k in (0, 2):
        ours = sampler.step(y, k, torch.Generator().manual_seed(7)).x
        s0, s1 = float(sampler.sigmas[k]), float(sampler.sigmas[k + 1])
        hand = _by_hand_pc_step(MIX3, y, s0, s1, 0.16, m, torch.Generator().manual_seed(7))
        torch.testing.assert_close(ours, hand, rtol=1e-10, atol=1e-10)
        # negative control: the step size from per-particle norms (not batch-averaged) is another update
        per_particle = _by_hand_pc_step_per_particle(MIX3, y, s0, s1, 0.16, m, torch.Generator().manual_seed(7))
        assert float((ours - per_particle).abs().max()) > 1e-3
    # the last step lands on Tweedie's denoiser D(y, σ_{N−1}) = y + σ² s, without noise or corrector
    last = sampler.step(y, 3, torch.Generator().manual_seed(7)).x
    torch.testing.assert_close(last, _by_hand_pc_step(MIX3, y, float(sampler.sigmas[3]), 0.0, 0.16, m, None, last=True),
                               rtol=1e-10, atol=1e-10)


def _by_hand_pc_step_per_particle(density, y, s0, s1, snr, m, generator):
    var = s0**2 - s1**2
    y = y + var * density.noised(s0).score(y) + math.sqrt(var) * torch.randn(y.shape, generator=generator, dtype=y.dtype)
    for _ in range(m):
        sc = density.noised(s1).score(y)
        z = torch.randn(y.shape, generator=generator, dtype=y.dtype)
        a = (2 * (snr * z.norm(dim=1) / sc.norm(dim=1)) ** 2)[:, None]
        y = y + a * sc + torch.sqrt(2 * a) * z
    return y


def test_pc_with_a_zero_score_only_adds_the_predictor_noise():
    """With s ≡ 0 the corrector takes no step (a = 0) and the predictor adds √(σᵢ² − σᵢ₊₁²) z: the whole
    chain is y₀ + Σᵢ √(σᵢ² − σᵢ₊₁²) zᵢ with the generator's draws (predictor z, then corrector z, per step)."""
    sigmas = torch.tensor([3.0, 1.0, 0.2])
    zero = ScoreFunction(lambda y, s: torch.zeros_like(y), 0.1, 3.0)
    sampler = samplers.PCSampler(zero, sigmas, snr=0.16, corrector_steps=1)
    y0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sampler.run(y0, torch.Generator().manual_seed(4)).x
    g = torch.Generator().manual_seed(4)
    expected = y0.clone()
    for i in range(len(sigmas) - 1):
        expected = expected + math.sqrt(float(sigmas[i]) ** 2 - float(sigmas[i + 1]) ** 2) * torch.randn(
            y0.shape, generator=g, dtype=y0.dtype)
        torch.randn(y0.shape, generator=g, dtype=y0.dtype)          # the corrector's z, used with a = 0
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------- memorisation
POINTS = MIX3.sample(20, torch.Generator().manual_seed(3))


def _points_mixture(points, sigma):
    n = len(points)
    return GaussianMixture([1.0 / n] * n, points.double().tolist(), [[[sigma**2, 0.0], [0.0, sigma**2]]] * n)


@pytest.mark.parametrize("sigma", [0.03, 0.3, 1.0, 6.0])
def test_empirical_score_is_the_score_of_the_equal_weight_mixture_on_the_points(sigma):
    """ŝ_σ = ∇log (1/N) Σ N(y; x_n, σ²I): against GaussianMixture(1/N, points, σ²I)'s score and log-density,
    and against autograd of that mixture's log_prob (its differentiable reference path)."""
    mix = _points_mixture(POINTS, sigma)
    y = (POINTS.double().mean(0) + 3 * torch.randn(300, 2, generator=torch.Generator().manual_seed(1),
                                                    dtype=torch.float64))
    ours = empirical_score(y, POINTS, sigma)
    torch.testing.assert_close(ours, mix.score(y, exact=True), rtol=1e-7, atol=1e-9)
    # the ScoreModel API carries σ as float32 (Query): compare at that σ
    s32 = float(torch.tensor(sigma, dtype=torch.float32))
    torch.testing.assert_close(EmpiricalScore(POINTS).score(y, sigma), _points_mixture(POINTS, s32).score(y, exact=True),
                               rtol=1e-7, atol=1e-9)
    yg = y.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(yg).sum(), yg)
    torch.testing.assert_close(ours, grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(empirical_log_density(y, POINTS, sigma), mix.log_prob(y, exact=True),
                               rtol=1e-10, atol=1e-10)
    # negative control: the mixture at another σ is another score
    assert float((ours - _points_mixture(POINTS, 1.1 * sigma).score(y, exact=True)).abs().max()) > 1e-3


# ---------------------------------------------------------------------------------------- divergence
def _closed_form_laplacian(mix: GaussianMixture, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tr ∇² log p and the off-diagonal entry (∇² log p)₀₁ of a 2D mixture, in closed form (float64):
    with l_k = log w_k N(y; μ_k, C_k), g_k = −C_k⁻¹(y − μ_k), r = softmax(l),
    ∇² log p = Σ r_k (−C_k⁻¹ + g_k g_kᵀ) − ḡ ḡᵀ, ḡ = Σ r_k g_k."""
    y = y.double()
    prec = torch.linalg.inv(mix.covs)                                            # (K, 2, 2)
    diff = y[:, None, :] - mix.means[None]                                       # (N, K, 2)
    g = -torch.einsum("kij,nkj->nki", prec, diff)
    logdet = torch.logdet(mix.covs)
    logc = torch.log(mix.weights)[None] - 0.5 * (diff * -g).sum(-1) - 0.5 * logdet[None] - math.log(2 * math.pi)
    r = torch.softmax(logc, dim=1)
    gbar = (r[..., None] * g).sum(1)
    hess = (-(r[..., None, None] * prec[None]).sum(1) + torch.einsum("nk,nki,nkj->nij", r, g, g)
            - gbar[:, :, None] * gbar[:, None, :])
    return hess.diagonal(dim1=1, dim2=2).sum(-1), hess[:, 0, 1]


@pytest.mark.parametrize("sigma", [0.1, 0.7, 3.0])
def test_exact_divergence_of_the_pf_ode_drift_is_the_closed_form_hessian_trace(sigma):
    model = ExactScore(MIX3)
    y = MIX3.noised(sigma).sample(200, torch.Generator().manual_seed(2)).double()
    f, div = _drift_and_divergence(model, y, sigma, "exact", None)
    trace, _ = _closed_form_laplacian(MIX3.noised(sigma), y)
    torch.testing.assert_close(div, -sigma * trace, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(f, -sigma * MIX3.noised(sigma).score(y), rtol=1e-6, atol=1e-6)   # σ as float32 inside
    # negative control: the trace at another σ differs
    other, _ = _closed_form_laplacian(MIX3.noised(1.2 * sigma), y)
    assert float((div + sigma * other).abs().max()) > 1e-3


@pytest.mark.parametrize("sigma", [0.3, 1.0])
def test_hutchinson_divergence_is_unbiased_with_its_closed_form_spread(sigma):
    """In 2D a Rademacher v gives vᵀJv = tr J ± 2 J₀₁ (v₀v₁ = ±1 with probability ½): every estimate is one
    of those two values, and over 4000 draws per point the mean lies within 4 standard errors
    (2|J₀₁|/√n) of the exact trace."""
    model = ExactScore(MIX3)
    # between the components, where the Hessian's off-diagonal (the estimator's spread) is not ~0
    points = torch.tensor([[6.2, 6.6], [5.5, 8.2], [4.6, 8.6], [6.8, 6.3], [5.0, 7.2]], dtype=torch.float64)
    reps = 4000
    y = points.repeat_interleave(reps, dim=0)
    _, div = _drift_and_divergence(model, y, sigma, "hutchinson", torch.Generator().manual_seed(6))
    trace, off = _closed_form_laplacian(MIX3.noised(sigma), points)
    exact_tr, j01 = -sigma * trace, -sigma * off
    est = div.reshape(len(points), reps)
    assert (j01.abs() > 5e-3).all()                                  # the estimator has a spread to test
    lo, hi = (exact_tr - 2 * j01.abs())[:, None], (exact_tr + 2 * j01.abs())[:, None]
    assert (torch.minimum((est - lo).abs(), (est - hi).abs()) < 1e-6).all()
    se = 2 * j01.abs() / math.sqrt(reps)
    assert ((est.mean(1) - exact_tr).abs() <= 4 * se).all(), ((est.mean(1) - exact_tr) / se)
    # negative control: a biased estimator (the same draws shifted by one standard error × 5) is caught
    assert not ((est.mean(1) + 5 * se - exact_tr).abs() <= 4 * se).all()
