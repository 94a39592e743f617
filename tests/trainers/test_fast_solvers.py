"""The fast solvers (issue #23; docs/math.md §13): DPM-Solver++ 2M/3M, UniPC, EDM and Euler ancestral.

- Step for step against diffusers' schedulers (DPMSolverMultistepScheduler with
  algorithm_type="dpmsolver++", UniPCMultistepScheduler bh2, HeunDiscreteScheduler,
  EulerAncestralDiscreteScheduler) on the scheduler's own σ's, both driven by the exact score of a
  Gaussian mixture: diffusers moves x = y/√(1+σ²) with ε = −σ s(y, σ); we move y. Every state of
  the chain is compared in diffusers' coordinates x (|x| ≲ 3): max difference < 1e-4.
- The EDM churn against a literal transcription of Karras et al.'s Alg. 2.
- Measured order of convergence on a smooth density: per-particle distance to a converged solve from
  the same start (torchdiffeq's dopri5 at rtol 1e-8 where installed checks the study's own
  reference), log–log slope within ±0.3 of −order.
- Chains stepped together, restarted and sharing one sampler keep their own history; the CLIs take
  the new names with --nfe.
"""
import math

import pytest
import torch

from trainers import samplers
from trainers.densities import GaussianMixture
from trainers.samplers import ChainState, advance_together, build_sampler
from trainers.samplers.dpmpp_2m import DPMSolverPP2M
from trainers.samplers.dpmpp_3m import DPMSolverPP3M
from trainers.samplers.edm import EDMSampler
from trainers.samplers.euler_ancestral import EulerAncestralSampler
from trainers.samplers.unipc import UniPCSampler
from trainers.score_models import ExactScore

NEW = ("dpmpp-2m", "dpmpp-3m", "unipc", "edm", "euler-a")
TOL = 1e-4


def density():
    """Three anisotropic components, unequal weights (used by these tests only)."""
    return GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.2, -0.3], [0.2, 1.4]],
                           [[[0.20, 0.05], [0.05, 0.10]], [[0.08, 0.0], [0.0, 0.25]], [[0.15, -0.04], [-0.04, 0.12]]])


@pytest.fixture(scope="module")
def exact():
    return ExactScore(density())


def start(n=64, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def run_diffusers(sched, model, x, generator=None):
    """diffusers' loop on x (VP), ε from the exact score; the chain's states x_k, k = 1 … n."""
    states = []
    for i, t in enumerate(sched.timesteps):
        sigma = float(sched.sigmas[sched.step_index if sched.step_index is not None else i])
        inp = sched.scale_model_input(x, t) if hasattr(sched, "init_noise_sigma") and sched.init_noise_sigma != 1 else x
        y = inp * math.sqrt(1 + sigma ** 2)
        eps = -sigma * model.score(y, sigma)
        x = sched.step(eps, t, x, **({"generator": generator} if generator is not None else {})).prev_sample
        states.append(x.clone())
    return states


def run_ours(sampler, y, generator=None):
    states = []
    for k in range(sampler.n_steps):
        y = sampler.step(y, k, generator).x
        states.append(y.clone())
    return states


def max_gap_vp(ours, theirs, sigmas):
    """max |x_ours − x_diffusers| with x = y/√(1+σ²) at each state's level σ_{k+1}."""
    return max(float((o / math.sqrt(1 + s ** 2) - t).abs().max()) for o, t, s in zip(ours, theirs, sigmas[1:]))


def dpm_scheduler(order, lof, steps, **config):
    diffusers = pytest.importorskip("diffusers")
    s = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                              algorithm_type="dpmsolver++", solver_order=order,
                                              lower_order_final=lof, **config)
    s.set_timesteps(steps)
    return s


@pytest.mark.parametrize("cls,order", [(DPMSolverPP2M, 2), (DPMSolverPP3M, 3)])
@pytest.mark.parametrize("lof", [True, False])
@pytest.mark.parametrize("steps,config", [(10, {}), (7, {"use_karras_sigmas": True}),
                                          (8, {"final_sigmas_type": "sigma_min"}),
                                          (6, {"use_lu_lambdas": True})])
