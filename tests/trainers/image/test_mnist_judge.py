"""The MNIST judge on generated IDX files: scikit-learn's 8x8 digits upscaled to 28x28 stand in for
MNIST (real signal, no network). Real held-out digits score high, noise low; the fit is cached in
the run folder, reused, and refitted when the files change; bad files give clear messages."""
import gzip
import json
import os
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainers.image import judge
from trainers.image.datasets import DatasetError, mnist_labelled

N_TRAIN = 1400          # of the 1797 digits; the other 397 are the "t10k" files


def upscaled_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (1797, 28, 28) images and their labels, in a seeded order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    images = (x[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    order = np.random.default_rng(0).permutation(len(images))
    return images[order], d.target[order].astype(np.uint8)


def write_idx_images(path, images: np.ndarray, gz: bool = False) -> None:
    n, rows, cols = images.shape
    data = struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def write_idx_labels(path, labels: np.ndarray, gz: bool = False) -> None:
    data = struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def write_fake_mnist(folder, with_test: bool = True, gz: bool = False):
    images, labels = upscaled_digits()
    folder.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    write_idx_images(folder / f"train-images-idx3-ubyte{sfx}", images[:N_TRAIN], gz)
    write_idx_labels(folder / f"train-labels-idx1-ubyte{sfx}", labels[:N_TRAIN], gz)
    if with_test:
        write_idx_images(folder / f"t10k-images-idx3-ubyte{sfx}", images[N_TRAIN:], gz)
        write_idx_labels(folder / f"t10k-labels-idx1-ubyte{sfx}", labels[N_TRAIN:], gz)
    return images, labels


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """(data folder, run folder, judge fitted there with the real settings ``judge.MNIST_FIT``)."""
    root = tmp_path_factory.mktemp("mnist")
    data, run = root / "data", root / "run"
    run.mkdir()
    write_fake_mnist(data)
    before = torch.get_num_threads()
    torch.set_num_threads(1)            # (the autouse one-thread fixture is per test)
    try:
        return data, run, judge.mnist_judge(data, run)
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def quick_fit(monkeypatch):
    """A 40-step fit, for the tests of caching, files and the CLI (not of the judge's quality)."""
    monkeypatch.setattr(judge, "MNIST_FIT", {**judge.MNIST_FIT, "steps": 40})


def test_idx_files_round_trip_with_their_magic_numbers(tmp_path):
    images, labels = write_fake_mnist(tmp_path / "d", gz=True)
    x, y, paths = mnist_labelled(tmp_path / "d", "test")
    assert [p.name for p in paths] == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert x.shape == (len(images) - N_TRAIN, 28, 28)
    assert np.array_equal(x, images[N_TRAIN:]) and np.array_equal(y, labels[N_TRAIN:])


def test_real_held_out_digits_score_high_and_noise_low(fitted):
    _, _, j = fitted
    assert j.fitted and j.test_source.startswith("MNIST test files")
    # the CNN's held-out accuracy on the 397 upscaled test digits (measured 0.977)
    assert j.accuracy > 0.95
    real_x = torch.from_numpy(j.X_test.reshape(-1, 1, 28, 28))
    report = j.report(real_x, seed=0)
    real, ref, noise = report["samples"], report["reference_real_test_digits"], report["reference_uniform_noise"]
    assert real["n"] == len(j.X_test) == 1797 - N_TRAIN
    assert real["mean_confidence"] > 0.85 and real["frac_confident"] > 0.7
    assert real["classes_present"] == 10 and real["class_entropy"] > 0.95
    assert noise["mean_confidence"] < 0.5 and noise["frac_confident"] < 0.05
    assert real["mean_confidence"] == pytest.approx(ref["mean_confidence"])   # the same 397 digits
    # uniform noise passed as (N, 1, 28, 28) samples, through the same path as generated ones
    g = torch.Generator().manual_seed(3)
    noisy = j.report(torch.rand(300, 1, 28, 28, generator=g))["samples"]
    assert noisy["mean_confidence"] < 0.5 and noisy["frac_confident"] < 0.05
    # memorisation check: training digits sit at distance 0 from the bank
    assert j.stats(j.train_bank[:50])["nn_distance_to_train"] == pytest.approx(0.0, abs=1e-3)
    assert real["nn_distance_to_train"] < noise["nn_distance_to_train"]


def test_samples_of_another_size_are_resized(fitted):
    _, _, j = fitted
    x28 = torch.from_numpy(j.X_test[:100].reshape(-1, 1, 28, 28))
    x32 = F.interpolate(x28, size=(32, 32), mode="bilinear", align_corners=False)
    s = j.stats(j.flatten(x32))
    assert s["mean_confidence"] > 0.8 and s["classes_present"] >= 9


def test_the_cache_is_reused_and_refitted_when_the_files_change(tmp_path, quick_fit, monkeypatch):
    data, run = tmp_path / "data", tmp_path / "run"
    run.mkdir()
    images, labels = write_fake_mnist(data)
    calls = []
    real_fit = judge.fit_mnist_net
    monkeypatch.setattr(judge, "fit_mnist_net", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    first = judge.mnist_judge(data, run)
    cache = run / judge.MNIST_CACHE
    assert calls == [1] and first.fitted and cache.is_file() and "cached in" in first.note
    again = judge.mnist_judge(data, run)
    assert calls == [1] and not again.fitted and "reused" in again.note
    assert again.accuracy == first.accuracy
    x = first.flatten(torch.from_numpy(first.X_test[:20].reshape(-1, 1, 28, 28)))
    assert np.array_equal(again.proba(x), first.proba(x))
    assert np.array_equal(again.train_bank, first.train_bank)
    # the training files change (one digit less): refitted, and the new cache is used next time
    write_idx_images(data / "train-images-idx3-ubyte", images[:N_TRAIN - 1])
    write_idx_labels(data / "train-labels-idx1-ubyte", labels[:N_TRAIN - 1])
    changed = judge.mnist_judge(data, run)
    assert calls == [1, 1] and changed.fitted and "changed" in changed.note
    assert len(changed.train_bank) == N_TRAIN - 1
    assert not judge.mnist_judge(data, run).fitted and calls == [1, 1]
    # same sizes, another modification time: refitted too
    os.utime(data / "train-labels-idx1-ubyte", ns=(10**18, 10**18))
    assert judge.mnist_judge(data, run).fitted and calls == [1, 1, 1]
    # an unreadable cache: refitted, not an error
    cache.write_bytes(b"not a torch file")
    refit = judge.mnist_judge(data, run)
    assert refit.fitted and calls == [1, 1, 1, 1] and "unreadable" in refit.note
    # the fit is deterministic: the same files give the same judge
    assert np.array_equal(refit.proba(x), changed.proba(x))


def test_without_test_files_the_unused_training_images_are_held_out(tmp_path, quick_fit):
    write_fake_mnist(tmp_path / "d", with_test=False)
    j = judge.mnist_judge(tmp_path / "d", None)
    assert "not fitted on" in j.test_source
    assert len(j.train_bank) + len(j.X_test) == N_TRAIN and len(j.X_test) >= N_TRAIN // 10
    assert not any((tmp_path / "d").glob("*.pt"))          # no cache folder, no cache


@pytest.mark.parametrize("damage, message", [
    ("missing_labels", "train-labels-idx1-ubyte"),
    ("truncated", "truncated or malformed"),
    ("bad_magic", "magic number 2051, expected 2049"),
    ("bad_gzip", "not a valid gzip file"),
    ("count_mismatch", "must match"),
])
def test_missing_or_corrupt_idx_files_give_a_clear_message(tmp_path, damage, message):
    d = tmp_path / "d"
    images, labels = write_fake_mnist(d, with_test=False)
    labels_path = d / "train-labels-idx1-ubyte"
    if damage == "missing_labels":
        labels_path.unlink()
    elif damage == "truncated":
        labels_path.write_bytes(labels_path.read_bytes()[:-5])
    elif damage == "bad_magic":              # an image file where the labels should be
        labels_path.write_bytes((d / "train-images-idx3-ubyte").read_bytes())
    elif damage == "bad_gzip":
        labels_path.unlink()
        (d / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    elif damage == "count_mismatch":
        write_idx_labels(labels_path, labels[:N_TRAIN - 3])
    with pytest.raises(DatasetError, match=message) as info:
        judge.mnist_judge(d, tmp_path)
    assert "MNIST" in str(info.value)


def test_evaluate_on_an_mnist_run_reports_the_judge_and_records_it(tmp_path, capsys, quick_fit):
    """A tiny DDPM run on the fake MNIST: evaluate --json has the judge's figures beside the real
    test digits, bits/dim on the t10k images, and a line in eval.jsonl per call."""
    from trainers.image.__main__ import main
    from trainers.image.evaluate import read_eval_records

    data, run = tmp_path / "data", tmp_path / "run"
    write_fake_mnist(data)
    tiny = ["model.ch=8", "model.ch_mult=1,2", "model.num_res_blocks=1", "model.attn_resolutions=7",
            "train.batch_size=8", "train.warmup=1", "train.n_steps=1", "train.ckpt_every=1",
            "train.sample_every=0", "train.threads=1", "ddpm.T=4", "train.precision=fp32"]
    assert main(["train", "--config", "ddpm_mnist", "--data-dir", str(data), "--out", str(run),
                 "--quiet", *tiny]) == 0
    capsys.readouterr()
    args = ["evaluate", "--run", str(run), "--data-dir", str(data), "--n", "16", "--bpd-n", "8",
            "--device", "cpu", "--json"]
    assert main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["judge"] == "mnist" and 0 < rep["classifier_test_accuracy"] <= 1
    assert rep["samples"]["n"] == 16 and sum(rep["samples"]["class_histogram"]) == 16
    ref, noise = rep["reference_real_test_digits"], rep["reference_uniform_noise"]
    assert ref["n"] == 1797 - N_TRAIN and ref["mean_confidence"] > noise["mean_confidence"]
    assert "MNIST test files" in rep["reference_source"]
    assert rep["bits_per_dim"]["n"] == 8 and "t10k" in rep["bits_per_dim"]["source"]
    assert rep["bits_per_dim"]["bits_per_dim"] > 0
    assert main(args[:-1]) == 0                              # the text report, a second record
    text = capsys.readouterr().out
    assert "mean confidence" in text and "bits/dim" in text and "reused" in text
    recs = read_eval_records(run)
    assert [r["step"] for r in recs] == [1, 1] and recs[0]["judge"] == "mnist"
    assert recs[0]["samples"]["mean_confidence"] == pytest.approx(rep["samples"]["mean_confidence"])
    assert recs[0]["reference"]["classes_present"] == 10
    assert recs[0]["bits_per_dim"] == pytest.approx(rep["bits_per_dim"]["bits_per_dim"])
    # without the training labels the judge cannot be fitted: exit status 2, a message naming the file
    (data / "train-labels-idx1-ubyte").unlink()
    (run / judge.MNIST_CACHE).unlink()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "train-labels-idx1-ubyte" in err and str(data) in err
    assert len(read_eval_records(run)) == 2
