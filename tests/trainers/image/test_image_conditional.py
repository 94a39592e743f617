"""Class-conditional image runs (issue #22, item 7): ddpm_digits_cond trains one U-Net for s(x|c) and s(x)
with label dropout, samples a class with classifier-free guidance from the command line, and the digit
judge reports the share of the requested class and the samples' diversity."""
import json

import numpy as np
import pytest
import torch

from trainers.image.__main__ import main
from trainers.image.config import ConfigError, load_config
from trainers.image.datasets import DatasetError, batch_stream, check_labels, digits_dataset
from trainers.image.judge import digits_judge, within_distance
from trainers.image.methods import generate, guided_score_model
from trainers.image.train import load_run, train
from trainers.image.unet import build_net
from trainers.score_models import Query

TINY = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "train.batch_size=16", "train.warmup=3", "train.log_every=1", "train.n_grid=10", "train.threads=1",
        "train.preview_nfe=3", "ddpm.T=20"]


def tiny(**over):
    return load_config("ddpm_digits_cond", TINY + [f"{k}={v}" for k, v in over.items()])


def randomise(net):
    """Every weight drawn afresh: the zero-initialised output layers would hide the class otherwise."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


def test_the_bundled_config_is_conditional_and_bad_values_are_named():
    cfg = load_config("ddpm_digits_cond")
    assert cfg.model.n_classes == 10 and cfg.train.p_uncond == 0.1
    assert load_config("ddpm_digits").model.n_classes == 0
    for bad, field in (("model.n_classes=-1", "model.n_classes"), ("train.p_uncond=1", "train.p_uncond")):
        with pytest.raises(ConfigError, match=field):
            load_config("ddpm_digits_cond", [bad])


def test_an_unconditional_unet_draws_the_same_weights_and_the_class_embedding_acts():
    torch.manual_seed(0)
    plain = build_net(load_config("ddpm_digits", TINY))
    torch.manual_seed(0)
    cond = build_net(tiny())
    shared = {k: v for k, v in cond.state_dict().items() if not k.endswith("class_embedding.weight")}
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in shared.items())
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([3, 7, 11, 15])
    randomise(cond)
    null = cond(x, t)
    assert torch.equal(null, cond(x, t, torch.full((4,), 10)))  # None is the null class (row n_classes)
    assert not torch.allclose(cond(x, t, 3), null)
    with pytest.raises(ValueError, match="not class-conditional"):
        plain(x, t, 3)


def test_labelled_batches_follow_the_images_and_unlabelled_data_is_refused():
    ds = digits_dataset()
    check_labels(ds, 10)
    images, labels = next(batch_stream(ds, 32, seed=0, start_step=5, with_labels=True))
    assert torch.equal(images, next(batch_stream(ds, 32, seed=0, start_step=5)))
    every = ds.batch(torch.arange(len(ds))).flatten(1)
    idx = [int(torch.nonzero((every == im.flatten()).all(1))[0]) for im in images[:5]]
    assert labels[:5].tolist() == ds.labels[idx].tolist()
    with pytest.raises(DatasetError, match="model.n_classes=10"):
        check_labels(ds, 9)
    ds.labels = None
    with pytest.raises(DatasetError, match="no labels"):
        check_labels(ds, 10)


def test_label_dropout_and_resume_give_the_uninterrupted_run(tmp_path):
    cfg = tiny(**{"train.n_steps": 6, "train.ckpt_every": 3, "train.sample_every": 0})
    train(cfg, tmp_path / "a", quiet=True, stop_after=3)
    train(cfg, tmp_path / "a", quiet=True, resume=True)
    train(cfg, tmp_path / "b", quiet=True)
    a, b = load_run(tmp_path / "a")[1], load_run(tmp_path / "b")[1]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    # the dropout itself: p_uncond = 0.5 drops about half the labels of 6 × 16 draws
    from trainers.conditional import drop_labels
    drops = drop_labels(torch.zeros(4000, dtype=torch.long), 10, 0.5, torch.Generator().manual_seed(0))
    assert abs(float((drops == 10).float().mean()) - 0.5) < 4 * (0.25 / 4000) ** 0.5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("cond") / "run"
    out = train(tiny(**{"train.n_steps": 4, "train.ckpt_every": 4, "train.sample_every": 4}), path, quiet=True)
    assert out["finished"] and (path / "samples" / "step_00000004.png").exists()   # previews every class
    return path


def test_cfg_on_images_is_conditional_at_w0_and_unconditional_at_minus_one(run):
    cfg, model, _, _ = load_run(run)
    randomise(model)
    q = [Query.score(torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)), 0.5)]
    cond = guided_score_model(cfg, model, label=4).evaluate(q)[0]
    uncond = guided_score_model(cfg, model).evaluate(q)[0]
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(guided_score_model(cfg, model, label=4, guidance=0.0).evaluate(q)[0], cond)
    torch.testing.assert_close(guided_score_model(cfg, model, label=4, guidance=-1.0).evaluate(q)[0], uncond)
    torch.testing.assert_close(guided_score_model(cfg, model, label=4, guidance=2.0).evaluate(q)[0],
                               3 * cond - 2 * uncond)


def test_one_class_for_all_equals_that_class_per_sample(run):
    cfg, model, _, _ = load_run(run)
    one = generate(cfg, model, 6, "cpu", seed=2, sampler="ddim", nfe=3, batch_size=4, label=7, guidance=1.5)
    each = generate(cfg, model, 6, "cpu", seed=2, sampler="ddim", nfe=3, batch_size=4, label=[7] * 6,
                    guidance=1.5)
    torch.testing.assert_close(one.x, each.x)
    other = generate(cfg, model, 6, "cpu", seed=2, sampler="ddim", nfe=3, batch_size=4, label=2, guidance=1.5)
    assert not torch.allclose(one.x, other.x)


def test_cli_samples_and_rates_a_class_with_guidance_and_explains_bad_requests(run, tmp_path, capsys):
    out = tmp_path / "three.npy"
    assert main(["sample", "--run", str(run), "--n", "5", "--class", "3", "--guidance", "2", "--sampler", "ddim",
                 "--nfe", "3", "--out", str(out)]) == 0
    msg = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert msg["class"] == 3 and msg["guidance"] == 2.0 and np.load(out).shape == (5, 1, 8, 8)
    assert main(["evaluate", "--run", str(run), "--n", "60", "--bpd-n", "0", "--class", "3", "--guidance", "2",
                 "--sampler", "ddim", "--nfe", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    c = report["class_report"]
    assert c["requested_class"] == 3 and report["guidance"] == 2.0
    assert c["reference_real_class"]["share_requested"] > 0.9           # the held-out 3s are 3s
    rec = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])
    assert rec["class"] == 3 and rec["class_figures"]["set_size"] == c["set_size"]
    for argv, message in ((["--guidance", "2"], "needs a class"), (["--class", "10"], "0 … 9")):
        assert main(["sample", "--run", str(run), "--n", "2", "--out", str(tmp_path / "x.npy"), *argv]) == 2
        assert message in capsys.readouterr().err


def test_an_unconditional_run_refuses_a_class(tmp_path, capsys):
    path = tmp_path / "plain"
    train(load_config("ddpm_digits", TINY + ["train.n_steps=1", "train.sample_every=0"]), path, quiet=True)
    assert main(["sample", "--run", str(path), "--n", "2", "--class", "1", "--out", str(tmp_path / "x.npy")]) == 2
    assert "not class-conditional" in capsys.readouterr().err


def test_the_class_report_measures_fidelity_and_diversity_with_controls():
    judge = digits_judge()
    real3 = torch.from_numpy(judge.X_test[judge.y_test == 3]).float().reshape(-1, 1, 8, 8)
    r = judge.class_report(real3, 3)
    assert r["samples"]["share_requested"] > 0.9
    assert judge.class_report(real3, 5)["samples"]["share_requested"] < 0.1       # control: the wrong class
    collapsed = real3[:1].expand(len(real3), 1, 8, 8)                               # control: one image repeated
    assert judge.class_report(collapsed, 3)["samples"]["nn_within"] == 0.0 < r["samples"]["nn_within"]
    # within_distance by hand: four points on a line at 0, 1, 3, 7 → nearest others 1, 1, 2, 4
    X = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert within_distance(X, 4) == pytest.approx(2.0)
    assert within_distance(np.vstack([X, X + 100]), 4) == pytest.approx(2.0)


def test_the_guidance_benchmark_prints_its_table_verdicts_and_control(run, tmp_path, capsys):
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "bench_digits_guidance", Path(__file__).resolve().parents[3] / "benchmarks" / "bench_digits_guidance.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main([str(run), "--weights", "0,2", "--seeds", "1,2", "--n-per-class", "3", "--nfe", "2",
                       "--grid", str(tmp_path / "g.png"), "--json", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    assert "share of the requested class rises, w = 2 vs 0" in out and "control: share rises" in out
    figures = json.loads((tmp_path / "f.json").read_text())
    assert len(figures["rows"]["2.0"]) == 2 and len(figures["rows"]["2.0"][0]["per_class_share"]) == 10
    assert (tmp_path / "g.png").exists()
