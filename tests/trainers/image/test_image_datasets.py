"""Dataset readers on tiny fake MNIST / CIFAR-10 / CelebA / image folders written to tmp_path."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from trainers.image.config import DataConfig
from trainers.image.datasets import (DatasetError, batch_indices, batch_stream, build_dataset,
                                     digits_dataset)


def write_idx(path, images, gz=False):
    n, r, c = images.shape
    raw = struct.pack(">IIII", 2051, n, r, c) + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    write_idx(tmp_path / "MNIST" / "raw" / name, imgs, gz)
    ds = build_dataset(DataConfig(dataset="mnist", image_size=28, channels=1), str(tmp_path))
    assert len(ds) == 5 and ds[0].shape == (1, 28, 28)
    assert torch.allclose(ds[3][0], torch.from_numpy(imgs[3]).float() / 255)


def test_mnist_truncated_file_is_reported(tmp_path):
    imgs = np.zeros((5, 28, 28))
    write_idx(tmp_path / "train-images-idx3-ubyte", imgs)
    data = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(data[:-100])
    with pytest.raises(DatasetError, match="truncated"):
        build_dataset(DataConfig(dataset="mnist", image_size=28), str(tmp_path))


def test_cifar_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2):
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": data, b"labels": [0, 1, 2, 3]}, f)
    ds = build_dataset(DataConfig(dataset="cifar10", image_size=32, channels=3), str(tmp_path))
    assert len(ds) == 8 and ds[0].shape == (3, 32, 32)
    assert 0 <= float(ds[5].min()) and float(ds[5].max()) <= 1


def test_cifar_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DatasetError, match="not a CIFAR-10 python batch"):
        build_dataset(DataConfig(dataset="cifar10", image_size=32, channels=3), str(tmp_path))


def test_celeba_and_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "img_align_celeba").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
            tmp_path / "img_align_celeba" / f"{i + 1:06d}.jpg")
    ds = build_dataset(DataConfig(dataset="celeba", image_size=64, channels=3), str(tmp_path))
    assert len(ds) == 3 and ds[1].shape == (3, 64, 64)

    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "a.png")
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(tmp_path / "imgs" / "sub" / "b.bmp")
    ds = build_dataset(DataConfig(dataset="folder", image_size=16, channels=1), str(tmp_path / "imgs"))
    assert len(ds) == 2 and ds[0].shape == (1, 16, 16) and ds[1].shape == (1, 16, 16)


@pytest.mark.parametrize("dataset, expected", [
    ("mnist", "train-images-idx3-ubyte"),
    ("cifar10", "data_batch_1"),
    ("celeba", "img_align_celeba"),
    ("folder", "image files"),
])
def test_missing_or_empty_folder_says_what_was_expected_where(tmp_path, dataset, expected):
    cfg = DataConfig(dataset=dataset, image_size=32, channels=3 if dataset != "mnist" else 1)
    with pytest.raises(DatasetError) as e:          # empty folder
        build_dataset(cfg, str(tmp_path))
    assert expected in str(e.value) and str(tmp_path) in str(e.value)
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset(cfg, str(tmp_path / "nope"))
    with pytest.raises(DatasetError, match="--data-dir"):
        build_dataset(cfg, None)


def test_digits_default_needs_no_download():
    ds = digits_dataset()
    assert len(ds) == 1797 and ds.shape == (1, 8, 8)
    assert float(ds.images.max()) == 16 and float(ds[0].max()) <= 1


def test_batch_order_is_a_function_of_the_step_and_covers_each_epoch():
    n, b = 10, 4
    first_epoch = torch.cat([batch_indices(n, b, 0, s) for s in range(3)])[:n]
    assert sorted(first_epoch.tolist()) == list(range(n))
    assert torch.equal(batch_indices(n, b, 0, 7), batch_indices(n, b, 0, 7))
    # DDP: two ranks split the global batch without overlap
    r0, r1 = batch_indices(n, b, 0, 5, 0, 2), batch_indices(n, b, 0, 5, 1, 2)
    assert sorted(torch.cat([r0, r1]).tolist()) == sorted(batch_indices(n, b, 0, 5).tolist())
    ds = digits_dataset()
    s = batch_stream(ds, 8, 0, start_step=3)
    assert torch.equal(next(s), ds.batch(batch_indices(len(ds), 8, 0, 3)))
