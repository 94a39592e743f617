"""Training methods (trainers.methods): the losses' closed forms, mutual agreement up to constants,
their optima; the registry and what each method class says (levels, bins, score models, advice)."""
import dataclasses
import math

import pytest
import torch
from torch import nn

from trainers.densities import preset
from trainers.fitting import ToyConfig, method_for, train
from trainers.methods import METHODS, ddpm_elbo_weights, ddpm_loss, dsm_loss, esm_loss, method_class, ncsn_loss, \
    ssm_loss
from trainers.metrics import fisher_divergence
from trainers.nets import EBM, EnergyMLP, ScoreMLP, build_model
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
    # every method's loss backpropagates through the EBM's autograd score
    for name, cls in METHODS.items():
        model = build_model("ebm", cls.cond, 16, 2, 100)
        method = method_for(ToyConfig(objective=name, sigma=0.3, sigma_max=2, sigma_min=0.1, n_levels=3, n_timesteps=100))
        loss = method.loss(model, torch.randn(32, 2), torch.Generator().manual_seed(0))
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


def test_the_registry_names_each_method_once_and_checks_its_parameters():
    assert list(METHODS)[:5] == ["esm", "ssm", "dsm", "ncsn", "ddpm"]
    with pytest.raises(ValueError, match="unknown objective"):
        method_class("nope")
    with pytest.raises(ValueError, match="unknown objective"):
        ToyConfig(objective="nope")
    with pytest.raises(ValueError, match="sigma_min"):
        ToyConfig(objective="ncsn", sigma_min=50.0)                 # outside NCSN's schema range
    with pytest.raises(ValueError, match="schedule"):
        ToyConfig(objective="ddpm", schedule="quadratic")
    with pytest.raises(ValueError, match="no registered method"):
        ToyConfig(extra={"not_a_parameter": 1})
    assert ToyConfig(objective="ncsn").cond == "sigma" and ToyConfig(objective="ddpm").cond == "time"
    assert math.isfinite(float(method_for(ToyConfig(objective="esm")).loss(ScoreMLP(16, 1), torch.randn(8, 2)).detach()))


def test_toy_config_defaults_are_the_methods_parameter_defaults():
    """ToyConfig keeps every built-in method's parameters flat: the same names and defaults; a method added
    as one file (flow matching) keeps its own in `extra`, and an empty `extra` gives its defaults."""
    cfg = ToyConfig()
    own = {f.name for f in dataclasses.fields(ToyConfig)}
    for name, cls in METHODS.items():
        for f in dataclasses.fields(cls.Params):
            if f.name in own:
                assert getattr(cfg, f.name) == f.default, (name, f.name)
        assert ToyConfig(objective=name).params() == cls.Params(), name


def test_terms_average_to_the_loss_with_the_same_draws():
    x = preset("two_gaussians").sample(64, torch.Generator().manual_seed(0))
    for name, cls in METHODS.items():
        cfg = ToyConfig(objective=name, sigma_max=3.0, n_levels=4, n_timesteps=50)
        method, net = method_for(cfg), build_model("mlp", cls.cond, 16, 2, 50)
        loss = method.loss(net, x, torch.Generator().manual_seed(1))
        terms, levels = method.terms(net, x, torch.Generator().manual_seed(1))
        torch.testing.assert_close(terms.mean(), loss)
        bins = method.loss_bins()
        assert (levels is None) == (bins is None), name
        if levels is not None:
            assert len(terms) == len(x) and len(levels) == len(x)
            idx = bins.index(levels)
            assert idx.min() >= 0 and idx.max() < len(bins.centres)


def test_each_method_says_its_levels_target_and_advice():
    d = preset("two_gaussians")
    ncsn = method_for(ToyConfig(objective="ncsn", sigma_max=2.0, sigma_min=0.1, n_levels=3))
    assert [round(lev.sigma, 4) for lev in ncsn.levels()] == [0.1, 0.4472, 2.0]       # least noisy first
    assert ncsn.loss_bins().centres == pytest.approx([0.1, 0.4472, 2.0], rel=1e-4)
    assert ncsn.natural_sampler == "annealed" and ncsn.sampler_defaults("annealed").n_levels == 3
    assert ncsn.divergence_advice() == "raise σ_L (min) (now 0.1)"
    ddpm = method_for(ToyConfig(objective="ddpm", n_timesteps=40))
    assert [lev.t for lev in ddpm.levels()] == list(range(40)) and ddpm.natural_sampler == "ddpm"
    assert ddpm.loss_bins().centres == pytest.approx([1.0 + 2 * i for i in range(20)])
    torch.testing.assert_close(ddpm.target_density(d, 39).covariance(), torch.eye(2, dtype=torch.float64),
                               atol=0.05, rtol=0)                                        # q(x_T): nearly N(0, I)
    assert ddpm.divergence_advice() == ""
    dsm = method_for(ToyConfig(objective="dsm", sigma=0.3))
    assert dsm.levels()[0].sigma == 0.3 and dsm.evaluation_levels() == [0.3]
    assert dsm.target_density(d, 0.0).covariance().trace() == pytest.approx(d.noised(0.3).covariance().trace())
    assert dsm.divergence_advice() == "raise DSM σ (now 0.3)" and dsm.loss_bins() is None
    esm = method_for(ToyConfig(objective="esm"))
    assert esm.target_density(d, 0.0) is d and esm.levels()[0].label == "σ = 0 (the data density)"


