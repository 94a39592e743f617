"""The 2D CLI contract: train / sample / evaluate, clear errors, safe checkpoints."""
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from trainers import samplers, toy
from trainers.fitting import CheckpointError, load_checkpoint


@pytest.fixture(scope="module")
def ncsn_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run.pt"
    assert toy.main(["train", "--density", "two_gaussians", "--objective", "ncsn", "--steps", "300",
                     "--width", "32", "--depth", "2", "--seed", "3", "--out", str(out)]) == 0
    return out


def test_train_writes_a_loadable_checkpoint(ncsn_ckpt):
    model, cfg, density, extra = load_checkpoint(ncsn_ckpt)
    assert cfg.objective == "ncsn" and cfg.steps == 300 and cfg.width == 32
    assert density.name == "two_gaussians" and len(extra["sigmas"]) == 10
    assert cfg.sigma_max == pytest.approx(extra["sigmas"][0])
    assert not list(ncsn_ckpt.parent.glob(".*.tmp"))            # atomic write left no temp file


@pytest.mark.parametrize("sampler, init", [("annealed", None), ("langevin", "gaussian")])
def test_sample_writes_n_by_2(ncsn_ckpt, tmp_path, sampler, init):
    out = tmp_path / "s.npy"
    args = ["sample", "--ckpt", str(ncsn_ckpt), "--sampler", sampler, "--n", "64", "--steps", "5", "--out", str(out)]
    if init:
        args += ["--init", init]
    assert toy.main(args) == 0
    x = np.load(out)
    assert x.shape == (64, 2) and np.isfinite(x).all()


