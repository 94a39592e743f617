"""ScoreMLP.infer, the sampling fast path, against the network's own forward pass."""
import pytest
import torch

from trainers.nets import ScoreMLP
from trainers.schedules import DDPMSchedule
from trainers.score_models import EpsScoreModel, Query, SigmaScoreModel


def _net(cond, width=64, depth=3):
    torch.manual_seed(0)
    return ScoreMLP(width, depth, cond=cond, n_timesteps=100).eval()


def _cond(cond, n, shared, gen):
    if cond is None:
        return None
    if cond == "sigma":
        c = torch.rand(n, generator=gen) * 5 + 0.01
    else:
        c = torch.rand(n, generator=gen) * 99
    return c[:1].expand(n).clone() if shared else c


@pytest.mark.parametrize("cond", [None, "sigma", "time"])
@pytest.mark.parametrize("shared", [True, False])
def test_infer_equals_forward_for_every_condition_and_chunking(cond, shared):
    """Batches shorter than, equal to and longer than one chunk (INFER_ROWS = 2048), a scalar
    condition, a shared and a per-row one: all within 1e-5 relative of forward (float32 rounding)."""
    net = _net(cond)
    gen = torch.Generator().manual_seed(1)
    batches = []
    for n in (1, 2047, 2048, 5000):
        x = torch.randn(n, 2, generator=gen) * 3
        batches.append((x, _cond(cond, n, shared, gen)))
    if cond is not None:
        batches.append((torch.randn(300, 2, generator=gen), torch.tensor(0.7 if cond == "sigma" else 12.0)))
    with torch.no_grad():
        want = [net(x, c) for x, c in batches]
        got = net.infer(batches)
    for w, g in zip(want, got):
        assert g.shape == w.shape
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-5 * float(w.abs().max())), float((g - w).abs().max())


@pytest.mark.parametrize("cond", [None, "sigma", "time"])
def test_infer_of_an_empty_batch_is_empty(cond):
    net = _net(cond)
    c = None if cond is None else torch.zeros(0)
    (out,) = net.infer([(torch.zeros(0, 2), c)])
    assert out.shape == (0, 2)


def test_infer_does_not_change_the_inputs_and_returns_new_tensors():
    net = _net("sigma")
    x = torch.randn(3000, 2)
    c = torch.full((3000,), 0.3)
    x0, c0 = x.clone(), c.clone()
    a, b = net.infer([(x, c), (x, c)])
    assert torch.equal(x, x0) and torch.equal(c, c0)
    assert a.data_ptr() != b.data_ptr() and torch.equal(a, b)


def test_score_models_use_infer_without_autograd_and_forward_with_it(monkeypatch):
    """ScoreModel.evaluate answers several requests through infer (one call) and gives what the
    concatenated forward pass gives; with autograd on (likelihood divergences) it keeps the graph."""
    net = _net("sigma")
    model = SigmaScoreModel(net, 0.01, 5.0)
    gen = torch.Generator().manual_seed(2)
    queries = [Query.score(torch.randn(4000, 2, generator=gen), s) for s in (0.05, 0.5, 4.0)]
    calls = []
    real = net.infer
    monkeypatch.setattr(net, "infer", lambda batches: calls.append(len(batches)) or real(batches))
    got = model.evaluate(queries)
    assert calls == [3]
    with torch.no_grad():
        want = [net(q.x, q.sigma) for q in queries]
    for w, g in zip(want, got):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-6)
    y = torch.randn(50, 2, requires_grad=True)
    s = model.score_with_grad(y, 0.5)
    assert s.requires_grad and calls == [3]


def test_an_eps_model_at_fractional_timesteps_through_infer():
    sched = DDPMSchedule.linear(100)
    net = _net("time")
    model = EpsScoreModel(net, sched)
    y = torch.randn(2500, 2, generator=torch.Generator().manual_seed(3))
    sigma = 0.8                                  # between two timesteps: t(σ) is fractional
    got = model.score(y, sigma)
    t = model.timestep_of_sigma(torch.full((2500,), sigma))
    assert float(t[0]) != round(float(t[0]))
    with torch.no_grad():
        want = -net(y / (1 + sigma ** 2) ** 0.5, t) / sigma
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
