"""The lab's w axis (trainers.studies.guidance.run_w_axis): the exact scores' CFG and a class-conditional
model's on the same seeds, as curves against w with their spread over the seeds."""
import numpy as np

from trainers.densities import preset
from trainers.fitting import ToyConfig, build_network, score_model
from trainers.studies.guidance import format_w_axis, run_w_axis


def test_the_w_axis_runs_the_exact_score_and_a_conditional_model_on_the_same_seeds():
    d = preset("three_classes")
    cfg = ToyConfig(objective="ncsn", n_classes=3, width=16, depth=1, sigma_max=4.0)
    untrained = score_model(build_network(cfg).eval(), cfg, d)
    a = run_w_axis(d, "right", (0.0, 2.0), ("ddim",), model=untrained, n=200, seeds=2)
    assert list(a.results) == ["exact", "model"] and a.note == ""
    for source, r in a.results.items():
        c = a.curve(source, "ddim")
        assert list(c["w"]) == [0.0, 2.0]
        per_seed = np.array([r.row("ddim", w).per_seed["to_tilted"] for w in (0.0, 2.0)])
        np.testing.assert_allclose(c["to_tilted"], per_seed.mean(1))
        np.testing.assert_allclose(c["to_tilted_sd"], per_seed.std(1, ddof=1))
    exact, model = a.curve("exact", "ddim"), a.curve("model", "ddim")
    # the exact conditional score (w = 0) reaches p(x|c); the untrained network does not, by far
    assert exact["to_conditional"][0] <= exact["threshold_conditional"]
    assert model["to_conditional"][0] > 10 * model["threshold_conditional"]
    assert "== trained model ==" in format_w_axis(a)
    # negative control: an unconditional network has no class, so no model curves, and the note says why
    plain = ToyConfig(objective="ncsn", width=16, depth=1, sigma_max=4.0)
    b = run_w_axis(d, 1, (0.0,), ("ddim",), model=score_model(build_network(plain).eval(), plain, d), n=100, seeds=2)
    assert list(b.results) == ["exact"] and "not class-conditional" in b.note