def test_dpmpp_matches_diffusers_step_for_step(exact, cls, order, lof, steps, config):
    sched = dpm_scheduler(order, lof, steps, **config)
    sigmas = sched.sigmas.double()
    x0 = start()
    theirs = run_diffusers(sched, exact, x0.clone())
    ours = run_ours(cls(exact, sigmas, lower_order_final=lof), x0 * math.sqrt(1 + float(sigmas[0]) ** 2))
    assert len(ours) == len(theirs) == steps
    assert max_gap_vp(ours, theirs, sigmas.tolist()) < TOL
    other = DPMSolverPP3M if cls is DPMSolverPP2M else DPMSolverPP2M     # the check tells the orders apart
    wrong = run_ours(other(exact, sigmas, lower_order_final=lof), x0 * math.sqrt(1 + float(sigmas[0]) ** 2))
    assert max_gap_vp(wrong, theirs, sigmas.tolist()) > 10 * TOL


def test_dpmpp_time_grid_is_diffusers_default_spacing(exact):
    """Our "time" grid on a model with a DDPM schedule is diffusers' "linspace" timesteps + 0."""
    from trainers.schedules import DDPMSchedule
    sched = dpm_scheduler(2, True, 10)
    model = ExactScore(density(), schedule=DDPMSchedule.linear(1000))
    ours = build_sampler("dpmpp-2m", model, grid="time", steps=10)
    assert torch.allclose(ours.sigmas, sched.sigmas.double(), rtol=1e-5)
    with_min = build_sampler("dpmpp-2m", model, grid="time", steps=10, final="sigma_min")
    ref = dpm_scheduler(2, True, 10, final_sigmas_type="sigma_min")
    assert with_min.n_steps == 10 and abs(float(with_min.sigmas[-1]) - float(ref.sigmas[-1])) < 1e-4 * float(ref.sigmas[-1])


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("steps,config", [(10, {}), (7, {"use_karras_sigmas": True}),
                                          (8, {"final_sigmas_type": "sigma_min"})])
def test_unipc_matches_diffusers_step_for_step(exact, order, steps, config):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.UniPCMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear", solver_order=order,
                                              solver_type="bh2", predict_x0=True, lower_order_final=True, **config)
    sched.set_timesteps(steps)
    sigmas = sched.sigmas.double()
    x0 = start()
    theirs = run_diffusers(sched, exact, x0.clone())
    ours = run_ours(UniPCSampler(exact, sigmas, order=order), x0 * math.sqrt(1 + float(sigmas[0]) ** 2))
    assert max_gap_vp(ours, theirs, sigmas.tolist()) < TOL
    # the corrector matters: without it the chain is another one
    plain = run_ours(UniPCSampler(exact, sigmas, order=order, corrector=False), x0 * math.sqrt(1 + float(sigmas[0]) ** 2))
    assert max_gap_vp(plain, theirs, sigmas.tolist()) > 100 * TOL


def test_edm_without_churn_is_diffusers_heun(exact):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.HeunDiscreteScheduler(num_train_timesteps=1000, beta_schedule="linear", use_karras_sigmas=True)
    sched.set_timesteps(8)
    y0 = start() * float(sched.init_noise_sigma)
    states, y = [], y0.clone()
    for t in sched.timesteps:                      # diffusers' Heun moves y (VE) and is called 2n − 1 times
        sigma = float(sched.sigmas[sched.step_index if sched.step_index is not None else 0])
        eps = -sigma * exact.score(y, sigma)
        y = sched.step(eps, t, y).prev_sample
        if sched.state_in_first_order:
            states.append(y.clone())
    levels = sched.sigmas.double().unique_consecutive()
    ours = EDMSampler(exact, levels, s_churn=0.0)
    assert ours.nfe == len(sched.timesteps)
    gaps = [float((a - b).abs().max()) / math.sqrt(1 + s ** 2) for a, b, s in
            zip(run_ours(ours, y0.clone()), states, levels.tolist()[1:])]
    assert max(gaps) < TOL
    pf = build_sampler("pf-ode", exact, solver="heun")     # EDM with S_churn = 0 is the PF-ODE's Heun
    edm = build_sampler("edm", exact, s_churn=0.0, steps=pf.n_steps)
    assert torch.allclose(pf.sigmas, edm.sigmas.float().double(), rtol=1e-6)
    y = pf.prior_std * start()
    assert torch.allclose(pf.run(y.clone()).x, edm.run(y.clone()).x, atol=1e-5)


