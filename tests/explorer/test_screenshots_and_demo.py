"""Screenshots of every tab and the `python -m explorer --demo --screenshot` entry point, run as a
user would in a terminal.

The screenshots go to $EXPLORER_SCREENSHOTS when set, else to a temporary folder (so a test run
does not rewrite tracked files). Regenerate the committed ones embedded in the README with
    EXPLORER_SCREENSHOTS=docs/screenshots python -m pytest tests/explorer -k screenshots_of_each_tab
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SMALL = (1280, 800)          # the second window size the screenshots are taken at


def test_screenshots_of_each_tab_after_a_short_demo(screenshot_window, screenshot_dir, check_screenshots):
    """Default settings (2000 particles, width-128 MLP, NCSN) with a shorter training run."""
    from explorer.views.experiments import DEMO_EXPERIMENT

    win, shots = screenshot_window, screenshot_dir
    win.run_demo(train_steps=1500, lab=True, experiment=DEMO_EXPERIMENT, learned=True)
    win.views["score"].set_level(0)
    win.views["score"].show_vectors_at(2.8, 2.2)
    paths = [win.save_screenshot(str(shots / f"{tab}.png"), tab)
             for tab in ("density", "training", "score", "sampler", "lab", "experiments", "learned")]
    sampler, lab = win.views["sampler"], win.views["lab"]
    assert len(sampler.worker.chains) == 4 and all("model" in p["title"] for p in sampler.panels)
    assert lab.result is not None and {r.source for r in lab.result.rows} == {"model", "exact", "exact·exact-start"}
    experiment = win.views["experiments"].current_result()
    assert experiment is not None and experiment.name == DEMO_EXPERIMENT and experiment.holds
    learned = win.views["learned"].numbers()
    assert math.isfinite(learned["model_nll"]) and learned["model_nll"] >= learned["true_nll"] - 0.05
    check_screenshots(paths)
    # the same tabs at 1280×800 (the smaller screen the layout must fit: tests/explorer/test_layout_and_axes.py)
    win.resize(*SMALL)
    small = [win.save_screenshot(str(shots / f"{SMALL[0]}x{SMALL[1]}" / f"{tab}.png"), tab)
             for tab in ("density", "training", "score", "sampler", "lab", "experiments",
                         "learned", "history")]
    check_screenshots(small, size=SMALL)


def test_python_m_explorer_demo_saves_a_screenshot_and_exits(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = tmp_path / "demo.png"
    r = subprocess.run([sys.executable, "-m", "explorer", "--demo", "--steps", "150", "--screenshot", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] >= 800


def test_without_a_display_the_window_command_explains_what_to_run_instead(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    r = subprocess.run([sys.executable, "-m", "explorer"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "no display" in r.stderr and "--headless" in r.stderr


def test_headless_runs_the_demo_and_saves_a_screenshot(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    r = subprocess.run([sys.executable, "-m", "explorer", "--headless", "--steps", "100"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "explorer_demo.png") as im:
        assert im.size[0] > 800
