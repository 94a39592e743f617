"""Image datasets read from a local folder the user names, plus scikit-learn's 8x8 digits.

Every dataset yields float32 images in [0, 1], shape (C, H, W); the trainer maps them to the
method's range ([-1, 1] for DDPM, [0, 1] for NCSN) and applies random horizontal flips on the
batch (so flips are driven by the trainer's checkpointed generator and resume exactly).

Formats are read directly (IDX for MNIST, the python pickle batches for CIFAR-10, JPEG/PNG via
Pillow for CelebA and folders) so that torchvision, a multi-GB CUDA wheel here, stays optional.
The file layouts torchvision writes (``MNIST/raw``, ``cifar-10-batches-py``,
``celeba/img_align_celeba``) are found too, so a folder prepared by torchvision works as is.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class DatasetError(RuntimeError):
    """A dataset folder is missing or malformed; the message says what was expected where."""


def _listing(folder: Path, limit: int = 8) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return "(folder does not exist)"
    if not names:
        return "(folder is empty)"
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _need_dir(data_dir: str | Path | None, what: str, expected: str) -> Path:
    if not data_dir:
        raise DatasetError(f"{what} needs a data folder (--data-dir DIR or data.data_dir=DIR) "
                           f"holding {expected}")
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise DatasetError(f"{what}: data folder {d} does not exist; expected a folder holding "
                           f"{expected}")
    return d


class TensorImages(torch.utils.data.Dataset):
    """Images held in memory (uint8 or float), returned as float32 in [0, 1]."""

    def __init__(self, images: torch.Tensor, max_value: float, name: str):
        assert images.ndim == 4
        self.images = images
        self.max_value = float(max_value)
        self.name = name

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx].float().div_(self.max_value)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].float() / self.max_value


class FileImages(torch.utils.data.Dataset):
    """Images loaded lazily from files: centre crop, resize, convert to L or RGB."""

    def __init__(self, files: list[Path], size: int, channels: int, crop: int | None, name: str):
        self.files = files
        self.size = size
        self.channels = channels
        self.crop = crop          # None: crop the largest centred square
        self.name = name

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        path = self.files[int(i)]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB" if self.channels == 3 else "L")
                w, h = im.size
                c = min(w, h) if self.crop is None else min(self.crop, w, h)
                left, top = (w - c) // 2, (h - c) // 2
                im = im.crop((left, top, left + c, top + c))
                if c != self.size:
                    im = im.resize((self.size, self.size), Image.BICUBIC)
                a = np.asarray(im, dtype=np.uint8)
        except OSError as e:
            raise DatasetError(f"{self.name}: cannot read image {path}: {e}") from None
        if a.ndim == 2:
            a = a[:, :, None]
        return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 (N,C,H,W) stack when the config's image_size differs from the files'."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear",
                        antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# digits (scikit-learn, no download)
# --------------------------------------------------------------------------------------------
def load_digits_images() -> tuple[torch.Tensor, np.ndarray]:
    """The 1797 8x8 digits as float (N,1,8,8) in [0,16] and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.from_numpy(d.images.astype(np.float32))[:, None], d.target


def digits_dataset(size: int = 8) -> TensorImages:
    images, _ = load_digits_images()
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return TensorImages(images.clamp(0, 16), 16.0, "digits")


# --------------------------------------------------------------------------------------------
# MNIST (IDX files)
# --------------------------------------------------------------------------------------------
MNIST_TRAIN = "train-images-idx3-ubyte"


