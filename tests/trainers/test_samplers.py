"""Samplers: stationary laws, mode weights, step API, divergence handling."""

import math

import pytest
import torch

from trainers import samplers
from trainers.samplers.base import StepOutput, noise
from trainers.densities import GaussianMixture, preset
from trainers.schedules import DDPMSchedule, geometric_sigmas
from trainers.score_models import ExactScore, Query, ScoreFunction

GAUSS = GaussianMixture([1.0], [[1.0, -2.0]], [[[1.0, 0.3], [0.3, 0.5]]])


def test_langevin_reaches_the_gaussian_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    x0 = samplers.initial_particles(20_000, "uniform", (-5, 5, -5, 5), g)
    x = samplers.LangevinSampler(ExactScore(GAUSS), eps=0.005, n_steps=2000).run(x0, g).x.double()
    torch.testing.assert_close(x.mean(0), GAUSS.means[0], atol=0.03, rtol=0)
    # ULA's O(ε) bias is below 1% of the covariance at ε = 0.005
    torch.testing.assert_close(torch.cov(x.T), GAUSS.covs[0], atol=0.03, rtol=0)


def test_annealed_langevin_with_exact_scores_recovers_mode_weights_that_plain_langevin_misses():
    d = preset("two_gaussians")          # weights 0.8 / 0.2, modes 6 apart with std 0.5
    g = torch.Generator().manual_seed(0)
    x0 = samplers.initial_particles(5000, "uniform", d.plot_bounds(), g)
    plain = samplers.LangevinSampler(ExactScore(d), eps=0.01, n_steps=1000).run(x0, g).x
    sigmas = geometric_sigmas(6.0, 0.05, 10)
    annealed = samplers.AnnealedLangevinSampler(ExactScore(d), sigmas, eps=0.1 * 0.05**2,
                                         steps_per_level=100).run(x0, g).x
    left_annealed = float((annealed[:, 0] < 0).float().mean())
    left_plain = float((plain[:, 0] < 0).float().mean())
    assert abs(left_annealed - 0.8) < 0.05
    assert abs(left_plain - 0.8) > 0.15       # stuck where the uniform start put them: ≈ 0.5


def test_ddpm_with_exact_eps_samples_the_gaussian():
    sched = DDPMSchedule.linear(500)
    g = torch.Generator().manual_seed(0)
    for variance in ("beta", "beta_tilde"):
        x = samplers.DDPMSampler(ExactScore(GAUSS), sched, variance).run(torch.randn(20_000, 2, generator=g), g).x
        torch.testing.assert_close(x.double().mean(0), GAUSS.means[0], atol=0.04, rtol=0)
        torch.testing.assert_close(torch.cov(x.double().T), GAUSS.covs[0], atol=0.05, rtol=0)


def test_step_api_and_run_give_the_same_chain_and_frames():
    d = preset("eight_gaussians")
    sampler = samplers.AnnealedLangevinSampler(ExactScore(d), geometric_sigmas(5, 0.2, 3), 1e-3, 7,
                                        final_denoise=True)
    assert sampler.n_steps == 3 * 7 + 1
    x0 = torch.randn(100, 2)
    result = sampler.run(x0, torch.Generator().manual_seed(1), record_every=5)
    g = torch.Generator().manual_seed(1)
    x = x0
    labels = []
    for k in range(sampler.n_steps):
        out = sampler.step(x, k, g)
        x = out.x
        labels.append(out.label)
    torch.testing.assert_close(x, result.x)
    assert result.frame_steps == [0, 5, 10, 15, 20, 22]
    assert result.frames.shape == (6, 100, 2)
    torch.testing.assert_close(result.frames[0], x0)
    assert labels[0].startswith("level 1/3") and labels[-1] == "final denoising step"


def test_annealed_step_sizes_follow_algorithm_1():
    sigmas = geometric_sigmas(1.0, 0.01, 10)
    s = samplers.AnnealedLangevinSampler(ScoreFunction(lambda x, sig: torch.zeros_like(x)), sigmas, eps=2e-5, steps_per_level=100)
    for i in (0, 4, 9):
        assert s.alpha(i) == pytest.approx(2e-5 * float(sigmas[i]) ** 2 / 0.01**2, rel=1e-5)
    # with a zero score, one level of T steps adds variance T·α_i exactly (Monte Carlo)
    x = s.run(torch.zeros(50_000, 1), torch.Generator().manual_seed(0)).x
    expected = sum(100 * s.alpha(i) for i in range(10))
    assert float(x.var()) == pytest.approx(expected, rel=0.03)


def test_diverging_langevin_stops_with_a_helpful_error():
    stiff = GaussianMixture([1.0], [[0.0, 0.0]], [[[0.01, 0], [0, 0.01]]])
    sampler = samplers.LangevinSampler(ExactScore(stiff), eps=0.5, n_steps=500)
    with pytest.raises(samplers.DivergenceError, match=r"Langevin diverged at step \d+.*smaller step size than ε = 0.5") as info:
        sampler.run(torch.randn(10, 2))
    assert 0 <= info.value.step < 500


