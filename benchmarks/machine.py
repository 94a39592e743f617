"""One header line for every benchmark: what machine, how loaded, which torch and Qt platform."""
from __future__ import annotations

import os
import platform

import torch


def describe(title: str, qt_platform: str | None = None) -> str:
    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "n/a"
    qt = f", Qt platform {qt_platform}" if qt_platform else ""
    return (f"# {title} — {platform.machine()}, {os.cpu_count()} CPUs (load average {load} at start), "
            f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s){qt}")
