"""One score model, every sampler: the VE/VP conversions (docs/math.md §7) against exact mixture
scores, the new samplers' identities (§8), and any model driving any sampler."""
import pytest
import torch

from trainers import samplers
from trainers.densities import GaussianMixture, preset
from trainers.fitting import ToyConfig, initial_for, make_sampler, method_for
from trainers.metrics import energy_distance
from trainers.nets import ScoreMLP
from trainers.schedules import DDPMSchedule, karras_sigmas, sigma_grid, spaced_timesteps
from trainers.score_models import (EpsScoreModel, ExactScore, FixedLevelScoreModel, Query, SigmaScoreModel,
                                   sigma_of_alpha_bar)

MIX = GaussianMixture([0.3, 0.7], [[-2.0, 0.5], [1.5, -1.0]], [[[0.4, 0.1], [0.1, 0.3]], [[0.2, 0.0], [0.0, 0.6]]])
SCHED = DDPMSchedule.linear(200)


def exact_eps_net(density, schedule):
    """An 'ε-network' that is exact at integer timesteps: ε* = −√(1−ᾱ_t) ∇log q_t (asserts integer t)."""
    def net(x, t):
        ti = t.round().long()
        assert torch.allclose(t.float(), ti.float(), atol=1e-4), "asked for a fractional timestep"
        out = torch.empty_like(x)
        for v in torch.unique(ti).tolist():
            m = ti == v
            q = density.ddpm_marginal(float(schedule.alpha_bars[v]))
            out[m] = -float(schedule.sqrt_one_minus_alpha_bars[v]) * q.score(x[m]).float()
        return out
    return net


def exact_sigma_net(density):
    def net(y, sigma):
        return torch.cat([density.noised(float(s)).score(y[i:i + 1]).float() for i, s in enumerate(sigma)])
    return net


@pytest.mark.parametrize("t", [0, 17, 120, 199])
def test_exact_score_gives_eps_of_the_ddpm_marginal(t):
    """ε(x, t) = −σ_t s(x/√ᾱ_t, σ_t) with s the exact score of p_σ equals −√(1−ᾱ_t) ∇log q_t(x)."""
    x = MIX.ddpm_marginal(float(SCHED.alpha_bars[t])).sample(500, torch.Generator().manual_seed(t)).double()
    via_ve = ExactScore(MIX).eps(x, t, SCHED)
    direct = -SCHED.sqrt_one_minus_alpha_bars[t].double() * MIX.ddpm_marginal(float(SCHED.alpha_bars[t])).score(x)
    torch.testing.assert_close(via_ve, direct, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", [0, 50, 199])
def test_an_eps_model_gives_the_score_of_p_sigma(t):
    """s(y, σ) = −ε(y/√(1+σ²), t(σ))/σ; at σ = σ_t the ε-model is asked for exactly timestep t."""
    model = EpsScoreModel(exact_eps_net(MIX, SCHED), SCHED)
    sigma = float(sigma_of_alpha_bar(SCHED.alpha_bars[t].double()))
    y = MIX.noised(sigma).sample(400, torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.score(y, sigma), MIX.noised(sigma).score(y).float(), rtol=1e-4, atol=1e-4)
    assert model.range_note([sigma]) == ""


def test_a_sigma_model_gives_eps_of_q_t_and_flags_levels_outside_its_range():
    model = SigmaScoreModel(exact_sigma_net(MIX), 0.05, 5.0)
    t = 60
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(2))
    direct = -SCHED.sqrt_one_minus_alpha_bars[t] * MIX.ddpm_marginal(float(SCHED.alpha_bars[t])).score(x).float()
    torch.testing.assert_close(model.eps(x, t, SCHED), direct, rtol=1e-4, atol=1e-5)
    assert model.extrapolated == []                      # σ_60 ≈ 1.1 lies in [0.05, 5]
    model.score(x, 20.0)
    assert model.extrapolated == [20.0, 20.0]
    note = model.range_note()
    assert "trained on σ ∈ [0.05, 5]" in note and "σ = 20" in note and "extrapolates" in note
    assert model.range_note([0.1, 1.0]) == ""


def test_fractional_timesteps_interpolate_log_sigma_between_integer_ones():
    model = EpsScoreModel(lambda x, t: x, SCHED)
    log_s = sigma_of_alpha_bar(SCHED.alpha_bars.double()).log()
    at = model.timestep_of_sigma(log_s.exp())
    torch.testing.assert_close(at, torch.arange(SCHED.T, dtype=torch.float32), atol=1e-4, rtol=0)
    mid = ((log_s[10] + log_s[11]) / 2).exp()
    assert float(model.timestep_of_sigma(mid.reshape(1))) == pytest.approx(10.5, abs=1e-4)
    # outside the schedule's range the timestep is clamped, and the request flagged
    assert float(model.timestep_of_sigma(torch.tensor([1e-6]))) == 0.0
    model.score(torch.zeros(2, 2), 1e-3)
    assert "extrapolates" in model.range_note()


