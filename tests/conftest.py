"""Shared test setup. Qt needs its platform chosen before any QApplication exists: without a
display it would abort the process, so the explorer tests run on the offscreen platform."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


import pytest  # noqa: E402

# A tiny 8-channel DDPM U-Net on the built-in digits (the image tests that need a real run folder).
TINY_IMAGE_OVERRIDES = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=4",
                        "train.batch_size=8", "train.warmup=1", "train.threads=1", "train.sample_every=0",
                        "ddpm.T=10", "train.log_every=1"]


@pytest.fixture(scope="session")
def tiny_ddpm_run(tmp_path_factory):
    """A 2-step ddpm_digits run of TINY_IMAGE_OVERRIDES with a checkpoint at step 2, trained in-process
    once per session. Read it or copy it; tests must not change it."""
    from trainers.image.__main__ import main
    from trainers.image.checkpoints import list_checkpoints

    run = tmp_path_factory.mktemp("tiny_runs") / "ddpm"
    assert main(["train", "--config", "ddpm_digits", "--out", str(run), "--quiet", *TINY_IMAGE_OVERRIDES,
                 "train.n_steps=2", "train.ckpt_every=2"]) == 0
    assert [s for s, _ in list_checkpoints(run)] == [2]
    return run
