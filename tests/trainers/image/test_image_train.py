"""End-to-end on CPU with a tiny digits config: train, checkpoints, resume, corruption, CLI."""
import json

import pytest
import torch

from trainers.image.__main__ import main
from trainers.image.checkpoints import CheckpointError, list_checkpoints, load_latest
from trainers.image.config import load_config
from trainers.image.train import train

TINY = ["model.ch=16", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "model.dropout=0.1", "train.batch_size=16", "train.warmup=3", "train.log_every=1",
        "train.n_grid=4", "train.keep_ckpts=3", "train.threads=1"]


def tiny(method="ddpm", **over):
    extra = ["ddpm.T=10"] if method == "ddpm" else ["ncsn.n_levels=3", "ncsn.steps_per_level=3"]
    return load_config(f"{method}_digits", TINY + extra + [f"{k}={v}" for k, v in over.items()])


def loss_lines(run_dir):
    lines = [json.loads(l) for l in (run_dir / "progress.jsonl").read_text().splitlines()]
    return [l for l in lines if "loss" in l]


@pytest.mark.parametrize("method", ["ddpm", "ncsn"])
def test_a_few_steps_write_progress_checkpoint_and_grid(tmp_path, method):
    cfg = tiny(method, **{"train.n_steps": 4, "train.ckpt_every": 2, "train.sample_every": 4})
    out = train(cfg, tmp_path / "run", quiet=True)
    assert out["finished"] and out["step"] == 4
    recs = loss_lines(tmp_path / "run")
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    for r in recs:
        assert {"step", "loss", "images_per_s", "lr", "eta_s"} <= set(r)
        assert r["images_per_s"] > 0 and r["loss"] > 0
    assert recs[-1]["eta_s"] == 0
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [2, 4]
    grid = tmp_path / "run" / "samples" / "step_00000004.png"
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt, _ = load_latest(tmp_path / "run")      # weights_only=True load
    assert {"model", "ema", "optimizer", "scaler", "rng", "config", "step"} <= set(ckpt)
    assert ckpt["config"]["method"] == method


def test_resume_continues_exactly(tmp_path):
    cfg = tiny(**{"train.n_steps": 6, "train.ckpt_every": 3, "train.sample_every": 0})
    straight = train(cfg, tmp_path / "a", quiet=True)["losses"]
    first = train(cfg, tmp_path / "b", quiet=True, stop_after=3)      # "killed" after step 3
    assert not first["finished"] and [s for s, _ in list_checkpoints(tmp_path / "b")] == [3]
    second = train(cfg, tmp_path / "b", quiet=True, resume=True)
    assert second["start_step"] == 3
    resumed = first["losses"] + second["losses"]
    assert len(resumed) == len(straight) == 6
    assert torch.allclose(torch.tensor(resumed), torch.tensor(straight), rtol=1e-5, atol=1e-6)
    # the log reads as one run: steps 1..6 once each
    assert [r["step"] for r in loss_lines(tmp_path / "b")] == [1, 2, 3, 4, 5, 6]
    a, _ = load_latest(tmp_path / "a")
    b, _ = load_latest(tmp_path / "b")
    for k in a["ema"]:
        assert torch.allclose(a["ema"][k], b["ema"][k], atol=1e-6), k


def test_corrupted_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
    cfg = tiny(**{"train.n_steps": 4, "train.ckpt_every": 2, "train.sample_every": 0})
    train(cfg, tmp_path / "run", quiet=True)
    newest = list_checkpoints(tmp_path / "run")[-1][1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])   # truncated
    ckpt, path = load_latest(tmp_path / "run")
    assert ckpt["step"] == 2
    err = capsys.readouterr().err
    assert "ckpt_00000004.pt is unreadable" in err and "falling back" in err
    # resume goes on from step 2
    out = train(cfg, tmp_path / "run", quiet=True, resume=True)
    assert out["start_step"] == 2 and out["step"] == 4
    # nothing readable at all -> a clear error
    for _, p in list_checkpoints(tmp_path / "run"):
        p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        load_latest(tmp_path / "run")