def test_sample_is_reproducible_with_a_seed(ncsn_ckpt, tmp_path):
    outs = []
    for name in ("a.npy", "b.npy"):
        toy.main(["sample", "--ckpt", str(ncsn_ckpt), "--sampler", "annealed", "--n", "16", "--steps", "3",
                  "--seed", "9", "--out", str(tmp_path / name)])
        outs.append(np.load(tmp_path / name))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_evaluate_json(ncsn_ckpt, capsys):
    assert toy.main(["evaluate", "--ckpt", str(ncsn_ckpt), "--density", "two_gaussians", "--n", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [round(r["sigma"], 6) for r in result["fisher"]] == [round(s, 6) for s in load_checkpoint(ncsn_ckpt)[3]["sigmas"]]
    assert result["sampler"] == "annealed" and result["energy_distance"] >= 0


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "pf-ode", "pc"])
def test_an_ncsn_checkpoint_drives_every_sampler(ncsn_ckpt, tmp_path, sampler, capsys):
    out = tmp_path / "x.npy"
    assert toy.main(["sample", "--ckpt", str(ncsn_ckpt), "--sampler", sampler, "--nfe", "10", "--n", "32",
                     "--out", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (32, 2) and np.isfinite(x).all()
    assert "network evaluations" in capsys.readouterr().out


def test_sampling_outside_the_trained_range_is_flagged_in_words(ncsn_ckpt, tmp_path, capsys):
    sigmas = load_checkpoint(ncsn_ckpt)[3]["sigmas"]
    assert toy.main(["sample", "--ckpt", str(ncsn_ckpt), "--sampler", "langevin", "--steps", "3", "--n", "8",
                     "--out", str(tmp_path / "in.npy")]) == 0
    assert "note:" not in capsys.readouterr().err          # Langevin at σ_L: inside the range
    args = ["evaluate", "--ckpt", str(ncsn_ckpt), "--density", "two_gaussians", "--sampler", "pf-ode", "--nfe", "9",
            "--n", "50", "--json"]
    cfg = load_checkpoint(ncsn_ckpt)[1]
    opts = samplers.SamplerOptions(nfe=9, sigma_max=3 * sigmas[0], n_levels=cfg.n_levels)
    result = toy.evaluate(str(ncsn_ckpt), "two_gaussians", 50, 0, "pf-ode", opts)
    assert "trained on σ ∈" in result["note"] and "extrapolates" in result["note"]
    assert toy.main(args) == 0


def test_exact_score_sampling_needs_no_checkpoint(tmp_path):
    out = tmp_path / "x.npy"
    assert toy.main(["sample", "--score", "exact", "--density", "two_gaussians", "--sampler", "pf-ode", "--nfe", "39",
                     "--n", "2000", "--out", str(out)]) == 0
    x = torch.from_numpy(np.load(out))
    left = float((x[:, 0] < 0).float().mean())
    assert abs(left - 0.8) < 0.04          # the PF-ODE keeps the 0.8 / 0.2 mode weights


def test_lab_json_has_every_sampler_nfe_and_source_with_spread_and_threshold(ncsn_ckpt, capsys, tmp_path):
    csv_path = tmp_path / "lab.csv"
    assert toy.main(["lab", "--ckpt", str(ncsn_ckpt), "--samplers", "ddim,pf-ode", "--nfe", "5,20", "--n", "200",
                     "--seeds", "2", "--null-draws", "5", "--csv", str(csv_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    keys = {(r["sampler"], r["source"], r["nfe_target"]) for r in result["rows"]}
    assert keys == {(s, src, n) for s in ("ddim", "pf-ode") for src in ("exact·exact-start", "exact", "model")
                    for n in (5, 20)}
    assert all(r["nfe"] <= r["nfe_target"] for r in result["rows"])
    assert result["seeds"] == 2 and result["null_draws"] == 10 and result["threshold"] > result["floor"]
    for r in result["rows"]:
        assert r["n_seeds"] == 2 and len(r["energy_distances"]) == 2
        assert r["energy_distance"] == pytest.approx(np.mean(r["energy_distances"]))
        assert r["energy_distance_sd"] == pytest.approx(np.std(r["energy_distances"], ddof=1))
    lines = csv_path.read_text().strip().splitlines()
    assert len(lines) == 1 + len(result["rows"])
    assert {"energy_distance_sd", "n_seeds", "seeds", "threshold", "reached"} <= set(lines[0].split(","))
    assert toy.build_parser().parse_args(["lab", "--density", "two_moons"]).seeds >= 5     # the CLI default


def test_diverging_chain_exits_with_a_step_size_hint(ncsn_ckpt, tmp_path, capsys):
    code = toy.main(["sample", "--ckpt", str(ncsn_ckpt), "--sampler", "langevin", "--exact", "--eps", "50",
                     "--steps", "200", "--n", "10", "--out", str(tmp_path / "x.npy")])
    assert code == 1
    err = capsys.readouterr().err
    assert "diverged at step" in err and "smaller step size" in err
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "--density", "nope", "--objective", "dsm", "--out", "x.pt"], "neither a preset"),
    (["train", "--density", "two_moons", "--objective", "bad", "--out", "x.pt"], "invalid choice"),
    (["train", "--density", "two_moons", "--objective", "dsm", "--steps", "0", "--out", "x.pt"], "positive integer"),
    (["sample", "--ckpt", "missing.pt", "--sampler", "langevin", "--out", "x.npy"], "no checkpoint at"),
    (["sample", "--sampler", "ddim", "--out", "x.npy"], "give --ckpt, or --score exact"),
    (["lab", "--density", "two_moons", "--nfe", "5,x"], "comma-separated positive integers"),
])
def test_bad_arguments_exit_nonzero_with_one_clear_line(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "trainers.toy", *args], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoints_never_run_code_and_corruption_is_reported(ncsn_ckpt, tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "score-explorer-toy", "payload": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(evil)
    assert "this must never run" not in capsys.readouterr().out
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ncsn_ckpt.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    other = tmp_path / "other.pt"
    torch.save({"hello": 1}, other)
    with pytest.raises(CheckpointError, match="not a Score Explorer 2D checkpoint"):
        load_checkpoint(other)
    assert pickle  # (pickle imported to make clear the evil object is a plain pickle payload)


def test_evaluate_reports_the_pf_ode_nll_above_the_true_one(ncsn_ckpt, capsys):
    """Cross-entropy ≥ entropy: the model's NLL of fresh p_σmin samples is above the true NLL (a
    300-step model is far from exact, so the gap dwarfs the 500-point sampling noise)."""
    assert toy.main(["evaluate", "--ckpt", str(ncsn_ckpt), "--density", "two_gaussians", "--n", "200", "--nll",
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["nll_sigma"] == pytest.approx(load_checkpoint(ncsn_ckpt)[3]["sigmas"][-1], rel=1e-5)
    assert np.isfinite(result["nll_model"]) and result["nll_model"] > result["nll_true"]


def test_evaluate_reports_the_ddpm_bound_above_the_true_nll(tmp_path, capsys):
    """For a DDPM model, −ELBO (nats) of clean data is reported and lies above the true NLL of p."""
    out = tmp_path / "ddpm.pt"
    assert toy.main(["train", "--density", "two_gaussians", "--objective", "ddpm", "--timesteps", "100", "--steps",
                     "200", "--width", "32", "--depth", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert toy.main(["evaluate", "--ckpt", str(out), "--density", "two_gaussians", "--n", "200", "--nll",
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert np.isfinite(result["neg_elbo_nats"]) and result["neg_elbo_nats"] > result["nll_true_data"]
    assert result["neg_elbo_decoder_variance"] == "beta1"        # continuous data: the Gaussian decoder's default
