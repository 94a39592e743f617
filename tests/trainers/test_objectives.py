"""Score-matching objectives: closed forms, mutual agreement up to constants, and their optima."""
import math

import pytest
import torch
from torch import nn

from trainers.densities import preset
from trainers.fitting import ToyConfig, train
from trainers.metrics import fisher_divergence
from trainers.nets import EBM, EnergyMLP, ScoreMLP, build_model
from trainers.objectives import OBJECTIVES, ddpm_elbo_weights, ddpm_loss, dsm_loss, esm_loss, make_objective, \
    ncsn_loss, ssm_loss
from trainers.schedules import DDPMSchedule, geometric_sigmas


class Linear(nn.Module):
    """s(x) = A x + b: ∇ₓ s = A, so ESM has the closed form ½‖Ax+b‖² + tr A."""
    cond = None

    def __init__(self, A, b):
        super().__init__()
        self.A, self.b = torch.as_tensor(A, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)

    def forward(self, x, c=None):
        return x @ self.A.T + self.b


class Exact(nn.Module):
    """The exact score of a fixed density (optionally scaled and shifted), as a model."""
    cond = None

    def __init__(self, density, scale=1.0, shift=0.0):
        super().__init__()
        self.density, self.scale, self.shift = density, scale, shift

    def forward(self, x, c=None):
        return self.scale * self.density.score(x) + self.shift


def test_esm_matches_closed_form_for_a_linear_model():
    A, b = torch.tensor([[1.0, 2.0], [-0.5, 3.0]]), torch.tensor([0.1, -0.2])
    x = torch.randn(100, 2, dtype=torch.float64)
    expected = (0.5 * ((x @ A.double().T + b) ** 2).sum(1) + torch.trace(A.double())).mean()
    torch.testing.assert_close(esm_loss(Linear(A, b), x), expected)


@pytest.mark.parametrize("projection", ["rademacher", "gaussian"])
@pytest.mark.parametrize("variance_reduced", [True, False])
def test_ssm_is_an_unbiased_estimate_of_esm(projection, variance_reduced):
    torch.manual_seed(0)
    model = ScoreMLP(width=32, depth=2).double()
    x = torch.randn(8, 2, dtype=torch.float64).repeat(20000, 1)    # many projections per point
    g = torch.Generator().manual_seed(1)
    ssm = ssm_loss(model, x, g, projection, variance_reduced)
    esm = esm_loss(model, x)
    ssm, esm = float(ssm.detach()), float(esm.detach())
    assert ssm == pytest.approx(esm, abs=0.02 * max(1.0, abs(esm)))


def test_esm_ssm_dsm_agree_up_to_a_model_independent_constant():
    """On p_σ: DSM(s) − ½Fisher(s) = const and ESM(s) − ½Fisher(s) = const, for any model s."""
    d, sigma = preset("two_gaussians"), 0.5
    p_sigma = d.noised(sigma)
    n = 400_000
    x = d.sample(n, torch.Generator().manual_seed(0)).double()
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_noisy = x + sigma * z                      # exact samples of p_σ, shared by every model (common noise)
    models = [Exact(p_sigma), Exact(p_sigma, 0.7), Linear([[-1.0, 0.2], [0.1, -0.5]], [0.3, 0.0]),
              Exact(p_sigma, 1.0, torch.tensor([0.5, -0.3], dtype=torch.float64))]
    rows = []
    for m in models:
        dsm = float(dsm_loss(m, x, sigma, torch.Generator().manual_seed(1)))   # draws the same z
        esm = float(esm_loss(m, x_noisy).detach())
        half_fisher = 0.5 * fisher_divergence(m, p_sigma, x_noisy)
        rows.append((dsm - half_fisher, esm - half_fisher))
    dsm_consts = torch.tensor([r[0] for r in rows])
    esm_consts = torch.tensor([r[1] for r in rows])
    assert float(dsm_consts.max() - dsm_consts.min()) < 0.03
    assert float(esm_consts.max() - esm_consts.min()) < 0.03
    # DSM's constant is ½E‖z/σ‖² − ½E_{pσ}‖∇log p_σ‖²; ESM's is −½E_{pσ}‖∇log p_σ‖²
    score_norm = float((p_sigma.score(x_noisy) ** 2).sum(1).mean())
    assert float(dsm_consts.mean()) == pytest.approx(0.5 * 2 / sigma**2 - 0.5 * score_norm, abs=0.03)
    assert float(esm_consts.mean()) == pytest.approx(-0.5 * score_norm, abs=0.03)


