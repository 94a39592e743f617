"""`python -m trainers.toy sample --out` writes what its suffix names or refuses before any work (as the
image CLI does); `train` has a default objective (issue 25, item 11)."""
from __future__ import annotations

import numpy as np
import pytest

from trainers import toy

ARGS = ["sample", "--score", "exact", "--density", "two_gaussians", "--sampler", "ddim", "--nfe", "5",
        "--n", "7", "--seed", "3"]


def test_sample_writes_npy_text_and_csv_with_the_same_samples(tmp_path):
    out = {s: tmp_path / f"x{s}" for s in (".npy", ".txt", ".csv")}
    for path in out.values():
        assert toy.main(ARGS + ["--out", str(path)]) == 0
    x = np.load(out[".npy"])
    assert x.shape == (7, 2) and x.dtype == np.float32
    assert out[".npy"].read_bytes()[:6] == b"\x93NUMPY"
    np.testing.assert_allclose(np.loadtxt(out[".txt"]), x, rtol=1e-6)
    np.testing.assert_allclose(np.loadtxt(out[".csv"], delimiter=","), x, rtol=1e-6)


@pytest.mark.parametrize("name", ["x.dat", "x", "x.png"])
def test_sample_refuses_an_unknown_suffix_before_any_work(tmp_path, capsys, name):
    path = tmp_path / name
    assert toy.main(ARGS + ["--out", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and ".npy" in err and err.count("\n") == 1
    assert not path.exists()


def test_train_has_a_default_objective_named_in_its_help():
    p = toy.build_parser()
    a = p.parse_args(["train", "--density", "two_gaussians", "--out", "m.pt"])
    assert a.objective == toy.DEFAULT_OBJECTIVE == "ncsn"
    sub = p._subparsers._group_actions[0].choices["train"]
    assert f"default {toy.DEFAULT_OBJECTIVE}" in sub.format_help()