def read_idx_images(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DatasetError(f"MNIST: {path} is not a valid gzip file ({e})") from None
    if len(raw) < 16:
        raise DatasetError(f"MNIST: {path} is too short to be an IDX image file")
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 2051:
        raise DatasetError(f"MNIST: {path} has magic number {magic}, expected 2051 "
                           "(an IDX3 unsigned-byte image file)")
    if len(raw) != 16 + n * rows * cols:
        raise DatasetError(f"MNIST: {path} holds {len(raw) - 16} pixel bytes, its header "
                           f"announces {n}x{rows}x{cols}; the file is truncated or malformed")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def mnist_dataset(data_dir, size: int = 28) -> TensorImages:
    expected = f"{MNIST_TRAIN} or {MNIST_TRAIN}.gz (the MNIST IDX training images)"
    d = _need_dir(data_dir, "MNIST", expected)
    for folder in (d, d / "MNIST" / "raw", d / "raw", d / "mnist"):
        for name in (MNIST_TRAIN, MNIST_TRAIN + ".gz"):
            if (folder / name).is_file():
                images = torch.from_numpy(read_idx_images(folder / name).copy())[:, None]
                return TensorImages(_resize(images, size), 255.0, "mnist")
    raise DatasetError(f"MNIST: expected {expected} in {d} (or {d / 'MNIST' / 'raw'}); "
                       f"found: {_listing(d)}")


# --------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)
# --------------------------------------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow only the numpy classes they need, nothing executable."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"disallowed global {module}.{name}")


def _read_cifar_batch(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            d = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        data = d.get(b"data", d.get("data")) if isinstance(d, dict) else None
        if data is None:
            raise DatasetError(f"CIFAR-10: {path} has no 'data' entry")
        data = np.asarray(data, dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DatasetError(f"CIFAR-10: {path} data has shape {data.shape}, expected (N, 3072)")
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError) as e:
        raise DatasetError(f"CIFAR-10: {path} is not a CIFAR-10 python batch ({e})") from None
    return data.reshape(-1, 3, 32, 32)


def cifar10_dataset(data_dir, size: int = 32) -> TensorImages:
    expected = "data_batch_1 ... data_batch_5 (the CIFAR-10 python version)"
    d = _need_dir(data_dir, "CIFAR-10", expected)
    for folder in (d, d / "cifar-10-batches-py"):
        batches = sorted(folder.glob("data_batch_[1-5]"))
        if batches:
            images = torch.from_numpy(np.concatenate([_read_cifar_batch(p) for p in batches]))
            return TensorImages(_resize(images, size), 255.0, "cifar10")
    raise DatasetError(f"CIFAR-10: expected {expected} in {d} (or {d / 'cifar-10-batches-py'}); "
                       f"found: {_listing(d)}")


# --------------------------------------------------------------------------------------------
# CelebA (aligned JPEGs) and any image folder
# --------------------------------------------------------------------------------------------
def _image_files(folder: Path, recursive: bool) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def celeba_dataset(data_dir, size: int = 64, crop: int = 140) -> FileImages:
    expected = "the aligned CelebA JPEGs (img_align_celeba/000001.jpg ...)"
    d = _need_dir(data_dir, "CelebA", expected)
    for folder in (d / "img_align_celeba", d / "celeba" / "img_align_celeba", d):
        if folder.is_dir():
            files = _image_files(folder, recursive=False)
            if files:
                # NCSN/NCSNv2: CenterCrop(140) on the 178x218 aligned images, then resize.
                return FileImages(files, size, 3, crop, "celeba")
    raise DatasetError(f"CelebA: expected {expected} in {d / 'img_align_celeba'} or {d}; "
                       f"found: {_listing(d)}")


def folder_dataset(data_dir, size: int, channels: int) -> FileImages:
    expected = f"image files ({', '.join(IMAGE_SUFFIXES)}), in it or in sub-folders"
    d = _need_dir(data_dir, "image folder", expected)
    files = _image_files(d, recursive=True)
    if not files:
        raise DatasetError(f"image folder: expected {expected} in {d}; found: {_listing(d)}")
    return FileImages(files, size, channels, None, "folder")


def build_dataset(data_cfg, data_dir: str | None = None):
    """The dataset a config names; ``data_dir`` (the CLI's --data-dir) wins over the config's."""
    data_dir = data_dir or data_cfg.data_dir
    name = data_cfg.dataset
    size = data_cfg.image_size
    if name == "digits":
        ds = digits_dataset(size)
    elif name == "mnist":
        ds = mnist_dataset(data_dir, size)
    elif name == "cifar10":
        ds = cifar10_dataset(data_dir, size)
    elif name == "celeba":
        ds = celeba_dataset(data_dir, size, data_cfg.celeba_crop)
    elif name == "folder":
        ds = folder_dataset(data_dir, size, data_cfg.channels)
    else:
        raise DatasetError(f"unknown dataset {name!r}")
    if ds.shape[0] != data_cfg.channels:
        raise DatasetError(f"{name} images have {ds.shape[0]} channel(s) but the config says "
                           f"data.channels={data_cfg.channels}")
    return ds


# --------------------------------------------------------------------------------------------
# batch order: a pure function of (seed, step) so resume needs no loader state
# --------------------------------------------------------------------------------------------
def batch_indices(n: int, batch: int, seed: int, step: int, rank: int = 0, world: int = 1
                  ) -> torch.Tensor:
    """Indices of this rank's share of global batch ``step``.

    The data are visited epoch by epoch, each epoch in the order of ``randperm(n)`` seeded by
    ``(seed, epoch)``; global batch ``step`` covers positions ``[step*batch, (step+1)*batch)`` of
    that endless sequence. Rank r takes every world-th item. Being a function of the step alone,
    a resumed run sees exactly the batches the uninterrupted run would have seen.
    """
    start = step * batch
    out = []
    pos = start
    while pos < start + batch:
        epoch, offset = divmod(pos, n)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        take = min(n - offset, start + batch - pos)
        out.append(perm[offset:offset + take])
        pos += take
    idx = torch.cat(out)
    return idx[rank::world]


class StepBatchSampler(torch.utils.data.Sampler):
    """DataLoader batch sampler yielding ``batch_indices`` for steps start, start+1, ..."""

    def __init__(self, n, batch, seed, start_step, rank=0, world=1):
        self.n, self.batch, self.seed, self.start = n, batch, seed, start_step
        self.rank, self.world = rank, world

    def __iter__(self):
        step = self.start
        while True:
            yield batch_indices(self.n, self.batch, self.seed, step, self.rank, self.world).tolist()
            step += 1


def batch_stream(ds, batch: int, seed: int, start_step: int, rank: int = 0, world: int = 1,
                 num_workers: int = 0):
    """Endless iterator of float [0,1] batches (N, C, H, W) starting at ``start_step``."""
    if isinstance(ds, TensorImages):
        def gen():
            step = start_step
            while True:
                yield ds.batch(batch_indices(len(ds), batch, seed, step, rank, world))
                step += 1
        return gen()
    loader = torch.utils.data.DataLoader(
        ds, batch_sampler=StepBatchSampler(len(ds), batch, seed, start_step, rank, world),
        num_workers=num_workers, pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        # the loader's own generator: worker seeding must not consume the global torch RNG,
        # whose state the checkpoint restores for dropout
        generator=torch.Generator().manual_seed(seed + 17 * start_step))
    return iter(loader)


def close_stream(stream) -> None:
    """Release a ``batch_stream``: end the generator, or shut a DataLoader's worker processes down
    now rather than when the iterator is garbage-collected (after a failure, a traceback can keep it
    alive)."""
    for name in ("close", "_shutdown_workers"):
        fn = getattr(stream, name, None)
        if callable(fn):
            fn()
            return
