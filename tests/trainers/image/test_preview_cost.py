"""In-training preview grids are a glance, not the result (issue 25, item 12: an NCSN preview took 25 s
against 9.5 s of training): annealed Langevin previews of NCSN runs take at most
PREVIEW_STEPS_PER_LEVEL steps per level unless the config asks for more; the grid's label says its NFE."""
from __future__ import annotations

from trainers.image.config import load_config
from trainers.image.methods import PREVIEW_STEPS_PER_LEVEL, preview_sampler


def test_ncsn_previews_take_few_steps_per_level():
    cfg = load_config("ncsn_digits")
    n = cfg.ncsn
    name, nfe = preview_sampler(cfg)
    assert name == "annealed" and nfe == n.n_levels * PREVIEW_STEPS_PER_LEVEL + int(n.final_denoise)
    assert nfe * 5 <= n.n_levels * n.steps_per_level           # the full chain costs 10x (L·100)


def test_an_explicit_preview_nfe_and_ddpm_runs_are_unchanged():
    assert preview_sampler(load_config("ncsn_digits", ["train.preview_nfe=300"])) == ("annealed", 300)
    assert preview_sampler(load_config("ddpm_digits")) == ("ddim", 50)
    cfg = load_config("ncsn_digits", ["ncsn.steps_per_level=3"])
    assert preview_sampler(cfg)[1] == cfg.ncsn.n_levels * 3 + int(cfg.ncsn.final_denoise)   # never more than the run's