def test_the_score_field_of_a_method_is_its_score_models():
    """Method.score_field: the network through its ScoreModel; for DDPM −ε_θ/√(1−ᾱ_t) at timestep t."""
    torch.manual_seed(0)
    x = torch.randn(50, 2)
    ddpm = method_for(ToyConfig(objective="ddpm", n_timesteps=30))
    net = build_model("mlp", "time", 16, 2, 30).eval()
    sch = ddpm.schedule()
    t = torch.full((50,), 7, dtype=torch.long)
    with torch.no_grad():
        expected = -net(x, t) / sch.sqrt_one_minus_alpha_bars[7]
    torch.testing.assert_close(ddpm.score_field(ddpm.score_model(net), 7)(x), expected, rtol=1e-5, atol=1e-5)
    dsm = method_for(ToyConfig(objective="dsm", sigma=0.2))
    net = build_model("mlp", None, 16, 2).eval()
    sm = dsm.score_model(net)
    assert sm.sigma_min == sm.sigma_max == 0.2
    with torch.no_grad():
        torch.testing.assert_close(dsm.score_field(sm, 0.2)(x), net(x))


@pytest.fixture
def weighted_dsm():
    """A new method declared in one place (as a new file would): DSM at a fixed σ with the weight
    λ = σ^p and its own parameter p, which ToyConfig has no field for."""
    from dataclasses import dataclass

    from trainers.methods import DSM, register_method
    from trainers.schema import option

    @register_method
    class WeightedDSM(DSM):
        name, title, short = "wdsm", "DSM with weight σ^p", "weighted DSM"

        @dataclass
        class Params:
            sigma: float = option(0.1, "DSM σ", "noise std σ", lo=0.001, hi=20.0)
            weight_power: float = option(2.0, "Weight power p", "λ(σ) = σ^p", lo=0.0, hi=4.0)

        def loss(self, net, x, generator=None):
            return self.params.sigma ** self.params.weight_power * dsm_loss(net, x, self.params.sigma, generator)
    yield WeightedDSM
    del METHODS["wdsm"]


def test_a_method_declared_in_one_place_trains_from_the_cli_and_keeps_its_parameter(weighted_dsm, tmp_path):
    from trainers import toy
    from trainers.fitting import load_checkpoint

    out = tmp_path / "w.pt"
    assert toy.main(["train", "--density", "two_gaussians", "--objective", "wdsm", "--weight-power", "1.5",
                     "--sigma", "0.4", "--steps", "20", "--batch", "64", "--width", "16", "--out", str(out)]) == 0
    _, cfg, _, _ = load_checkpoint(out)
    assert cfg.objective == "wdsm" and cfg.extra == {"weight_power": 1.5} and cfg.sigma == 0.4
    method = method_for(cfg)
    assert isinstance(method, weighted_dsm) and method.params.weight_power == 1.5
    with pytest.raises(ValueError, match="weight_power"):
        ToyConfig(objective="wdsm", extra={"weight_power": 9.0})
    assert toy.main(["evaluate", "--ckpt", str(out), "--density", "two_gaussians", "--n", "64", "--json"]) == 0


def test_a_method_says_whether_it_has_levels_and_fits_a_noised_density():
    """has_levels: a score at every level (the PF-ODE's likelihood, the History tab's learned density);
    noised: a level above σ = 0 (the memorisation meter). The studies ask these, not the method's name."""
    from trainers.studies import learned_density, memorisation

    for name, levels, noised in (("esm", False, False), ("ssm", False, False), ("dsm", False, True),
                                 ("ncsn", True, True), ("ddpm", True, True)):
        cfg = ToyConfig(objective=name)
        m = method_for(cfg)
        assert (m.has_levels, m.noised) == (levels, noised), name
        assert (learned_density.model_problem(cfg) == "") == levels, name
        assert (memorisation.model_problem(cfg) == "") == noised, name