def test_dsm_optimum_is_the_score_of_the_noised_density():
    d = preset("two_gaussians")
    cfg = ToyConfig(objective="dsm", sigma=0.5, steps=1500, width=64, depth=2, lr=3e-3)
    model, _ = train(cfg, d)
    p_sigma = d.noised(0.5)
    x = p_sigma.sample(5000, torch.Generator().manual_seed(3))
    err = fisher_divergence(model, p_sigma, x)
    scale = float((p_sigma.score(x) ** 2).sum(1).mean())
    # Much closer to p_σ's score than to the clean density's score
    assert err < 0.05 * scale
    assert err < 0.2 * fisher_divergence(lambda y: d.score(y).float(), p_sigma, x)


def test_ncsn_loss_at_the_exact_score_equals_its_closed_form_minimum():
    """With s = ∇log p_σ: E‖σ s(x̃) + z‖² = D − σ² E_{pσ}‖∇log p_σ‖² (since E[z|x̃] = −σ s)."""
    d = preset("eight_gaussians")
    sigmas = geometric_sigmas(3.0, 0.3, 4)

    class ExactSigma(nn.Module):
        cond = "sigma"

        def forward(self, x, sigma):
            out = torch.empty_like(x)
            for s in sigma.unique():
                m = sigma == s
                out[m] = d.noised(float(s)).score(x[m]).to(x.dtype)
            return out

    g = torch.Generator().manual_seed(0)
    x = d.sample(200_000, g).double()
    loss = float(ncsn_loss(ExactSigma(), x, sigmas.double(), g))
    expected = 0.0
    for s in sigmas.tolist():
        ps = d.noised(s)
        y = ps.sample(200_000, g).double()
        expected += 0.5 * (2 - s**2 * float((ps.score(y) ** 2).sum(1).mean())) / len(sigmas)
    assert loss == pytest.approx(expected, abs=0.01)


def test_continuous_ncsn_levels_are_log_uniform():
    """ncsn_loss(continuous=True) draws σ log-uniformly on [σ_L, σ₁] (mean of log σ at the midpoint,
    variance (log σ₁ − log σ_L)²/12), not only the L levels."""
    seen = []

    class Recorder(nn.Module):
        cond = "sigma"

        def forward(self, x, sigma):
            seen.append(sigma.clone())
            return torch.zeros_like(x)

    sigmas = geometric_sigmas(5.0, 0.05, 4)
    ncsn_loss(Recorder(), torch.zeros(100_000, 2), sigmas, torch.Generator().manual_seed(0), continuous=True)
    log_s = seen[0].double().log()
    lo, hi = math.log(0.05), math.log(5.0)
    assert float(log_s.min()) >= lo - 1e-6 and float(log_s.max()) <= hi + 1e-6
    assert float(log_s.mean()) == pytest.approx((lo + hi) / 2, abs=0.01)
    assert float(log_s.var()) == pytest.approx((hi - lo) ** 2 / 12, rel=0.02)
    assert len(torch.unique(seen[0])) > 1000            # not the 4 discrete levels


def test_ddpm_loss_at_the_exact_eps_equals_its_closed_form():
    d = preset("two_moons")
    sched = DDPMSchedule.linear(50)

    class ExactEps(nn.Module):
        cond = "time"

        def forward(self, x, t):
            out = torch.empty_like(x)
            for ti in t.unique():
                m = t == ti
                q = d.ddpm_marginal(float(sched.alpha_bars[ti]))
                out[m] = (-sched.sqrt_one_minus_alpha_bars[ti] * q.score(x[m])).to(x.dtype)
            return out

    g = torch.Generator().manual_seed(0)
    x0 = d.sample(200_000, g)
    loss = float(ddpm_loss(ExactEps(), x0, sched, g))
    expected = 0.0
    for t in range(sched.T):
        q = d.ddpm_marginal(float(sched.alpha_bars[t]))
        y = q.sample(50_000, g).double()
        expected += (1 - (1 - float(sched.alpha_bars[t])) * float((q.score(y) ** 2).sum(1).mean()) / 2) / sched.T
    assert loss == pytest.approx(expected, abs=0.01)