def test_nan_scores_are_caught_at_the_first_step():
    sampler = samplers.LangevinSampler(ScoreFunction(lambda x, s: torch.full_like(x, float("nan"))), eps=0.1, n_steps=10)
    with pytest.raises(samplers.DivergenceError, match="step 0"):
        sampler.step(torch.zeros(3, 2), 0)


def test_initial_particles():
    g = torch.Generator().manual_seed(0)
    u = samplers.initial_particles(10_000, "uniform", (-1, 3, 10, 12), g)
    assert float(u[:, 0].min()) >= -1 and float(u[:, 0].max()) <= 3 and float(u[:, 1].min()) >= 10
    assert samplers.initial_particles(4, "gaussian", shape=(1, 8, 8)).shape == (4, 1, 8, 8)
    with pytest.raises(ValueError):
        samplers.initial_particles(4, "sobol")


def test_samplers_work_on_images():
    sched = DDPMSchedule.linear(20)
    x = samplers.DDPMSampler(ScoreFunction(lambda x, s: torch.zeros_like(x)), sched, clip_denoised=1.0).run(torch.randn(2, 3, 4, 4)).x
    assert x.shape == (2, 3, 4, 4) and torch.isfinite(x).all()
    a = samplers.AnnealedLangevinSampler(ScoreFunction(lambda x, s: -x / (1 + s[:, None, None, None] ** 2)), geometric_sigmas(1, 0.1, 3),
                                  1e-3, 5)
    assert a.run(torch.rand(2, 1, 4, 4), record_every=5).frames.shape == (4, 2, 1, 4, 4)


def test_exact_langevin_targets_the_low_end_of_the_sampling_range_whatever_the_objective():
    """Plain Langevin targets p_σ at σ = model.sigma_min, as it does with a network (issue #19: it used
    to target p itself with the exact score but p_σmin with a network)."""
    from trainers.fitting import ToyConfig, make_sampler
    d = preset("two_moons")
    x = torch.randn(50, 2)
    for objective in ("dsm", "esm", "ncsn", "ddpm"):
        sampler = make_sampler("langevin", ToyConfig(objective=objective, sigma=1.0, sigma_max=5.0), None, d)
        assert sampler.sigma == sampler.model.sigma_min > 0
        torch.testing.assert_close(sampler.model.score(x, sampler.sigma), d.noised(sampler.sigma).score(x).float())


# ------------------------------------------------------------------ the registry, the options schema, run()
def test_sampler_options_take_any_samplers_field_and_refuse_unknown_names():
    o = samplers.SamplerOptions(eta=0.5, n_levels=4)
    assert (o.eta, o.n_levels, o.snr) == (0.5, 4, None)            # unset: None (the sampler's default)
    with pytest.raises(ValueError, match=r"unknown sampler option\(s\) 'etta'; the options are steps, .*eta"):
        samplers.SamplerOptions(etta=0.5)
    with pytest.raises(ValueError, match="unknown sampler option"):
        o.bogus = 1
    assert samplers.SamplerOptions.from_dict({"eta": 0.2, "langevin_eps": 0.1}) == samplers.SamplerOptions(eta=0.2)
    model = ExactScore(GAUSS, 0.05, 5.0)
    s = samplers.build_sampler("ddim", model, o, steps=7)
    assert (s.eta, s.n_steps) == (0.5, 7)
    assert samplers.build_sampler("pc", model).snr == samplers.PCSampler.Options().snr == 0.16   # one default
    with pytest.raises(ValueError, match=r"DDIM: eta \(η\) must lie in \[0, 1\], got 2"):
        samplers.build_sampler("ddim", model, eta=2.0)
    with pytest.raises(ValueError, match=r"steps must lie in \(0, "):
        samplers.build_sampler("ddpm", model, steps=0)


def test_each_sampler_states_its_own_rules():
    o = samplers.resolve_options
    assert [n for n, c in samplers.SAMPLERS.items() if c.default_init != "gaussian"] == ["langevin"]
    assert samplers.SAMPLERS["ddim"].deterministic(o("ddim", {"eta": 0.0}))
    assert not samplers.SAMPLERS["ddim"].deterministic(o("ddim", {"eta": 0.3}))
    assert samplers.SAMPLERS["pf-ode"].deterministic(o("pf-ode"))
    assert not any(samplers.SAMPLERS[n].deterministic(o(n)) for n in ("langevin", "annealed", "ddpm", "pc"))
    assert samplers.SAMPLERS["pf-ode"].title_for(o("pf-ode", {"solver": "euler"})) == "PF-ODE (euler)"
    assert set(samplers.SAMPLERS["pc"].params) == {"steps", "nfe", "sigma_max", "sigma_min", "snr", "corrector_steps"}