def test_edm_churn_is_algorithm_2(exact):
    """A literal transcription of Karras et al. 2022, Alg. 2, with the same noise draws."""
    s = build_sampler("edm", exact, steps=6, s_churn=30.0, s_tmin=0.05, s_tmax=3.0, s_noise=1.003)
    t = s.sigmas.tolist()
    N = len(t) - 1
    x = t[0] * start()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    ours = s.run(x.clone(), g1).x
    D = lambda y, sig: y + sig ** 2 * exact.score(y, sig)          # noqa: E731
    for i in range(N):
        gamma = min(30.0 / N, math.sqrt(2) - 1) if 0.05 <= t[i] <= 3.0 else 0.0
        t_hat = t[i] + gamma * t[i]
        if gamma > 0:
            x = x + math.sqrt(t_hat ** 2 - t[i] ** 2) * 1.003 * torch.randn(x.shape, generator=g2)
        d = (x - D(x, t_hat)) / t_hat
        x_next = x + (t[i + 1] - t_hat) * d
        if t[i + 1] != 0:
            d2 = (x_next - D(x_next, t[i + 1])) / t[i + 1]
            x_next = x + (t[i + 1] - t_hat) * (0.5 * d + 0.5 * d2)
        x = x_next
    assert any(h > s0 for h, s0 in zip(s._hat, t))      # some steps churned, others (σ > S_tmax) did not
    assert any(h == s0 for h, s0 in zip(s._hat, t[:-1]))
    assert torch.allclose(ours, x, atol=1e-5)
    assert not EDMSampler.deterministic(EDMSampler.Options()) and EDMSampler.deterministic(EDMSampler.Options(s_churn=0))


def test_euler_ancestral_matches_diffusers_with_the_same_noise(exact):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.EulerAncestralDiscreteScheduler(num_train_timesteps=1000, beta_schedule="linear")
    sched.set_timesteps(12)
    y0 = start() * float(sched.init_noise_sigma)
    states, y = [], y0.clone()
    g = torch.Generator().manual_seed(3)
    for t in sched.timesteps:
        sigma = float(sched.sigmas[sched.step_index if sched.step_index is not None else 0])
        y = sched.step(-sigma * exact.score(y, sigma), t, y, generator=g).prev_sample
        states.append(y.clone())
    levels = sched.sigmas.double()
    ours = run_ours(EulerAncestralSampler(exact, levels), y0.clone(), torch.Generator().manual_seed(3))
    gaps = [float((a - b).abs().max()) / math.sqrt(1 + s ** 2) for a, b, s in zip(ours, states, levels.tolist()[1:])]
    assert max(gaps) < TOL


# ---------------------------------------------------------------- order of convergence

def smooth():
    """Two wide components: the exact score is smooth down to σ_min = 0.05."""
    return GaussianMixture([0.6, 0.4], [[-1.0, 0.3], [1.0, -0.2]], [[[0.6, 0.1], [0.1, 0.4]], [[0.5, 0.0], [0.0, 0.7]]])


@pytest.fixture(scope="module")
def order_study():
    from trainers.studies.convergence import run_order_study
    before = torch.get_num_threads()
    torch.set_num_threads(1)          # a module fixture runs before the per-test one_torch_thread
    try:
        return run_order_study(ExactScore(smooth(), sigma_min=0.05), ("euler", "heun", "dpmpp-2m", "dpmpp-3m",
                                                                        "unipc"), nfes=(10, 20, 40, 80), n=100, seeds=2)
    finally:
        torch.set_num_threads(before)


def test_measured_orders_are_the_solvers_orders(order_study):
    slopes = {c.label: c.slope for c in order_study.curves}
    for c in order_study.curves:
        assert len(c.fitted) == 4, c              # every budget is well above the reference's own error
        assert abs(c.slope + c.nominal) < 0.3, slopes
    assert order_study.reference_error < 1e-5


