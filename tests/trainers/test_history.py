"""Loss per noise level and weight snapshots (trainers/studies/history.py), and the per-example loss terms
that feed them."""
import pytest
import torch

from trainers.densities import preset
from trainers.fitting import ToyConfig, build_model_and_method, training_data, training_steps
from trainers.studies.history import LossByLevel, SnapshotHistory


def test_loss_by_level_bins_and_averages():
    h = LossByLevel(0.01, 10.0, n_bins=3, log=True, decay=0.0)
    # bins in log σ: [0.01, 0.1), [0.1, 1), [1, 10]
    h.update(torch.tensor([0.02, 0.05, 0.5, 5.0, 20.0]), torch.tensor([1.0, 3.0, 7.0, 4.0, 6.0]))
    levels, means = h.curve()
    assert means == pytest.approx([2.0, 7.0, 5.0])              # beyond hi joins the last bin
    assert levels == pytest.approx([10 ** -1.5, 10 ** -0.5, 10 ** 0.5], rel=1e-9)     # geometric bin centres
    h2 = LossByLevel(0, 100, n_bins=4, log=False, decay=0.5)
    h2.update(torch.tensor([10, 10]), torch.tensor([2.0, 4.0]))
    h2.update(torch.tensor([10]), torch.tensor([5.0]))
    assert h2.curve() == ([12.5], [pytest.approx(0.5 * 3.0 + 0.5 * 5.0)])


def test_snapshots_keep_a_cap_the_first_and_the_newest():
    h = SnapshotHistory(every=10, max_snapshots=8)
    model = torch.nn.Linear(2, 2)
    for step in range(0, 1001):
        with torch.no_grad():
            model.bias.fill_(step)
        h.maybe_add(step, model)
    assert len(h.steps) <= 8 and h.steps[0] == 0 and h.steps[-1] == 1000
    assert h.steps == sorted(h.steps)
    gaps = [b - a for a, b in zip(h.steps, h.steps[1:])]
    assert gaps[-1] <= gaps[0]                                   # recent training denser than early
    step, state = h.at(999)
    assert step == max(s for s in h.steps if s <= 999) and float(state["bias"][0]) == step
    again = SnapshotHistory.from_dict(h.to_dict())
    assert again.steps == h.steps


@pytest.mark.parametrize("objective", ["ncsn", "ddpm"])
def test_training_steps_report_per_example_terms_whose_mean_is_the_loss(objective):
    cfg = ToyConfig(objective=objective, width=16, depth=1, batch=64, n_timesteps=50, sigma_max=5.0)
    d = preset("two_moons")
    model, method = build_model_and_method(cfg, d)
    info = next(training_steps(model, method, training_data(cfg, d)[0], batch=64))
    assert info.levels.shape == (64,) and info.level_losses.shape == (64,)
    assert float(info.level_losses.mean()) == pytest.approx(info.loss, rel=1e-6)
    if objective == "ncsn":
        assert float(info.levels.min()) >= 0.05 * (1 - 1e-6) and float(info.levels.max()) <= 5.0 * (1 + 1e-6)
    else:
        assert info.levels.dtype == torch.long and int(info.levels.max()) < 50