def test_ddpm_elbo_weights_follow_the_spec_formula():
    s = DDPMSchedule.linear(1000)
    w = ddpm_elbo_weights(s, "beta")
    t = 400
    b, a, ab = float(s.betas[t]), float(s.alphas[t]), float(s.alpha_bars[t])
    assert float(w[t]) == pytest.approx(b**2 / (2 * b * a * (1 - ab)), rel=1e-5)
    wt = ddpm_elbo_weights(s, "beta_tilde")
    assert float(wt[t]) == pytest.approx(b**2 / (2 * float(s.posterior_variance[t]) * a * (1 - ab)), rel=1e-5)
    assert torch.isfinite(wt).all()
    x0 = torch.randn(16, 2)
    assert torch.isfinite(ddpm_loss(ScoreMLP(cond="time"), x0, s, weighting="elbo"))
    with pytest.raises(ValueError, match="weighting"):
        ddpm_loss(ScoreMLP(cond="time"), x0, s, weighting="nope")


def test_noise_losses_are_rank_agnostic_for_images():
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x, c):
            return self.conv(x)

    x = torch.rand(4, 1, 8, 8)
    assert ncsn_loss(Conv(), x, geometric_sigmas(1.0, 0.01, 10)).ndim == 0
    assert ddpm_loss(Conv(), x, DDPMSchedule.linear(100)).ndim == 0


def test_ebm_score_is_minus_energy_gradient_and_trains():
    torch.manual_seed(0)
    energy = EnergyMLP(width=16, depth=2)
    ebm = EBM(energy)
    x = torch.randn(10, 2, requires_grad=True)
    (grad,) = torch.autograd.grad(energy(x).sum(), x)
    torch.testing.assert_close(ebm(x.detach()), -grad)
    with torch.no_grad():
        torch.testing.assert_close(ebm(x.detach()), -grad)
    # the score of an EBM is conservative: its Jacobian is symmetric
    J = torch.autograd.functional.jacobian(lambda y: ebm(y[None])[0], torch.tensor([0.3, -0.2]))
    torch.testing.assert_close(J, J.T, atol=1e-5, rtol=1e-5)
    # every objective backpropagates through the EBM's autograd score
    for name, spec in OBJECTIVES.items():
        model = build_model("ebm", spec.cond, 16, 2, 100)
        params = {"sigma": 0.3, "sigmas": geometric_sigmas(2, 0.1, 3), "schedule": DDPMSchedule.linear(100)}
        obj = make_objective(name, **{k: params[k] for k in spec.needs})
        loss = obj(model, torch.randn(32, 2), torch.Generator().manual_seed(0))
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        # the energy's output bias cannot change a score, so it alone may get no gradient
        assert len(grads) >= len(list(model.parameters())) - 1, name
        assert all(torch.isfinite(g).all() for g in grads), name


def test_conditioned_nets_depend_on_their_condition():
    torch.manual_seed(0)
    x = torch.randn(5, 2)
    ncsn = ScoreMLP(width=32, depth=2, cond="sigma")
    assert not torch.allclose(ncsn(x, torch.full((5,), 0.1)) * 0.1, ncsn(x, torch.full((5,), 1.0)) * 1.0)
    ddpm = ScoreMLP(width=32, depth=2, cond="time")
    assert not torch.allclose(ddpm(x, torch.full((5,), 10)), ddpm(x, torch.full((5,), 900)))
    with pytest.raises(ValueError, match="conditioned on sigma"):
        ncsn(x)


def test_make_objective_validates():
    with pytest.raises(ValueError, match="unknown objective"):
        make_objective("nope")
    with pytest.raises(ValueError, match="needs sigma"):
        make_objective("dsm")
    assert make_objective("ncsn", sigmas=torch.ones(2)).cond == "sigma"
    assert math.isfinite(float(make_objective("esm")(ScoreMLP(16, 1), torch.randn(8, 2)).detach()))
