"""The Samplers tab's live metrics measure each panel against its own target (trainers.studies.chains):
p(x) unconditional, p(x|c) for a panel on class c, and also the tilted p_w(x|c) under CFG with w ≠ 0."""
import numpy as np
import torch

from trainers import fitting, metrics
from trainers.densities import GaussianMixture
from trainers.guidance import TiltedTarget
from trainers.studies import chains
from trainers.studies.lab import quantile_of_means

N = 2000
SEEDS = 4


def _density():
    # off-centre, anisotropic, unequal weights; the minority class "south" (0.4): its small component overlaps
    # "north"'s first (where guidance tilts), its large one is far from p's other mass
    covs = np.array([[[0.30, 0.10], [0.10, 0.12]], [[0.10, 0.0], [0.0, 0.35]],
                     [[0.25, -0.08], [-0.08, 0.15]], [[0.12, 0.0], [0.0, 0.20]]])
    return GaussianMixture([0.35, 0.25, 0.1, 0.3], [[2.5, 1.0], [4.0, 3.0], [1.7, 0.3], [0.5, -3.5]], covs,
                           name="panel_targets", labels=[0, 0, 1, 1], classes=["north", "south"])


def _null(target, ref: torch.Tensor, draws: int = 30) -> list[float]:
    """Energy distances of N_METRIC exact draws of `target` to the reference the panel uses."""
    gen, ref_self = torch.Generator().manual_seed(11), metrics.mean_pairwise_distance(ref)
    return [float(metrics.energy_distance(target.sample(chains.N_METRIC, gen), ref, ref_self))
            for _ in range(draws)]


def _run(panels, d, seed: int = 0):
    """The panels' chains run to the end from exact draws of their target noised to σ_max (the PF-ODE's first
    level), so that what remains is sampling noise: the matched-Gaussian start adds a prior mismatch
    (≈ 0.007 here, the lab's "prior" part)."""
    cfg = fitting.ToyConfig(objective="ncsn")
    trained, exact = chains.score_models(None, cfg, d, d)
    setup = chains.set_up_chains(panels, trained, exact, N, "gaussian", d.plot_bounds(), seed, d)
    gen, xs = torch.Generator().manual_seed(100 + seed), []
    for sp in setup.specs:
        target = d if sp.target_class is None else d.conditional(sp.target_class)
        x0 = target.noised(sp.sampler.model.sigma_max).sample(N, gen)
        xs.append(sp.sampler.run(x0, torch.Generator().manual_seed(seed + 1)).x.numpy())
    return setup, xs


def test_a_class_panel_is_measured_against_p_x_given_c_not_p_x(seeds=SEEDS):
    d = _density()
    cond = d.conditional("south")
    pf = {"sampler": "pf-ode", "source": "exact", "options": {"steps": 40}}
    ed = {"class": [], "class_vs_p": [], "plain": [], "plain_vs_c": []}
    for seed in range(seeds):
        setup, (x_c, x_u) = _run([{**pf, "class": 1, "guidance": 0.0}, pf], d, seed)
        m = setup.metric_fns[0](x_c)
        assert "energy_distance_tilted" not in m and len(m["mode_weights"]) == 2     # w = 0: no tilt; south's two modes
        ed["class"].append(m["energy_distance"])
        ed["class_vs_p"].append(setup.metric_fn(x_c)["energy_distance"])      # what the tab said before: against p(x)
        assert setup.metric_fns[1] is setup.metric_fn
        ed["plain"].append(setup.metric_fns[1](x_u)["energy_distance"])
        ed["plain_vs_c"].append(setup.metric_fns[0](x_u)["energy_distance"])
    assert setup.specs[0].target_class == 1 and setup.specs[1].target_class is None
    assert setup.target_names[0]["energy_distance"] == "p(x|c=south)" and setup.target_names[1]["energy_distance"] == "p(x)"
    # thresholds: the 95% quantile of the K-seed mean energy distance of exact draws (the lab's rule)
    level_c = quantile_of_means([_null(cond, chains.reference_samples(cond))] * seeds)
    level_p = quantile_of_means([_null(d, chains.reference_samples(d))] * seeds)
    mean = {k: float(np.mean(v)) for k, v in ed.items()}
    assert mean["class"] <= level_c, (mean, level_c)             # the exact conditional score samples p(x|c) …
    assert mean["class_vs_p"] > 10 * level_p, (mean, level_p)    # … and is far from p(x)
    # negative control: the unconditional panel is at the exact-sample level of p(x) and far from p(x|c)
    assert mean["plain"] <= level_p and mean["plain_vs_c"] > 10 * level_c, (mean, level_c, level_p)


def test_a_guided_panel_also_reports_the_tilted_target():
    d, w = _density(), 3.0
    panel = {"sampler": "ddim", "source": "exact", "options": {"steps": 5}, "class": "south", "guidance": w}
    setup = chains.set_up_chains([panel], None, chains.score_models(None, fitting.ToyConfig(), d, d)[1], 600, "gaussian",
                                 d.plot_bounds(), 0, d)
    assert setup.specs[0].tilt_w == w and "tilted p_w(x|c=south)" in setup.target_names[0]["energy_distance_tilted"]
    tilted = TiltedTarget(d, 1, w, n=chains.TILTED_GRID)
    # exact draws of the tilted target: at its exact-sample level against the tilted reference, not against p(x|c)
    t_ref = tilted.sample(chains.N_REF, torch.Generator().manual_seed(chains.REF_SEED))
    level_t = np.quantile(_null(tilted, t_ref), 0.95)
    draws = tilted.sample(600, torch.Generator().manual_seed(5)).numpy()
    m = setup.metric_fns[0](draws)
    assert m["energy_distance_tilted"] <= 2 * level_t and m["energy_distance"] > 3 * level_t, (m, level_t)
    # autoguidance has no tilted target: a failed one (no model) samples p(x) and is measured against it
    auto = chains.set_up_chains([{**panel, "guide": "auto"}], None, setup.specs[0].sampler.model, 600, "gaussian",
                                d.plot_bounds(), 0, d)
    assert auto.specs[0].target_class is None and auto.target_names[0]["energy_distance"] == "p(x)"