def test_the_converged_solve_is_dopri5(order_study):
    """The study's reference (3M, 2048 steps) against an adaptive dopri5 at rtol 1e-8 from the same start."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    from trainers.studies.convergence import converged_solve
    model = ExactScore(smooth(), sigma_min=0.05)
    probe = build_sampler("dpmpp-2m", model, steps=2)
    smax, smin = float(probe.sigmas[0]), 0.05
    y0 = samplers.prior_sample(probe, start(32, 4).double())

    def f(sigma, y):                                   # dy/dσ = (y − D(y, σ))/σ = −σ s(y, σ)
        return -float(sigma) * model.score(y, float(sigma))
    y = torchdiffeq.odeint(f, y0, torch.tensor([smax, smin], dtype=torch.float64), method="dopri5",
                           rtol=1e-8, atol=1e-10)[-1]
    truth = y + smin ** 2 * model.score(y, smin)
    assert float((converged_solve(model, y0, smax, smin) - truth).norm(dim=1).max()) < 1e-5


def test_log_log_slope_and_order_table(order_study):
    from trainers.studies.convergence import format_order_table, log_log_slope
    assert log_log_slope([10, 20, 40], [1.0, 0.25, 0.0625]) == pytest.approx(-2.0)
    text = format_order_table(order_study)
    assert "dpmpp-3m" in text and "slope" in text and order_study.to_dict()["curves"][0]["label"] == "euler"


# ---------------------------------------------------------------- chains, restarts, CLIs

@pytest.mark.parametrize("name", ["dpmpp-2m", "dpmpp-3m", "unipc"])
def test_chains_sharing_one_sampler_keep_their_own_history(exact, name):
    s = build_sampler(name, exact, steps=8)
    a, b = s.prior_std * start(16, 1), s.prior_std * start(16, 2)
    alone_a, alone_b = s.run(a.clone()).x, s.run(b.clone()).x
    chains = [ChainState(s, a.clone()), ChainState(s, b.clone())]
    for target in range(1, 9):                        # stepped together, one step at a time, as the GUI does
        assert advance_together(chains, [target, target])
    assert torch.equal(chains[0].x, alone_a) and torch.equal(chains[1].x, alone_b)
    assert chains[0].nfe == s.nfe == 8


def test_a_restarted_chain_warms_up_again_and_an_equal_state_resumes(exact):
    s = build_sampler("dpmpp-3m", exact, steps=8)
    y = s.prior_std * start(8, 3)
    outs = []
    for k in range(4):
        out = s.step(y, k)
        outs.append(out)
        y = out.x
    assert [o.label.split("order ")[1][0] for o in outs] == ["1", "2", "3", "3"]
    assert s.step(y.clone(), 4).label.endswith("order 3)")          # an equal state (a copy) resumes
    assert s.step(y + 1e-3, 4).label.endswith("order 1)")           # a state it never handed out: afresh


def test_the_toy_cli_samples_with_the_new_solvers_and_runs_the_order_study(tmp_path, capsys):
    import json

    import numpy as np

    from trainers.toy import main
    path = smooth().save(tmp_path / "d.json")
    for name in NEW:
        assert main(["sample", "--score", "exact", "--density", str(path), "--sampler", name, "--nfe", "10",
                     "--n", "50", "--out", str(tmp_path / "x.npy")]) == 0
        assert np.isfinite(np.load(tmp_path / "x.npy")).all()
        assert "network evaluations" in capsys.readouterr().out
    assert main(["sample", "--score", "exact", "--density", str(path), "--sampler", "pf-ode", "--grid", "time",
                 "--n", "5", "--out", str(tmp_path / "x.npy")]) == 1
    assert "grid" in capsys.readouterr().err
    assert main(["order", "--density", str(path), "--solvers", "euler,dpmpp-2m", "--nfe", "4,8", "--n", "20",
                 "--seeds", "1", "--sigma-min", "0.1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [c["label"] for c in result["curves"]] == ["euler", "dpmpp-2m"] and result["sigma_min"] == pytest.approx(0.1)


def test_new_samplers_are_registered_with_forms_and_flags():
    from trainers import schema
    for name in NEW:
        cls = samplers.SAMPLERS[name]
        assert schema.specs(cls.Options) and cls.title and cls.description
    assert samplers.SAMPLERS["dpmpp-2m"].deterministic(samplers.resolve_options("dpmpp-2m"))
    assert not samplers.SAMPLERS["euler-a"].deterministic(samplers.resolve_options("euler-a"))
    with pytest.raises(ValueError, match="order"):
        build_sampler("unipc", ExactScore(density()), order=4)
