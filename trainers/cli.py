"""Argument types shared by the command lines (`trainers.toy`, `trainers.image`)."""
from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return n


def positive_float(text: str) -> float:
    v = float(text)
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v
