"""Class-conditional training (label dropout, one network for s(x|c) and s(x)) and the CLI's guidance flags."""
import math

import numpy as np
import pytest
import torch

from trainers import samplers, toy
from trainers.conditional import class_score, guided_score, sampling_score
from trainers.densities import GaussianMixture, preset
from trainers.fitting import ToyConfig, build_network, initial_for, train, training_data
from trainers.guidance import Guided
from trainers.metrics import mode_weights


def _held_out():
    # a labelled density no preset or other test uses: 2 classes, the first with unequal weights
    return GaussianMixture([0.45, 0.15, 0.4], [[-2.0, 1.5], [-2.0, -1.5], [2.0, 0.0]],
                           np.tile(np.eye(2) * 0.15, (3, 1, 1)), name="held_out", labels=[0, 0, 1],
                           classes=["west", "east"])


def test_label_dropout_rate_and_the_same_points_as_unconditional_training():
    d, n = _held_out(), 20_000
    cfg = ToyConfig(objective="ncsn", n_classes=2, p_uncond=0.3)
    x, y = training_data(cfg, d)[0](n)
    share = float((y == 2).double().mean())
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    kept = y < 2
    assert abs(float((y[kept] == 0).double().mean()) - 0.6) < 4 * math.sqrt(0.6 * 0.4 / int(kept.sum()))
    plain = training_data(ToyConfig(objective="ncsn"), d)[0](n)
    assert torch.equal(x, plain)                     # the labels do not change the points drawn
    fixed_x, _ = training_data(ToyConfig(objective="ncsn", n_classes=2, n_data=50), d)[0](8)
    assert fixed_x.shape == (8, 2)


def test_config_checks():
    with pytest.raises(ValueError, match="noise levels"):
        ToyConfig(objective="dsm", n_classes=2)
    with pytest.raises(ValueError, match="p_uncond"):
        ToyConfig(objective="ncsn", n_classes=2, p_uncond=1.0)
    with pytest.raises(ValueError, match="has 2 classes but the density three_classes has 3"):
        training_data(ToyConfig(objective="ncsn", n_classes=2), preset("three_classes"))[0](4)


@pytest.mark.parametrize("objective", ["ncsn", "ddpm"])
def test_one_network_gives_class_and_null_scores_and_the_fast_path_agrees(objective):
    d = _held_out()
    cfg = ToyConfig(objective=objective, n_classes=2, width=32, depth=2, n_timesteps=50, sigma_max=4.0)
    net = build_network(cfg).eval()
    x = torch.randn(64, 2)
    for c in (0, 1, None):
        sm = class_score(net, cfg, d, c)
        fast = sm.score(x, 0.5)                                      # net.infer with the class folded in
        slow = sm.score_with_grad(x, 0.5).detach()                   # forward with the class embedding
        torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    a, b = class_score(net, cfg, d, 0).score(x, 0.5), class_score(net, cfg, d, None).score(x, 0.5)
    assert not torch.allclose(a, b)                                  # the class embedding matters
    g = guided_score(net, cfg, d, "west", 2.0)
    torch.testing.assert_close(g.score(x, 0.5), 3 * a - 2 * b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="not class-conditional"):
        class_score(build_network(ToyConfig(objective=objective)), cfg, d, 0)


def test_cli_trains_conditionally_and_samples_guided(tmp_path):
    ck, bad = tmp_path / "c.pt", tmp_path / "bad.pt"
    for path, steps in ((ck, "60"), (bad, "5")):
        assert toy.main(["train", "--density", "three_classes", "--objective", "ddpm", "--conditional", "--steps", steps,
                         "--width", "16", "--depth", "1", "--timesteps", "40", "--batch", "64", "--out", str(path)]) == 0
    for extra in (["--class", "right", "--guidance", "2"], ["--score", "exact", "--class", "1", "--guidance", "3"],
                  ["--class", "0", "--guide", "auto", "--bad-ckpt", str(bad), "--guidance", "1"]):
        out = tmp_path / "s.npy"
        assert toy.main(["sample", "--ckpt", str(ck), "--sampler", "ddim", "--nfe", "5", "--n", "50",
                         "--out", str(out)] + extra) == 0
        assert np.isfinite(np.load(out)).all()
    assert toy.main(["sample", "--score", "exact", "--density", "three_classes", "--class", "bottom", "--guidance", "1",
                     "--sampler", "pf-ode", "--nfe", "6", "--n", "20", "--out", str(tmp_path / "e.npy")]) == 0
    assert isinstance(sampling_score(str(ck), None, False, "left", 1.0), Guided)
    for argv in (["--guidance", "1"], ["--class", "9"], ["--guide", "auto", "--class", "0"]):
        assert toy.main(["sample", "--ckpt", str(ck), "--sampler", "ddim", "--out", str(tmp_path / "x.npy")] + argv) != 0
    assert toy.main(["train", "--density", "two_moons", "--conditional", "--steps", "1", "--out", str(tmp_path / "m.pt")]) != 0


