"""How long the MNIST judge takes to fit, at MNIST's real size, on this CPU (prints; asserts nothing).

No MNIST download: scikit-learn's 8x8 digits, upscaled to 28x28 and jittered by random shifts of up
to 2 pixels, are written as a 60,000-image train set and a 10,000-image t10k set in IDX format.

    python benchmarks/bench_mnist_judge.py [--threads 1]
"""
import argparse
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainers.image import judge


def fake_mnist(folder: Path, n_train: int = 60000, n_test: int = 10000) -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = F.interpolate(torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None], size=(28, 28),
                      mode="bilinear", align_corners=False)[:, 0]
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        idx = rng.integers(0, len(x), n)
        shifts = rng.integers(-2, 3, (n, 2))
        images = np.stack([np.roll(x[i].numpy(), tuple(s), axis=(0, 1)) for i, s in zip(idx, shifts)])
        u8 = (images * 255).round().clip(0, 255).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + u8.tobytes())
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + d.target[idx].astype(np.uint8).tobytes())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        data.mkdir()
        run.mkdir()
        fake_mnist(data)
        t0 = time.perf_counter()
        fitted = judge.mnist_judge(data, run)
        t1 = time.perf_counter()
        cached = judge.mnist_judge(data, run)
        t2 = time.perf_counter()
        samples = torch.from_numpy(fitted.X_test[:1000].reshape(-1, 1, 28, 28))
        report = cached.report(samples)
        t3 = time.perf_counter()
    print(f"threads {a.threads}; settings {judge.MNIST_FIT}")
    print(f"fit (60,000 train / 10,000 test images, incl. reading): {t1 - t0:.1f} s; "
          f"held-out accuracy {fitted.accuracy:.4f}")
    print(f"load from cache: {t2 - t1:.1f} s; report on 1,000 samples + references: {t3 - t2:.1f} s")
    print(f"real test digits: mean confidence {report['samples']['mean_confidence']:.3f}, "
          f"uniform noise: {report['reference_uniform_noise']['mean_confidence']:.3f}")


if __name__ == "__main__":
    main()
