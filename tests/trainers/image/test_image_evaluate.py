"""The image ``evaluate``: bits/dim of DDPM runs (discretised decoder), its absence for NCSN runs,
the digits judge through the shared ``Judge`` path, and the per-checkpoint ``eval.jsonl``."""
import json
import math

import pytest
import torch

from trainers import metrics
from trainers.image import evaluate, judge
from trainers.image.__main__ import main
from trainers.image.config import load_config
from trainers.image.methods import image_method
from trainers.image.unet import build_net

TINY = ["model.ch=16", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "train.batch_size=16", "train.warmup=1", "train.threads=1", "train.sample_every=0"]


def test_bits_per_dim_of_an_untrained_ddpm_is_the_elbo_in_nats_over_d_ln2():
    cfg = load_config("ddpm_digits", TINY + ["ddpm.T=10"])
    torch.manual_seed(0)
    model = build_net(cfg).eval()
    images = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    r = evaluate.bits_per_dim_report(cfg, model, images, seed=5, batch_size=5)   # 3 batches
    assert r["dims"] == 64 and r["n"] == 12 and r["T"] == 10
    assert math.isfinite(r["bits_per_dim"]) and r["bits_per_dim"] > 0
    assert r["bits_per_dim"] == pytest.approx(r["elbo_nats"] / (64 * math.log(2)), rel=1e-12)
    assert r["elbo_nats"] == pytest.approx(r["prior_nats"] + r["diffusion_nats"] + r["decoder_nats"])
    # the same figure straight from the metric, batch by batch with the same seed (same draws of x_t)
    x = (images * 255).round() / 255 * 2 - 1
    torch.manual_seed(5)
    direct = [metrics.ddpm_elbo_nats(model, image_method(cfg).schedule(), chunk, cfg.ddpm.sample_variance,
                                     decoder="discretised")["elbo_nats"] * len(chunk) for chunk in x.split(5)]
    assert r["elbo_nats"] == pytest.approx(sum(direct) / 12, rel=1e-9)
    # the reference decoder variance (Ho et al.'s code): β̃₂ = β₂ (1 − ᾱ₁)/(1 − ᾱ₂)
    betas = image_method(cfg).schedule().betas.double()
    beta_tilde_2 = float(betas[1] * betas[0] / (1 - (1 - betas[0]) * (1 - betas[1])))
    assert r["decoder_variance"] == "reference" and r["decoder_std"] == pytest.approx(math.sqrt(beta_tilde_2))
    # a discrete likelihood: each of the 64 pixels costs at most log 256 nats more than a perfect model
    assert r["decoder_nats"] > 0


def test_bits_per_dim_refuses_ncsn_runs():
    cfg = load_config("ncsn_digits", TINY + ["ncsn.n_levels=3"])
    with pytest.raises(ValueError, match="DDPM"):
        evaluate.bits_per_dim_report(cfg, build_net(cfg), torch.rand(2, 1, 8, 8))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for method, extra in (("ddpm", "ddpm.T=10"), ("ncsn", "ncsn.n_levels=3")):
            assert main(["train", "--config", f"{method}_digits", "--out", str(root / method), "--quiet",
                         *TINY, extra, "train.n_steps=2", "train.ckpt_every=1", "train.keep_ckpts=2",
                         "ncsn.steps_per_level=2"]) == 0
    finally:
        torch.set_num_threads(before)
    return root


def test_evaluate_json_of_a_ddpm_run_has_bits_per_dim_and_the_digits_judge(runs, capsys):
    run = runs / "ddpm"
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--n", "20", "--bpd-n", "16", "--device", "cpu",
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    b = rep["bits_per_dim"]
    assert b["n"] == 16 and b["dims"] == 64 and math.isfinite(b["bits_per_dim"]) and b["bits_per_dim"] > 0
    assert "training images" in b["source"]                  # the digits have no test split
    assert rep["judge"] == "digits" and rep["samples"]["n"] == 20
    assert rep["classifier_test_accuracy"] > 0.95
    assert rep["reference_real_test_digits"]["mean_confidence"] > rep["reference_uniform_noise"]["mean_confidence"]
    assert rep["recorded_in"] == str(run / "eval.jsonl")
    rec = evaluate.read_eval_records(run)[-1]
    assert rec["step"] == 2 and rec["bits_per_dim"] == pytest.approx(b["bits_per_dim"])
    assert b["decoder_variance"] == rec["bits_per_dim_decoder_variance"] == "reference"
    assert rec["samples"]["mean_confidence"] == pytest.approx(rep["samples"]["mean_confidence"])
    assert set(rec["samples"]) == set(evaluate.EVAL_FIGURES) == set(rec["noise"])


def test_evaluate_of_an_ncsn_run_says_bits_per_dim_is_not_available(runs, capsys):
    run = runs / "ncsn"
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--n", "10", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "bits/dim not available for NCSN runs" in text and "mean confidence" in text
    assert main(["evaluate", "--run", str(run), "--n", "10", "--device", "cpu", "--json",
                 "--no-record"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["bits_per_dim"] is None and "NCSN" in rep["bits_per_dim_message"]
    assert "recorded_in" not in rep
    recs = evaluate.read_eval_records(run)
    assert len(recs) == 1 and recs[0]["bits_per_dim"] is None      # --no-record wrote nothing


def test_an_older_checkpoint_and_bpd_off(runs, capsys):
    run = runs / "ddpm"
    before = len(evaluate.read_eval_records(run))
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--ckpt", "1", "--n", "10", "--bpd-n", "0",
                 "--device", "cpu", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["step"] == 1 and rep["bits_per_dim"] is None and "skipped" in rep["bits_per_dim_message"]
    recs = evaluate.read_eval_records(run)
    assert len(recs) == before + 1 and recs[-1]["step"] == 1


def test_bad_bpd_n_is_refused(runs, capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--run", str(runs / "ddpm"), "--bpd-n", "-1"])
    assert info.value.code == 2 and "--bpd-n" in capsys.readouterr().err


def test_eval_records_survive_a_torn_last_line(tmp_path):
    evaluate.append_eval_record(tmp_path, {"step": 1, "bits_per_dim": 2.5})
    with open(tmp_path / "eval.jsonl", "ab") as f:
        f.write(b'{"step": 2, "bits_per')                     # a kill mid-write
    evaluate.append_eval_record(tmp_path, {"step": 3, "bits_per_dim": 2.0})
    assert evaluate.read_eval_records(tmp_path) == [{"step": 1, "bits_per_dim": 2.5},
                                                    {"step": 3, "bits_per_dim": 2.0}]


def test_the_digits_judge_goes_through_the_shared_judge_path():
    j = judge.digits_judge()
    assert isinstance(j, judge.Judge) and j.side == 8 and j.accuracy > 0.95
    real = torch.from_numpy(j.X_test).float().reshape(-1, 1, 8, 8)
    rep = evaluate.digits_report(real)
    assert rep["judge"] == "digits" and rep["classifier_test_accuracy"] == j.accuracy
    assert rep["samples"]["mean_confidence"] > 0.9 and rep["samples"]["classes_present"] == 10
    assert rep["reference_uniform_noise"]["mean_confidence"] < 0.7
    with pytest.raises(ValueError, match="8, 8"):
        evaluate.digits_report(torch.rand(3, 1, 28, 28))