def test_cli_train_sample_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--config", "ddpm_digits", "--out", str(run), "--quiet", *TINY, "ddpm.T=10",
            "train.n_steps=2", "train.ckpt_every=2", "train.sample_every=0"]
    assert main(args) == 0
    # same run dir again without --resume: refused with a hint
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    grid, chain = tmp_path / "g.png", tmp_path / "chain.npz"
    assert main(["sample", "--run", str(run), "--n", "6", "--out", str(grid), "--chain", str(chain),
                 "--frames", "5", "--device", "cpu"]) == 0
    assert grid.read_bytes()[:4] == b"\x89PNG"
    import numpy as np
    z = np.load(chain)
    assert z["frames"].shape == (len(z["frame_steps"]), 6, 1, 8, 8) and z["frames"].dtype == np.uint8
    assert z["frame_steps"][0] == 0 and z["frame_steps"][-1] == 10
    frames_dir = tmp_path / "frames"
    assert main(["sample", "--run", str(run), "--n", "4", "--out", str(grid), "--chain",
                 str(frames_dir), "--frames", "2", "--device", "cpu"]) == 0
    assert (frames_dir / "frame_0000.png").exists() and (frames_dir / "frames.txt").exists()
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--n", "50", "--json", "--device", "cpu"]) == 0
    rep = json.loads(capsys.readouterr().out)
    s = rep["samples"]
    assert rep["classifier_test_accuracy"] > 0.9 and s["n"] == 50
    assert sum(s["class_histogram"]) == 50 and 0 <= s["class_entropy"] <= 1
    assert rep["reference_real_test_digits"]["mean_confidence"] > rep["reference_uniform_noise"]["mean_confidence"]


def test_cli_missing_dataset_message(tmp_path, capsys):
    code = main(["train", "--config", "ddpm_mnist", "--data-dir", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "MNIST" in err and "nowhere" in err and "train-images-idx3-ubyte" in err


def test_cli_bad_override_message(tmp_path, capsys):
    code = main(["train", "--config", "ddpm_digits", "--out", str(tmp_path / "r"), "train.lr=fast"])
    assert code == 2 and "train.lr" in capsys.readouterr().err


def test_evaluate_without_fid_library_says_so(tmp_path, capsys, monkeypatch):
    from trainers.image import evaluate

    monkeypatch.setattr(evaluate.importlib.util, "find_spec", lambda name: None)
    backend, why = evaluate.fid_backend()
    assert backend is None and "torch-fidelity" in why


def test_an_image_run_binds_to_the_same_method_classes_as_the_2d_explorer():
    from trainers.image.methods import image_method
    from trainers.methods import DDPM, NCSN
    from trainers.schedules import DDPMSchedule, geometric_sigmas

    cfg = tiny("ncsn", **{"ncsn.sigma_max": 2.0, "ncsn.n_levels": 5, "ncsn.eps": 3e-5, "ncsn.steps_per_level": 7})
    m = image_method(cfg)
    assert type(m) is NCSN and not m.params.ncsn_continuous                  # images: the L levels only
    torch.testing.assert_close(m.noise_levels(), geometric_sigmas(2.0, cfg.ncsn.sigma_min, 5))
    o = m.sampler_defaults("annealed")
    assert (o.eps, o.steps, o.n_levels, o.final_denoise, o.clip_denoised) == (3e-5, 7, 5, cfg.ncsn.final_denoise, 1.0)
    assert m.sampler_defaults("langevin").eps is None                        # the section's ε is annealed's
    assert m.natural_sampler == "annealed" and m.uniform_start == ("annealed",)
    assert m.score_model(lambda x, c: x).levels is not None                  # trained on its levels only
    cfg = tiny("ddpm", **{"ddpm.T": 50, "ddpm.beta_end": 0.05, "ddpm.loss_weighting": "elbo"})
    m = image_method(cfg)
    assert type(m) is DDPM and m.params.ddpm_weighting == "elbo" and m.level_name == "t"
    torch.testing.assert_close(m.schedule().betas, DDPMSchedule.linear(50, cfg.ddpm.beta_start, 0.05).betas)
    assert m.sampler_defaults("ddpm").variance == cfg.ddpm.sample_variance and m.uniform_start == ()