@pytest.mark.slow
def test_a_conditional_model_at_w0_samples_each_class_with_its_within_class_weights():
    """On a labelled density no other test uses: DDIM on the trained conditional model at w = 0 puts the
    class's samples on its components with the renormalised weights (0.75 / 0.25 for "west"), and the
    exact conditional score does so to sampling noise."""
    d = _held_out()
    cfg = ToyConfig(density="held_out", objective="ncsn", n_classes=2, width=64, depth=3, steps=1500, batch=256)
    net, _ = train(cfg, d)
    west = d.conditional("west")
    n = 2000
    for sm, tol in ((class_score(net, cfg, d, "west"), 0.06), (sampling_score(None, d, True, "west", 0.0), None)):
        sampler = samplers.build_sampler("ddim", sm, nfe=50)
        gen = torch.Generator().manual_seed(0)
        x = sampler.run(initial_for(sampler, n, "gaussian", None, gen), gen).x
        w = mode_weights(x, west)
        se = math.sqrt(0.75 * 0.25 / n)
        assert abs(float(w[0]) - 0.75) < (tol if tol else 4 * se + 0.01), w
        assert float((d.class_posterior(x.double()).argmax(1) == 0).double().mean()) > 0.97


def test_samplers_tab_panels_take_a_class_and_a_weight():
    from trainers.score_models import ExactScore
    from trainers.studies.chains import chain_spec
    d = preset("three_classes")
    exact = ExactScore(d)
    spec = chain_spec({"sampler": "ddim", "source": "exact", "options": {}, "class": "right", "guidance": 2.0}, None, exact)
    assert isinstance(spec.sampler.model, Guided) and "class right, w = 2" in spec.title
    plain = chain_spec({"sampler": "ddim", "source": "exact", "options": {}}, None, exact)
    assert plain.sampler.model is exact
    # an unconditional network cannot guide by class: the exact score stands in, and the panel says why
    cfg = ToyConfig(objective="ncsn", width=16, depth=1)
    from trainers.fitting import score_model
    trained = score_model(build_network(cfg), cfg, d)
    spec = chain_spec({"sampler": "ddim", "source": "model", "options": {}, "class": 0, "guidance": 1.0}, trained, exact)
    assert "not class-conditional" in spec.note and isinstance(spec.sampler.model, Guided)


@pytest.mark.parametrize("objective", ["ncsn", "ddpm"])
def test_score_field_tab_guided_field(objective):
    from trainers.studies.score_field import guided_field, levels
    d = preset("three_classes")
    cfg = ToyConfig(objective=objective, n_classes=3, width=16, depth=1, n_timesteps=50, sigma_max=4.0)
    net = build_network(cfg).eval()
    pts = torch.randn(30, 2)
    level = levels(cfg, d)[2].value
    f = guided_field(net, cfg, d, "right", 2.0, level, pts)
    np.testing.assert_allclose(f.guided, 3 * f.conditional - 2 * f.unconditional)
    assert f.learned is not None and f.learned.shape == (30, 2) and not np.allclose(f.conditional, f.unconditional)
    plain = guided_field(build_network(ToyConfig(objective=objective, n_timesteps=50)), ToyConfig(objective=objective, n_timesteps=50),
                         d, 1, 1.0, level, pts)
    assert plain.learned is None and "not class-conditional" in plain.note


def test_a_panel_whose_class_the_density_lacks_runs_unguided_and_says_so():
    from trainers.score_models import ExactScore
    from trainers.studies.chains import chain_spec
    for d, c in ((preset("two_gaussians"), 0), (preset("three_classes"), 5)):
        spec = chain_spec({"sampler": "ddim", "source": "exact", "options": {}, "class": c, "guidance": 1.0},
                          None, ExactScore(d))
        assert not isinstance(spec.sampler.model, Guided) and "no class" in spec.note


def test_flow_matching_trains_conditionally_too():
    """Flow matching (a method with a time level) takes the class embedding and label dropout with no
    edit of its own: its loss calls the network the training loop binds the labels to."""
    d = preset("three_classes")
    cfg = ToyConfig(objective="fm", n_classes=3, width=32, depth=2, steps=30, batch=64)
    net, losses = train(cfg, d)
    x = torch.randn(16, 2)
    a, b = (class_score(net, cfg, d, c).score(x, 0.5) for c in (0, 1))
    assert not torch.allclose(a, b)
    g = guided_score(net, cfg, d, 1, 2.0)
    sampler = samplers.build_sampler("flow", g, nfe=10)
    gen = torch.Generator().manual_seed(0)
    assert torch.isfinite(sampler.run(initial_for(sampler, 50, "gaussian", None, gen), gen).x).all()


def test_a_panel_autoguides_the_model_with_a_snapshot():
    from trainers.fitting import score_model
    from trainers.score_models import ExactScore
    from trainers.studies.chains import chain_spec, snapshot_model
    d = preset("three_classes")
    cfg = ToyConfig(objective="ncsn", n_classes=3, width=16, depth=1, sigma_max=4.0)
    good, bad = build_network(cfg).eval(), build_network(ToyConfig(objective="ncsn", n_classes=3, width=16, depth=1,
                                                                    sigma_max=4.0, seed=1)).eval()
    trained, weak = score_model(good, cfg, d), snapshot_model(bad, cfg, d)
    panel = {"sampler": "ddim", "source": "model", "options": {}, "guide": "auto", "guidance": 1.5}
    spec = chain_spec(panel, trained, ExactScore(d), weak)
    assert isinstance(spec.sampler.model, Guided) and spec.sampler.model.guide == "auto" and "autoguidance" in spec.title
    x = torch.randn(8, 2)
    torch.testing.assert_close(spec.sampler.model.score(x, 0.5), 2.5 * trained.score(x, 0.5) - 1.5 * weak.score(x, 0.5))
    spec = chain_spec({**panel, "class": 1}, trained, ExactScore(d), weak)
    assert "class right" in spec.title
    spec = chain_spec(panel, trained, ExactScore(d), None)
    assert "unguided" in spec.note and not isinstance(spec.sampler.model, Guided)
