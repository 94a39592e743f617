"""Optional cross-checks of flow matching against its peers on the same batch, noise and times:
TorchCFM's ConditionalFlowMatcher (path, target and loss) and its exact OT plan (POT's ot.emd, which
TorchCFM's ExactOptimalTransportConditionalFlowMatcher samples from). TorchCFM puts the data at t = 1:
t_cfm = 1 − t, x0_cfm = z (noise), x1_cfm = x₀ (data), u_cfm = −(z − x₀). Skipped where the packages
are absent (pip install pot torchcfm). facebookresearch's `flow_matching` (in the test extras, so CI runs
it): its AffineProbPath with the CondOT scheduler puts the data at t = 1 the same way."""
from __future__ import annotations

import pytest
import torch

from trainers.densities import preset
from trainers.flows import T_SCALE, coupling_cost, linear_path, ot_pair
from trainers.methods.flow_matching import fm_loss


def _batch(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return preset("two_moons").sample(n, g).double(), torch.randn(n, 2, generator=g, dtype=torch.float64)


def test_path_target_and_loss_agree_with_torchcfm():
    cfm = pytest.importorskip("torchcfm.conditional_flow_matching")
    x0, z = _batch()
    t = torch.rand(len(x0), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    matcher = cfm.ConditionalFlowMatcher(sigma=0.0)
    _, xt_cfm, ut_cfm = matcher.sample_location_and_conditional_flow(z, x0, 1 - t)
    torch.testing.assert_close(linear_path(x0, z, t), xt_cfm, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z - x0, -ut_cfm, rtol=0, atol=0)

    def net(x, c):                     # any velocity field: TorchCFM's model sees (t_cfm, x), returns −v
        return torch.sin(x) * (c / T_SCALE)[:, None]
    ours = fm_loss(net, x0, torch.Generator().manual_seed(1), z=z)
    t_ours = torch.rand(len(x0), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, xt, ut = matcher.sample_location_and_conditional_flow(z, x0, 1 - t_ours)
    theirs = torch.mean((-net(xt, T_SCALE * t_ours) - ut) ** 2)          # TorchCFM's loss: mean over elements
    torch.testing.assert_close(ours, theirs * x0.shape[1], rtol=1e-12, atol=1e-12)


def test_path_and_target_agree_with_facebookresearch_flow_matching():
    fm_path = pytest.importorskip("flow_matching.path")
    from flow_matching.path.scheduler import CondOTScheduler
    x0, z = _batch(seed=3)
    t = torch.rand(len(x0), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    theirs = fm_path.AffineProbPath(scheduler=CondOTScheduler()).sample(x_0=z, x_1=x0, t=1 - t)
    torch.testing.assert_close(linear_path(x0, z, t), theirs.x_t, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z - x0, -theirs.dx_t, rtol=1e-12, atol=1e-12)   # d/dt' = −d/dt, t' = 1 − t
    # the check can fail: the path at t instead of 1 − t is another point
    assert not torch.allclose(linear_path(x0, z, 1 - t), theirs.x_t)


def test_minibatch_ot_is_pots_exact_plan():
    ot = pytest.importorskip("ot")
    for seed in range(5):
        x0, z = _batch(128, seed)
        plan = ot.emd(ot.unif(128), ot.unif(128), (torch.cdist(x0, z) ** 2).numpy())
        paired = z[torch.from_numpy(plan.argmax(1))]
        assert abs(coupling_cost(x0, ot_pair(x0, z)) - coupling_cost(x0, paired)) < 1e-9
        assert coupling_cost(x0, ot_pair(x0, z)) <= coupling_cost(x0, z)


def test_torchcfm_exact_ot_sampler_pairs_from_the_same_plan():
    otmod = pytest.importorskip("torchcfm.optimal_transport")
    x0, z = _batch(64, 9)
    plan = otmod.OTPlanSampler(method="exact").get_map(z, x0)          # noise → data, as TorchCFM calls it
    ours = ot_pair(x0, z)                                               # z reordered to x0's rows
    data_of_noise = torch.from_numpy(plan.argmax(1))                    # the data row each noise row goes to
    reordered = torch.empty_like(z)
    reordered[data_of_noise] = z
    torch.testing.assert_close(reordered, ours, rtol=0, atol=0)
