"""The Samplers tab's live metrics measure each panel against its own target (trainers.studies.chains):
p(x) unconditional, p(x|c) for a panel on class c, and also the tilted p_w(x|c) under CFG with w ≠ 0."""
import numpy as np
import torch

from trainers import fitting, metrics
from trainers.densities import GaussianMixture
from trainers.guidance import TiltedTarget
from trainers.studies import chains

N = 2000


def _density():
    # off-centre, anisotropic, unequal weights; the minority class "south" (0.4): its small component overlaps
    # "north"'s first (where guidance tilts), its large one is far from p's other mass
    covs = np.array([[[0.30, 0.10], [0.10, 0.12]], [[0.10, 0.0], [0.0, 0.35]],
                     [[0.25, -0.08], [-0.08, 0.15]], [[0.12, 0.0], [0.0, 0.20]]])
    return GaussianMixture([0.35, 0.25, 0.1, 0.3], [[2.5, 1.0], [4.0, 3.0], [1.7, 0.3], [0.5, -3.5]], covs,
                           name="panel_targets", labels=[0, 0, 1, 1], classes=["north", "south"])


def _null(target, ref: torch.Tensor, draws: int = 30) -> np.ndarray:
    """Energy distances of N_METRIC exact draws of `target` to the reference the panel uses."""
    gen, ref_self = torch.Generator().manual_seed(11), metrics.mean_pairwise_distance(ref)
    return np.array([metrics.energy_distance(target.sample(chains.N_METRIC, gen), ref, ref_self)
                     for _ in range(draws)])


def _run(panels, d):
    cfg = fitting.ToyConfig(objective="ncsn")
    trained, exact = chains.score_models(None, cfg, d, d)
    setup = chains.set_up_chains(panels, trained, exact, N, "gaussian", d.plot_bounds(), 0, d)
    xs = [sp.sampler.run(x0, torch.Generator().manual_seed(1)).x.numpy() for sp, x0 in zip(setup.specs, setup.starts)]
    return setup, xs


def test_a_class_panel_is_measured_against_p_x_given_c_not_p_x():
    d = _density()
    cond = d.conditional("south")
    pf = {"sampler": "pf-ode", "source": "exact", "options": {"steps": 40}}
    setup, (x_c, x_u) = _run([{**pf, "class": 1, "guidance": 0.0}, pf], d)
    assert setup.specs[0].target_class == 1 and setup.specs[1].target_class is None
    assert setup.target_names[0]["energy_distance"] == "p(x|c=south)" and setup.target_names[1]["energy_distance"] == "p(x)"
    level_c = np.quantile(_null(cond, chains.reference_samples(cond)), 0.95)
    level_p = np.quantile(_null(d, chains.reference_samples(d)), 0.95)
    m = setup.metric_fns[0](x_c)
    assert "energy_distance_tilted" not in m and len(m["mode_weights"]) == 2      # w = 0: no tilt; south's two modes
    assert m["energy_distance"] <= level_c, (m, level_c)                # the exact conditional score samples p(x|c)
    far = setup.metric_fn(x_c)["energy_distance"]                       # the same samples against p(x): what the tab said before
    assert far > 10 * level_p, (far, level_p)
    # negative control: the unconditional panel is at the exact-sample level of p(x) and far from p(x|c)
    assert setup.metric_fns[1] is setup.metric_fn and setup.metric_fns[1](x_u)["energy_distance"] <= 2 * level_p
    assert setup.metric_fns[0](x_u)["energy_distance"] > 10 * level_c


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
