"""The one-way arrow of the architecture: explorer (Qt) imports trainers; trainers never imports Qt."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import trainers

QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "PySide2", "pyqtgraph", "shiboken6")


def _trainers_modules() -> list[str]:
    root = Path(trainers.__file__).parent
    return ["trainers"] + [f"trainers.{m.name}" for m in pkgutil.walk_packages([str(root)], "")
                           if not m.name.startswith("_")]


def test_importing_every_trainers_module_loads_no_qt():
    mods = _trainers_modules()
    code = (
        "import importlib, json, sys\n"
        f"mods = {mods!r}\n"
        "failed = {}\n"
        "for m in mods:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except ImportError as e:  # optional extras (torchvision, tensorboard) may be absent\n"
        "        failed[m] = str(e)\n"
        f"qt = sorted(k for k in sys.modules if k.split('.')[0] in {QT_MODULES!r})\n"
        "print(json.dumps({'qt': qt, 'failed': failed}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["qt"] == [], f"trainers imported Qt modules: {result['qt']}"
    assert "trainers.grid" in mods and "trainers.densities" in mods


def test_no_trainers_source_mentions_qt():
    root = Path(trainers.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        for name in QT_MODULES:
            assert f"import {name}" not in text and f"from {name}" not in text, f"{path} imports {name}"
