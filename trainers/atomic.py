"""Atomic file writes: write to a temp file in the same folder, fsync, then rename.

A crash mid-write leaves the old file (or nothing) in place, never a half-written one. Loading such
a file back fails with `CheckpointError` (one class for 2D and image checkpoints).
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path


class CheckpointError(RuntimeError):
    """No usable checkpoint (missing, unreadable, not ours, or too new); the message says which."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())
