"""Every registry sampler on every image run (issue #7): the run's network wrapped as one ScoreModel,
driven through the CLI with raw-array output. Tiny CPU runs (one training step, 8 channels): the
samples are noise, these tests check the plumbing, shapes, defaults and messages."""
import json

import numpy as np
import pytest
import torch

from trainers.image.__main__ import main
from trainers.image.config import ConfigError, load_config
from trainers.image.methods import initial_noise, image_sampler
from trainers.image.train import load_run, train

TINY = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "train.batch_size=8", "train.warmup=1", "train.n_steps=1", "train.ckpt_every=1",
        "train.sample_every=0", "train.threads=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"ddpm": run dir, "ncsn": run dir}, one training step each (DDPM keeps T = 1000)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for method, extra in [("ddpm", []), ("ncsn", ["ncsn.n_levels=4", "ncsn.steps_per_level=2"])]:
        train(load_config(f"{method}_digits", TINY + extra), root / method, quiet=True)
        out[method] = root / method
    return out


def sample(run, out, *args, n=3):
    return main(["sample", "--run", str(run), "--n", str(n), "--out", str(out), "--device", "cpu", *args])


def reply(capsys) -> tuple[dict, str]:
    cap = capsys.readouterr()
    return json.loads(cap.out.strip().splitlines()[-1]), cap.err


@pytest.mark.parametrize("method, sampler", [("ddpm", "ddim"), ("ncsn", "ddpm"), ("ncsn", "ddim"),
                                             ("ddpm", "annealed"), ("ddpm", "pf-ode"), ("ncsn", "pf-ode"),
                                             ("ddpm", "langevin"), ("ncsn", "langevin"),
                                             ("ddpm", "pc"), ("ncsn", "pc"),
                                             ("ddpm", "dpmpp-2m"), ("ncsn", "dpmpp-2m"), ("ddpm", "dpmpp-3m"),
                                             ("ncsn", "unipc"), ("ddpm", "unipc"), ("ddpm", "edm"), ("ncsn", "edm"),
                                             ("ddpm", "euler-a"), ("ncsn", "euler-a")])
def test_any_sampler_on_any_run_gives_finite_samples(runs, tmp_path, capsys, method, sampler):
    out = tmp_path / "x.npy"
    assert sample(runs[method], out, "--sampler", sampler, "--nfe", "5") == 0
    msg, err = reply(capsys)
    x = np.load(out)
    assert x.shape == (3, 1, 8, 8) and x.dtype == np.float32 and np.isfinite(x).all()
    assert msg["samples"] == str(out) and msg["sampler"] == sampler and msg["nfe"] == 5
    if method == "ncsn" and sampler not in ("annealed", "langevin"):
        # trained on its 4 levels only: the samplers that ask between them say so
        assert "trained on its 4 levels only" in msg["note"] and f"note: {msg['note']}" in err
    else:
        assert "note" not in msg and "note:" not in err      # the default σ range is the trained one


def test_npz_holds_the_same_samples_as_npy(runs, tmp_path, capsys):
    a, b = tmp_path / "a.npy", tmp_path / "b.npz"
    for out in (a, b):
        assert sample(runs["ncsn"], out, "--sampler", "annealed", "--nfe", "8", "--seed", "7") == 0
    with np.load(b) as z:
        assert list(z) == ["samples"]
        assert np.array_equal(z["samples"], np.load(a))
    assert not list(tmp_path.glob(".*.tmp"))                 # written atomically, nothing left over


def test_unknown_output_extension_is_exit_2_with_a_message(runs, tmp_path, capsys):
    out = tmp_path / "x.jpg"
    assert sample(runs["ddpm"], out) == 2
    err = capsys.readouterr().err
    assert "x.jpg" in err and ".png" in err and ".npy" in err and ".npz" in err
    assert not out.exists()


