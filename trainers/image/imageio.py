"""Samples as files: PNG grids (Pillow), raw arrays (.npy / .npz), chains as .npz or a folder of PNG frames."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write_bytes


def to_unit(x: torch.Tensor, data_range: tuple[float, float]) -> torch.Tensor:
    """Map samples from the method's range to [0, 1] and clamp."""
    lo, hi = data_range
    return ((x.float() - lo) / (hi - lo)).clamp(0, 1)


def to_uint8(x01: torch.Tensor) -> np.ndarray:
    return (x01.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def grid_array(x01: torch.Tensor, nrow: int | None = None, pad: int = 2, scale: int | None = None
               ) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (H', W', 3) uint8 tiled grid; small images are upscaled
    (nearest) so an 8x8 digit is still visible."""
    x = x01.detach().cpu().float()
    n, c, h, w = x.shape
    if c == 1:
        x = x.expand(n, 3, h, w)
    if scale is None:
        scale = max(1, 32 // max(h, w))
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
        h, w = h * scale, w * scale
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol_rows = math.ceil(n / nrow)
    grid = torch.ones(3, ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad) * 0.5
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = x[i]
    return to_uint8(grid).transpose(1, 2, 0)


def save_grid(x01: torch.Tensor, path, nrow: int | None = None, scale: int | None = None) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grid_array(x01, nrow, scale=scale)).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def save_array(x: torch.Tensor, path) -> Path:
    """Raw samples as float32 (N, C, H, W), written atomically: ``*.npy`` the array itself, ``*.npz``
    (compressed) the array under the key ``samples``."""
    path = Path(path)
    arr = x.detach().cpu().float().numpy()
    buf = io.BytesIO()
    if path.suffix.lower() == ".npy":
        np.save(buf, arr)
    elif path.suffix.lower() == ".npz":
        np.savez_compressed(buf, samples=arr)
    else:
        raise ValueError(f"{path}: raw samples are saved as .npy or .npz")
    return atomic_write_bytes(path, buf.getvalue())


def save_chain(frames01: torch.Tensor, frame_steps, labels, path) -> Path:
    """frames (F, N, C, H, W) in [0,1]. ``*.npz``: uint8 ``frames``, ``frame_steps``, ``labels``;
    any other path: a folder of ``frame_0000.png`` ... grids plus ``frames.txt`` with the labels."""
    path = Path(path)
    if path.suffix == ".npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, frames=to_uint8(frames01), frame_steps=np.asarray(frame_steps),
                            labels=np.asarray(labels))
        return atomic_write_bytes(path, buf.getvalue())
    path.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames01):
        save_grid(f, path / f"frame_{i:04d}.png")
    (path / "frames.txt").write_text(
        "".join(f"frame_{i:04d}.png\t{s}\t{lab}\n" for i, (s, lab) in enumerate(zip(frame_steps, labels))))
    return path