def test_batched_evaluation_equals_one_query_at_a_time():
    torch.manual_seed(0)
    net = ScoreMLP(32, 2, cond="time", n_timesteps=SCHED.T)
    model = EpsScoreModel(net, SCHED)
    a, b = torch.randn(7, 2), torch.randn(5, 2)
    queries = [Query.eps(a, 30, SCHED), Query.score(b, 0.7)]
    together = model.evaluate(queries)
    torch.testing.assert_close(together[0], model.eps(a, 30, SCHED), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(together[1], model.score(b, 0.7), rtol=1e-5, atol=1e-6)


def test_ddim_eta_one_over_all_steps_is_ddpm_with_beta_tilde_step_for_step():
    model = ExactScore(MIX)
    ddpm = samplers.DDPMSampler(model, SCHED, "beta_tilde")
    ddim = samplers.DDIMSampler(model, SCHED, spaced_timesteps(SCHED.T, SCHED.T), eta=1.0)
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    xa, xb = x, x
    for k in range(SCHED.T):
        xa, xb = ddpm.step(xa, k, g1).x, ddim.step(xb, k, g2).x
        torch.testing.assert_close(xa, xb, rtol=1e-4, atol=1e-4)


def test_one_ddim_eta_zero_step_is_one_euler_pf_ode_step_in_y_coordinates():
    torch.manual_seed(1)
    net = ScoreMLP(32, 2, cond="time", n_timesteps=SCHED.T)
    model = EpsScoreModel(net, SCHED)
    for t, t_next in [(150, 120), (40, 39), (5, 0)]:
        ab, ab_next = SCHED.alpha_bars[t].double(), SCHED.alpha_bars[t_next].double()
        ddim = samplers.DDIMSampler(model, SCHED, [t, t_next], eta=0.0)
        x = torch.randn(100, 2)
        x_next = ddim.step(x, 0).x
        ode = samplers.PFODESampler(model, [sigma_of_alpha_bar(ab), sigma_of_alpha_bar(ab_next)], solver="euler")
        y_next = ode.step((x / ab.sqrt()).float(), 0).x
        torch.testing.assert_close(y_next, (x_next / ab_next.sqrt()).float(), rtol=1e-4, atol=1e-4)


# The PF-ODE against the closed-form Gaussian flow map and the PC step by hand: test_independent_checks.py.


def test_heun_costs_two_evaluations_per_step_except_the_step_to_zero():
    model = ExactScore(MIX, 0.01, 10)
    counted = samplers.ChainState(samplers.build_sampler("pf-ode", model, nfe=39), torch.randn(4, 2))
    assert counted.sampler.n_steps == 20 and counted.sampler.nfe == 39
    samplers.advance_together([counted], [counted.sampler.n_steps])
    assert counted.nfe == 39
    pc = samplers.ChainState(samplers.build_sampler("pc", model, nfe=40, corrector_steps=1), torch.randn(4, 2))
    samplers.advance_together([pc], [pc.sampler.n_steps])
    assert pc.nfe == pc.sampler.nfe == 2 * pc.sampler.n_steps - 1


def test_karras_grid_follows_eq_5():
    s = karras_sigmas(80.0, 0.002, 18, rho=7.0)
    assert float(s[0]) == pytest.approx(80.0, rel=1e-5) and float(s[-1]) == pytest.approx(0.002, rel=1e-5)
    i = 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert float(s[i]) == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(sigma_grid("geometric", 1.0, 0.01, 3), torch.tensor([1.0, 0.1, 0.01]))
    with pytest.raises(ValueError, match="unknown σ grid"):
        sigma_grid("linear", 1.0, 0.1, 3)


@pytest.mark.parametrize("name, nfe", [("pf-ode", 99), ("pc", 199)])
def test_pf_ode_and_pc_with_the_exact_score_reach_the_target(name, nfe):
    """Energy distance to an exact sample within 2× that of an independent exact sample (n = 2000)."""
    d = preset("eight_gaussians")
    g = torch.Generator().manual_seed(0)
    ref, other = d.sample(2000, g), d.sample(2000, g)
    sampler = samplers.build_sampler(name, ExactScore(d), nfe=nfe)
    assert sampler.nfe <= nfe
    g = torch.Generator().manual_seed(1)
    x = sampler.run(initial_for(sampler, 2000, generator=g), g).x
    # V-statistics: "2× an exact sample's" only means something for the biased (positive) statistic
    assert energy_distance(x, ref, unbiased=False) <= 2 * energy_distance(other, ref, unbiased=False)


def test_every_sampler_spends_about_the_nfe_it_is_given():
    model = ExactScore(MIX, 0.05, 5.0)
    for name in samplers.SAMPLERS:
        for nfe in (5, 20, 100):
            s = samplers.build_sampler(name, model, nfe=nfe)
            assert 0.5 * nfe <= s.nfe <= nfe, (name, nfe, s.nfe)


def test_registry_entries_describe_themselves():
    for name, info in samplers.SAMPLERS.items():
        assert info.name == name and info.title and info.convention and info.description
        assert set(info.params) <= set(samplers.option_names())
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        samplers.build_sampler("euler", ExactScore(MIX))


def test_single_level_model_answers_every_sigma_and_says_it_extrapolates():
    model = FixedLevelScoreModel(lambda y: -y, sigma=0.3)
    s = samplers.build_sampler("annealed", model, samplers.SamplerOptions(sigma_max=3.0, sigma_min=0.3, steps=1))
    assert "trained on σ = 0.3" in model.range_note(s.sigmas_used())


def _quality(d, cfg, model, name, **overrides):
    sampler = make_sampler(name, cfg, model, d, **overrides)
    g = torch.Generator().manual_seed(1)
    x = sampler.run(initial_for(sampler, 4000, generator=g), g).x
    return energy_distance(x, d.sample(4000, torch.Generator().manual_seed(9)), unbiased=False)   # compared by ratio


@pytest.mark.slow
@pytest.mark.parametrize("objective, others", [("ncsn", [("ddpm", {}), ("ddim", {"nfe": 100})]),
                                               ("ddpm", [("annealed", {}), ("pf-ode", {"nfe": 99})])])
def test_a_model_drives_the_other_family_s_samplers_as_well_as_its_own(trained_toy, objective, others):
    """NCSN → DDPM and DDIM; DDPM → annealed Langevin and the PF-ODE: energy distance (4000 points)
    within 2× (plus 0.003) that of the model's own default sampler."""
    cfg, model, d, _ = trained_toy("eight_gaussians", objective)
    own = _quality(d, cfg, model, method_for(cfg).natural_sampler)
    for name, overrides in others:
        ed = _quality(d, cfg, model, name, **overrides)
        print(f"{objective} model: own {method_for(cfg).natural_sampler} {own:.4f}, {name} {ed:.4f}")
        assert ed <= 2 * own + 0.003, (name, ed, own)


def test_an_ncsn_model_trained_on_discrete_levels_is_flagged_between_them():
    cfg = ToyConfig(objective="ncsn", sigma_max=5.0, sigma_min=0.05, n_levels=4, ncsn_continuous=False)
    from trainers.fitting import build_network, score_model
    model = build_network(cfg)
    sm = score_model(model, cfg)
    on_levels = samplers.build_sampler("annealed", sm, n_levels=4, steps=1)
    assert sm.range_note(on_levels.sigmas_used()) == ""
    ode = samplers.build_sampler("pf-ode", sm, nfe=19)
    assert "trained on its 4 levels only" in sm.range_note(ode.sigmas_used())
    continuous = score_model(model, ToyConfig(objective="ncsn", sigma_max=5.0, sigma_min=0.05, n_levels=4))
    assert continuous.range_note(ode.sigmas_used()) == ""


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_matches_diffusers_ddim_scheduler(eta):
    """Optional: where diffusers is installed, our DDIM steps equal DDIMScheduler's on its own
    ("leading") timesteps, with the same ε and the same noise."""
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                  set_alpha_to_one=True, steps_offset=0)
    ref.set_timesteps(20)
    sched = DDPMSchedule.linear(1000)
    model = ExactScore(MIX)
    ours = samplers.DDIMSampler(model, sched, [int(t) for t in ref.timesteps], eta=eta)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    mine, theirs = x.clone(), x.clone()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for k, t in enumerate(ref.timesteps):
        mine = ours.step(mine, k, g1).x
        eps = model.eps(theirs, int(t), sched)
        theirs = ref.step(eps, t, theirs, eta=eta, generator=g2).prev_sample
        torch.testing.assert_close(mine, theirs, rtol=1e-3, atol=1e-3)