def test_bad_sampler_option_is_exit_2(runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:                     # the flag's schema range: argparse refuses it
        sample(runs["ddpm"], tmp_path / "x.npy", "--sampler", "ddim", "--eta", "2")
    assert e.value.code == 2 and "η" in capsys.readouterr().err
    with pytest.raises(SystemExit):                          # argparse: not a registry sampler
        sample(runs["ddpm"], tmp_path / "x.npy", "--sampler", "euler")


@pytest.mark.parametrize("method, args, asked", [
    ("ncsn", ["--sampler", "ddpm", "--sigma-max", "50"], "50"),     # DDPM from far beyond σ₁ = 1
    ("ddpm", ["--sampler", "pf-ode", "--sigma-min", "0.001"], "0.001"),
])
def test_range_note_when_asked_outside_the_trained_range(runs, tmp_path, capsys, method, args, asked):
    assert sample(runs[method], tmp_path / "x.npy", "--nfe", "6", *args) == 0
    msg, err = reply(capsys)
    kind = {"ncsn": "NCSN", "ddpm": "DDPM"}[method]
    assert msg["note"].startswith(f"this {kind} model was trained on") and "σ ∈" in msg["note"]
    assert asked in msg["note"]
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: {msg['note']}"]
    assert np.isfinite(np.load(tmp_path / "x.npy")).all()


def test_png_grid_and_chain_still_work_with_a_registry_sampler(runs, tmp_path, capsys):
    grid, chain = tmp_path / "g.png", tmp_path / "c.npz"
    assert sample(runs["ddpm"], grid, "--sampler", "ddim", "--nfe", "4", "--chain", str(chain),
                  "--frames", "4", n=4) == 0
    msg, _ = reply(capsys)
    assert grid.read_bytes()[:4] == b"\x89PNG" and msg["grid"] == str(grid)
    with np.load(chain) as z:
        assert z["frames"].shape == (5, 4, 1, 8, 8)
        assert list(z["frame_steps"]) == [0, 1, 2, 3, 4] and z["labels"][0] == "initial noise"


def test_defaults_come_from_the_config(runs):
    cfg, model, *_ = load_run(runs["ncsn"])
    s, sm = image_sampler(cfg, model)                         # NCSN: its own annealed Langevin
    assert type(s).__name__ == "AnnealedLangevinSampler"
    assert (s.eps, s.steps_per_level, len(s.sigmas)) == (cfg.ncsn.eps, 2, 4) and s.final_denoise is False
    assert sm.valid == pytest.approx((0.01, 1.0))
    assert image_sampler(cfg, model, "ddim")[0].clip == 1.0   # x̂₀ clipped to [−1, 1] ⊇ [0, 1]
    cfg, model, *_ = load_run(runs["ddpm"])
    s, _ = image_sampler(cfg, model)
    assert type(s).__name__ == "DDPMSampler" and s.n_steps == 1000 and s.clip == 1.0
    assert s.variance == cfg.ddpm.sample_variance
    assert image_sampler(cfg, model, "ddim")[0].n_steps == 50
    assert image_sampler(cfg, model, "ddim", nfe=7)[0].n_steps == 7
    with pytest.raises(ConfigError, match="unknown sampler"):
        image_sampler(cfg, model, "heun")
    # the command line's options reach the sampler
    assert image_sampler(cfg, model, "ddim", eta=0.5)[0].eta == 0.5
    assert image_sampler(cfg, model, "pf-ode", solver="euler")[0].solver == "euler"
    assert image_sampler(cfg, model, "pc", snr=0.05)[0].snr == 0.05


def test_a_diverging_chain_is_exit_1_with_the_samplers_message(runs, tmp_path, capsys, monkeypatch):
    from trainers.image import methods
    from trainers.samplers import DivergenceError

    def diverge(*a, **k):
        raise DivergenceError(3, "DDIM", "Use more steps.")

    monkeypatch.setattr(methods, "generate", diverge)
    assert sample(runs["ddpm"], tmp_path / "x.npy", "--sampler", "ddim") == 1
    assert "DDIM diverged at step 3" in capsys.readouterr().err


def test_initial_noise_is_the_prior_except_ncsn_annealed_starts_uniform(runs):
    g = torch.Generator().manual_seed(0)
    cfg, model, *_ = load_run(runs["ncsn"])
    s, _ = image_sampler(cfg, model, "annealed")
    x = initial_noise(cfg, s, "annealed", 200, "cpu", g)
    assert x.shape == (200, 1, 8, 8) and x.min() >= 0 and x.max() <= 1     # Song & Ermon §5
    cfg, model, *_ = load_run(runs["ddpm"])
    s, _ = image_sampler(cfg, model, "annealed")              # prior_std = σ_max of the DDPM schedule
    x = initial_noise(cfg, s, "annealed", 200, "cpu", g)
    assert float(x.std()) == pytest.approx(s.prior_std, rel=0.05) and s.prior_std > 100


def test_evaluate_takes_the_sampler_options(runs, capsys):
    assert main(["evaluate", "--run", str(runs["ddpm"]), "--n", "20", "--sampler", "ddim", "--nfe", "3",
                 "--json", "--device", "cpu"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["sampler"] == "ddim" and rep["nfe"] == 3 and rep["samples"]["n"] == 20
