"""Flow matching on images (issue #21): the bundled fm_digits config trains the DDPM U-Net fed 1000·t with
the same FlowMatching method class as the 2D explorer, previews and samples with the flow ODE, and its
checkpoint drives the other samplers through the conversion."""
import json

import torch

from trainers.image.__main__ import main
from trainers.image.config import ConfigError, load_config
from trainers.image.methods import image_method
from trainers.image.train import train
from trainers.methods.flow_matching import FlowMatching

TINY = ["model.ch=16", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
        "train.batch_size=16", "train.warmup=3", "train.log_every=1", "train.n_grid=4", "train.threads=1",
        "train.preview_nfe=4"]


def test_fm_digits_binds_to_the_flow_matching_method():
    cfg = load_config("fm_digits")
    assert cfg.method == "fm" and cfg.data_range == (-1.0, 1.0)
    m = image_method(cfg)
    assert isinstance(m, FlowMatching) and m.params.coupling == "independent" and m.natural_sampler == "flow"
    assert image_method(load_config("fm_digits", ["fm.coupling=ot"])).params.coupling == "ot"
    try:
        load_config("fm_digits", ["fm.coupling=sinkhorn"])
    except ConfigError as e:
        assert "fm.coupling" in str(e)
    else:
        raise AssertionError("a bad coupling was accepted")


def test_a_tiny_fm_run_trains_previews_and_samples_with_the_flow_ode(tmp_path, capsys):
    cfg = load_config("fm_digits", TINY + ["train.n_steps=4", "train.ckpt_every=4", "train.sample_every=4",
                                           "fm.coupling=ot"])
    out = train(cfg, tmp_path / "run", quiet=True)
    assert out["finished"] and out["step"] == 4
    recs = [json.loads(l) for l in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert all(r["loss"] > 0 for r in recs if "loss" in r)
    assert (tmp_path / "run" / "samples" / "step_00000004.png").exists()
    for sampler in ("flow", "ddim"):
        npz = tmp_path / f"{sampler}.npz"
        assert main(["sample", "--run", str(tmp_path / "run"), "--n", "4", "--sampler", sampler, "--nfe", "4",
                     "--out", str(npz)]) == 0
    capsys.readouterr()
