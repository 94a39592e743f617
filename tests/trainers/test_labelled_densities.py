"""Labelled mixtures: per-component classes in the JSON, validation, p(x|c), p(c), p(c|x)."""
import json
import math

import numpy as np
import pytest
import torch

from trainers.densities import DensityError, GaussianMixture, preset


def _labelled():
    # not a preset: 3 classes, unequal weights, one class with three components
    return GaussianMixture([0.1, 0.25, 0.15, 0.3, 0.2],
                           [[-2.0, 1.0], [-1.0, -1.5], [2.0, 2.0], [1.0, -2.0], [3.0, 0.5]],
                           np.tile(np.eye(2) * 0.2, (5, 1, 1)), name="held_out",
                           labels=[0, 0, 1, 2, 2], classes=["a", "b", "c"])


def test_json_round_trip_keeps_labels_and_classes(tmp_path):
    d = _labelled()
    path = d.save(tmp_path / "d.json")
    raw = json.loads(path.read_text())
    assert raw["classes"] == ["a", "b", "c"] and [c["label"] for c in raw["components"]] == [0, 0, 1, 2, 2]
    back = GaussianMixture.load(path)
    assert back.classes == d.classes and torch.equal(back.labels, d.labels)
    assert back.to_dict() == d.to_dict()


def test_unlabelled_json_is_unchanged_and_one_class():
    d = preset("two_gaussians")
    assert "classes" not in d.to_dict() and all("label" not in c for c in d.to_dict()["components"])
    assert not d.labelled and d.n_classes == 1
    torch.testing.assert_close(d.class_weights(), torch.ones(1, dtype=torch.float64))
    assert d.conditional(0).to_dict()["components"] == d.to_dict()["components"]


def test_labels_without_names_get_numbered_classes():
    d = GaussianMixture([1, 1], [[0, 0], [1, 1]], np.tile(np.eye(2), (2, 1, 1)), labels=[0, 1])
    assert d.classes == ("class 0", "class 1")


@pytest.mark.parametrize("change, message", [
    (lambda d: d["components"][4].update(label=3), "label 3 is outside the classes 0…2"),
    (lambda d: d["components"][1].pop("label"), "component 1: no \"label\""),
    (lambda d: d["components"][0].update(label=1.5), "not an integer"),
    (lambda d: d["components"][0].update(label=-1), "label -1 is outside"),
    (lambda d: d.update(classes=["a", "a", "c"]), "names a class twice"),
    (lambda d: d.update(classes="abc"), "list of non-empty names"),
])
def test_bad_labels_are_clear_errors(change, message):
    d = _labelled().to_dict()
    change(d)
    with pytest.raises(DensityError, match=message):
        GaussianMixture.from_dict(d)


def test_class_lookup_errors_name_the_classes():
    d = _labelled()
    assert d.class_index("b") == 1 and d.class_index(2) == 2 and d.class_index("2") == 2
    with pytest.raises(DensityError, match=r"0 \(a\), 1 \(b\), 2 \(c\)"):
        d.conditional(5)


def test_conditional_is_the_class_restricted_and_renormalised():
    d = _labelled()
    torch.testing.assert_close(d.class_weights(), torch.tensor([0.35, 0.15, 0.5], dtype=torch.float64))
    c = d.conditional("c")
    assert c.n_components == 2 and c.name == "held_out|c"
    torch.testing.assert_close(c.weights, torch.tensor([0.6, 0.4], dtype=torch.float64))
    # p(x|c) = p(x) p(c|x) / p(c): Bayes on the mixture itself
    x = c.sample(500, torch.Generator().manual_seed(0)).double()     # where p(c|x) does not underflow
    bayes = d.log_prob(x) + d.class_posterior(x)[:, 2].log() - math.log(0.5)
    torch.testing.assert_close(c.log_prob(x), bayes, rtol=1e-9, atol=1e-9)
    # its noised density is the noised conditional, and its score is autograd of log p_σ(x|c)
    xs = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(c.noised(0.7).log_prob(xs).sum(), xs)
    torch.testing.assert_close(c.noised(0.7).score(x), grad, rtol=1e-8, atol=1e-8)


def test_class_frequencies_and_within_class_weights_of_samples():
    """Sample frequencies match p(c) and, within a class, the renormalised weights (4 binomial SE)."""
    d, n = _labelled(), 40_000
    x, y = d.sample_labelled(n, torch.Generator().manual_seed(3))
    assert torch.equal(x, d.sample(n, torch.Generator().manual_seed(3)))       # same draws as sample()
    for c, p in enumerate(d.class_weights().tolist()):
        assert abs(float((y == c).double().mean()) - p) < 4 * math.sqrt(p * (1 - p) / n)
    c = d.conditional("a")
    xc = c.sample(n, torch.Generator().manual_seed(4))
    nearest = torch.cdist(xc.double(), c.means).argmin(1)        # components 4.6 sd apart: nearest = own
    for k, p in enumerate(c.weights.tolist()):
        assert abs(float((nearest == k).double().mean()) - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3


def test_noised_and_marginal_keep_the_classes():
    d = _labelled()
    for t in (d.noised(0.5), d.ddpm_marginal(0.3)):
        assert t.classes == d.classes and torch.equal(t.labels, d.labels)


@pytest.mark.parametrize("name, n_classes", [("three_classes", 3), ("tree", 2)])
def test_class_presets(name, n_classes):
    d = preset(name)
    assert d.n_classes == n_classes
    w = d.class_weights()
    assert float(w.sum()) == pytest.approx(1.0) and all(float(v) > 0.1 for v in w)
    assert float(d.mean().norm()) > 0.05 or name == "tree"        # three_classes is off-centre


def test_brush_strokes_carry_their_class_through_paint_and_erase():
    from trainers import grid
    from trainers.densities import Stroke, from_strokes
    plain = Stroke(np.array([[0.0, 0.0], [1.0, 0.0]]), 0.5)
    blue = Stroke(np.array([[0.0, 2.0], [1.0, 2.0]]), 0.5, label=1)
    d, mass = grid.paint(None, 0.0, plain)
    assert not d.labelled                                      # unlabelled strokes: as before
    d2, mass2 = grid.paint(d, mass, blue)
    assert d2.classes == ("red", "blue") and d2.labels.tolist() == [0] * d.n_components + [1] * (d2.n_components - d.n_components)
    torch.testing.assert_close(d2.class_weights(), torch.tensor([0.5, 0.5], dtype=torch.float64))
    d3, _ = grid.erase(d2, mass2, Stroke(np.array([[0.0, 0.0], [1.0, 0.0]]), 0.6, erase=True))
    assert d3.classes == ("red", "blue") and set(d3.labels.tolist()) == {1}
    assert from_strokes([plain, blue]).classes == ("red", "blue")