def test_command_line_flags_are_generated_from_the_schemas():
    import argparse

    from trainers import schema

    p = argparse.ArgumentParser()
    names = samplers.add_sampler_arguments(p)
    assert names == samplers.option_names()
    eta = next(s for s in schema.specs(samplers.DDIMSampler.Options) if s.name == "eta")
    help_text = " ".join(p.format_help().split())
    assert "--corrector-steps" in help_text and " ".join(eta.tip.split()).rstrip(".") in help_text
    args = p.parse_args(["--eta", "0.5", "--solver", "euler", "--final-denoise"])
    assert samplers.options_from_args(args) == {"eta": 0.5, "solver": "euler", "final_denoise": True}
    with pytest.raises(SystemExit):
        p.parse_args(["--eta", "2"])                              # out of the field's range


def test_run_reports_each_step_and_stops_when_cancelled():
    model = ExactScore(GAUSS, 0.05, 5.0)
    sampler = samplers.build_sampler("annealed", model, n_levels=3, steps=2)
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    plain = sampler.run(z, torch.Generator().manual_seed(1)).x
    seen = []
    got = sampler.run(z, torch.Generator().manual_seed(1), progress=seen.append).x
    assert torch.equal(got, plain)                                # watching changes nothing
    assert [i["k"] for i in seen] == list(range(1, sampler.n_steps + 1))
    assert [i["sigma"] for i in seen] == [sampler._sigf[k // 2] for k in range(6)]
    assert seen[-1]["label"] == sampler.label(5) and seen[-1]["denoised"].shape == z.shape
    asked = []
    with pytest.raises(samplers.Cancelled, match=r"Annealed Langevin cancelled before step 4/6") as e:
        sampler.run(z, torch.Generator().manual_seed(1), cancelled=lambda: asked.append(1) or len(asked) > 3)
    assert e.value.step == 3


def test_a_sampler_file_that_registers_itself_gets_its_flags_and_options():
    import argparse
    from dataclasses import dataclass

    from trainers.schema import option

    @samplers.register_sampler
    class Drift(samplers.Sampler):
        name, title = "drift-test", "Drift"

        @dataclass
        class Options:
            steps: int = option(3, "Steps", "Steps.", lo=1, hi=100)
            pull: float = option(0.5, "Pull", "How far each step pulls towards the origin.", lo=0.0, hi=1.0)

        @classmethod
        def from_options(cls, model, o):
            s = cls()
            s.model, s.n_steps, s.pull = model, o.steps, o.pull
            return s

        def plan(self, x, k, generator=None):
            return samplers.StepOutput(x * (1 - self.pull))
            yield                                                 # a plan with no score query

    try:
        assert "pull" in samplers.option_names() and samplers.SamplerOptions(pull=0.25).pull == 0.25
        p = argparse.ArgumentParser()
        samplers.add_sampler_arguments(p)
        assert "--pull" in p.format_help() and "drift-test: How far each step pulls" in " ".join(p.format_help().split())
        s = samplers.build_sampler("drift-test", ExactScore(GAUSS), samplers.SamplerOptions(pull=0.25, eta=0.1))
        assert torch.equal(s.run(torch.ones(2, 2)).x, torch.full((2, 2), 0.75**3))
        with pytest.raises(ValueError, match="already registered"):
            samplers.register_sampler(type("Other", (Drift,), {"Options": Drift.Options}))
    finally:
        del samplers.SAMPLERS["drift-test"]


@pytest.mark.parametrize("clip", [None, 0.5])
def test_ddim_at_eta_one_is_ddpm_ancestral_with_beta_tilde_also_when_clipping(clip):
    """DDIM re-derives ε from the clipped x̂₀, so at η = 1 over all timesteps it is DDPM's clipped
    posterior-mean step with σ² = β̃ (with the unclipped ε kept, the clipped case fails: control)."""
    sched = DDPMSchedule.linear(60)
    model = ExactScore(preset("eight_gaussians"))
    x = 0.3 * torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    a = samplers.DDIMSampler(model, sched, eta=1.0, clip_denoised=clip).run(x, torch.Generator().manual_seed(1)).x
    b = samplers.DDPMSampler(model, sched, "beta_tilde", clip).run(x, torch.Generator().manual_seed(1)).x
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    if clip is not None:      # the control: x̂₀ clipped but the model's ε kept (the old DDIM step)
        class KeptEps(samplers.DDIMSampler):
            def plan(self, x, k, generator=None):
                eps = yield Query.eps(x, self.timesteps[k], self.schedule)
                x0 = self._x0(x, eps, k)
                ab_next, sig2 = self._ab_nextf[k], self._sig2f[k]
                x_new = math.sqrt(ab_next) * x0 + math.sqrt(max(1 - ab_next - sig2, 0.0)) * eps
                return StepOutput(x_new + math.sqrt(sig2) * noise(x, generator), x0, "")
        c = KeptEps(model, sched, eta=1.0, clip_denoised=clip).run(x, torch.Generator().manual_seed(1)).x
        assert float((c - b).abs().max()) > 0.1
