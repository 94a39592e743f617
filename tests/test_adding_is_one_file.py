"""Adding is one file (issue #20): a copy of the `trainers` package with two new files dropped in —
a method (tests/one_file/weighted_dsm.py → trainers/methods/) and a sampler
(tests/one_file/reverse_sde_em.py → trainers/samplers/), no other edit — and, in fresh interpreters
whose PYTHONPATH puts that copy before the repository (so `explorer` is the repository's), both
appear in the 2D command line (flags, train, sample, lab), the image command line, the Training tab's
objective combo and method form, the Samplers-tab panel form and the Lab tab, each option with its
tooltip. The sampler's numbers are checked too: it is pc's predictor with no corrector, so it must
give pc's samples bit for bit, and its lab error must fall with the NFE. docs/adding.md walks
through the same two files. The repository's own registries are never touched."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = Path(__file__).resolve().parent / "one_file"
DENSITY = "two_gaussians"          # off-centre (its mean is not 0), so a sampler must follow the score

# Runs `python -m <module> <args>` in this interpreter (runpy, as `-m` does) and prints one JSON object,
# so the whole command-line check pays for one torch import.
CLI = r"""
import contextlib, io, json, runpy, sys
import numpy as np, torch

def cli(module, *argv):
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [module, *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()[-2000:]}

D = sys.argv[1]
exact = ["--score", "exact", "--density", D, "--n", "300", "--seed", "3"]
r = {"train_help": cli("trainers.toy", "train", "--help"),
     "sample_help": cli("trainers.toy", "sample", "--help"),
     "image_help": cli("trainers.image", "sample", "--help"),
     "train": cli("trainers.toy", "train", "--density", D, "--objective", "weighted-dsm", "--dsm-power", "0.7",
                  "--sigma", "0.3", "--steps", "20", "--width", "16", "--depth", "2", "--batch", "64", "--out", "w.pt"),
     "bad_power": cli("trainers.toy", "train", "--density", D, "--objective", "weighted-dsm", "--dsm-power", "5",
                      "--steps", "1", "--out", "bad.pt"),
     "em": cli("trainers.toy", "sample", "--sampler", "reverse-sde", "--nfe", "10", *exact, "--out", "em.npy"),
     "pc": cli("trainers.toy", "sample", "--sampler", "pc", "--corrector-steps", "0", "--nfe", "10", *exact,
               "--out", "pc.npy"),
     "cold": cli("trainers.toy", "sample", "--sampler", "reverse-sde", "--noise-scale", "0.5", "--nfe", "10", *exact,
                 "--out", "cold.npy"),
     "from_ckpt": cli("trainers.toy", "sample", "--ckpt", "w.pt", "--sampler", "reverse-sde", "--nfe", "10",
                      "--n", "100", "--out", "ckpt.npy"),
     "lab": cli("trainers.toy", "lab", "--samplers", "reverse-sde,pc", "--corrector-steps", "0", "--nfe", "10,200",
                "--seeds", "2", "--n", "300", "--null-draws", "2", "--density", D, "--json")}
if r["train"]["code"] == 0:
    from trainers.fitting import load_checkpoint
    ckpt = torch.load("w.pt", weights_only=True)
    _, cfg, _, _ = load_checkpoint("w.pt")
    r["ckpt"] = {"config": ckpt["config"], "params": vars(cfg.params())}
if all(r[k]["code"] == 0 for k in ("em", "pc", "cold")):
    em, pc, cold = (np.load(f + ".npy") for f in ("em", "pc", "cold"))
    r["em_is_pc"] = bool(np.array_equal(em, pc))
    r["cold_is_em"] = bool(np.array_equal(cold, em))
    r["finite"] = bool(np.isfinite(em).all())
print(json.dumps(r))
"""

# Builds the tabs' forms offscreen and reports what a person would see.
GUI = r"""
import json, os
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6 import QtWidgets
app = QtWidgets.QApplication([])
from explorer.state import AppState
from explorer.views.training import TrainingView
from explorer.views.lab import LabView
try:
    from explorer.views.parts.sampler_panel import PanelControls
except ImportError:          # before the move to views/parts
    from explorer.views.sampler_panel import PanelControls

state = AppState()
tv = TrainingView(state)
combo = tv.objective
rows = tv.method_rows["weighted-dsm"]
power = rows.widgets["dsm_power"]
form = rows.layout
before = form.isRowVisible(power)
tv.settings_form.set("objective", "weighted-dsm")          # as a person picks it
rows.binding.set("dsm_power", 0.7)                          # and edits the new parameter
r = {"objectives": [combo.itemData(i) for i in range(combo.count())],
     "objective_texts": [combo.itemText(i) for i in range(combo.count())],
     "objective_tip": combo.toolTip(),
     "power_label": form.labelForField(power).text(), "power_tip": power.toolTip(),
     "power_row_hidden_before": not before, "power_row_shown_after": form.isRowVisible(power),
     "train_objective": state.train.objective, "train_extra": state.train.extra}
tv.shutdown()

panel = PanelControls(0, (200, 100, 50))
names = [panel.sampler.itemData(i) for i in range(panel.sampler.count())]
scale = panel.rows["reverse-sde"].widgets["noise_scale"]
panel.set_as_user("reverse-sde", "exact", noise_scale=0.5)
r.update({"panel_samplers": names, "panel_tip": panel.sampler.toolTip(),
          "scale_label": panel.form.labelForField(scale).text(), "scale_tip": scale.toolTip(),
          "scale_row_shown": panel.form.isRowVisible(scale), "panel": panel.panel(), "convention": panel.conv.text()})
lab = LabView(state)
r["lab_samplers"] = list(lab.sampler_boxes)

# the Samplers tab's path for that panel: its study sets the chain up, the stepper's advance_together runs it
import torch
from trainers import densities, fitting
from trainers.samplers import ChainState, advance_together
from trainers.studies import chains
density = densities.preset("two_gaussians")
_, exact = chains.score_models(None, fitting.ToyConfig(), density, density)
setup = chains.set_up_chains([panel.panel()], None, exact, 400, "gaussian", None, 0, density)
chain = ChainState(setup.specs[0].sampler, setup.starts[0].float().clone(), torch.Generator().manual_seed(1))
advance_together([chain], [chain.sampler.n_steps])
r.update({"chain_title": setup.specs[0].title, "chain_steps": chain.k, "chain_error": chain.error,
          "chain_flowing": setup.flowing[0], "chain_metrics": setup.metric_fn(chain.x.numpy()),
          "start_metrics": setup.metric_fn(setup.starts[0].float().numpy())})
print(json.dumps(r))
"""


def _run(script: str, cwd: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), str(REPO)]), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """A copy of trainers/ plus the two example files, and nothing else changed."""
    root = tmp_path_factory.mktemp("one_file")
    shutil.copytree(REPO / "trainers", root / "trainers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(EXAMPLES / "weighted_dsm.py", root / "trainers" / "methods" / "weighted_dsm.py")
    shutil.copy(EXAMPLES / "reverse_sde_em.py", root / "trainers" / "samplers" / "reverse_sde_em.py")
    return root


@pytest.fixture(scope="module")
def cli(copy) -> dict:
    return _run(CLI, copy, DENSITY)


@pytest.fixture(scope="module")
def gui(copy) -> dict:
    return _run(GUI, copy)


def test_the_repository_itself_has_neither():
    from trainers.methods import METHODS
    from trainers.samplers import SAMPLERS
    assert "weighted-dsm" not in METHODS and "reverse-sde" not in SAMPLERS
    assert not (REPO / "trainers" / "methods" / "weighted_dsm.py").exists()


@pytest.mark.slow
def test_method_appears_on_the_command_line(cli):
    text = cli["train_help"]["out"]
    assert cli["train_help"]["code"] == 0
    assert "weighted-dsm" in text and "--dsm-power" in text and "(1 + ‖x̃‖²)^λ" in text
    assert cli["train"]["code"] == 0, cli["train"]["err"]
    cfg = cli["ckpt"]["config"]
    assert cfg["objective"] == "weighted-dsm" and cfg["sigma"] == 0.3
    assert cfg["extra"] == {"dsm_power": 0.7}                      # not a ToyConfig field: kept in extra
    assert cli["ckpt"]["params"] == {"sigma": 0.3, "dsm_power": 0.7}
    # its schema's range is enforced with a one-line error naming the flag's range
    assert cli["bad_power"]["code"] != 0 and "[-2, 2]" in cli["bad_power"]["err"]
    # a model trained with it samples with the new sampler (its natural one is DSM's)
    assert cli["from_ckpt"]["code"] == 0, cli["from_ckpt"]["err"]


@pytest.mark.slow
def test_sampler_appears_on_both_command_lines(cli):
    for key in ("sample_help", "image_help"):
        text = cli[key]["out"]
        assert cli[key]["code"] == 0
        assert "reverse-sde" in text and "--noise-scale" in text and "Multiplies the injected noise" in text, key
    for key in ("em", "pc", "cold"):
        assert cli[key]["code"] == 0, cli[key]["err"]
    assert "Reverse SDE (Euler–Maruyama)" in cli["em"]["out"] and "10 network evaluations" in cli["em"]["out"]


@pytest.mark.slow
def test_sampler_numbers(cli):
    """Euler–Maruyama on the reverse VE SDE is pc's predictor: with no corrector, the same samples from
    the same generator, bit for bit; its own option changes them; in the lab it matches pc too, and
    its error falls from 10 to 200 evaluations."""
    assert cli["finite"] and cli["em_is_pc"] and not cli["cold_is_em"]
    assert cli["lab"]["code"] == 0, cli["lab"]["err"]
    lab = json.loads(cli["lab"]["out"])
    rows = {(r["sampler"], r["source"], r["nfe_target"]): r for r in lab["rows"]}
    assert {s for s, _, _ in rows} == {"reverse-sde", "pc"}
    for (sampler, source, nfe), row in rows.items():
        assert not row["error"]
        if sampler == "reverse-sde":
            assert row["energy_distances"] == rows["pc", source, nfe]["energy_distances"]
    for source in {s for _, s, _ in rows}:
        coarse, fine = rows["reverse-sde", source, 10], rows["reverse-sde", source, 200]
        assert fine["energy_distance"] < coarse["energy_distance"] / 4


@pytest.mark.slow
def test_both_appear_in_the_gui_forms(gui):
    assert "weighted-dsm" in gui["objectives"]
    assert "weighted-dsm — weighted DSM (one σ)" in gui["objective_texts"]
    assert "weighted-dsm: DSM at one σ" in gui["objective_tip"]
    assert gui["power_label"] == "Weight power λ" and "(1 + ‖x̃‖²)^λ" in gui["power_tip"]
    assert "Default: 0.5" in gui["power_tip"]
    assert gui["power_row_hidden_before"] and gui["power_row_shown_after"]
    assert gui["train_objective"] == "weighted-dsm" and gui["train_extra"] == {"dsm_power": 0.7}

    assert "reverse-sde" in gui["panel_samplers"] and "reverse-sde" in gui["lab_samplers"]
    assert gui["scale_label"] == "Noise scale r" and "Multiplies the injected noise" in gui["scale_tip"]
    assert gui["scale_row_shown"] and gui["convention"] == "y ← y + Δσ² s(y, σ) + r √Δσ² z"
    assert gui["panel"]["sampler"] == "reverse-sde" and gui["panel"]["source"] == "exact"
    assert gui["panel"]["options"]["noise_scale"] == 0.5 and gui["panel"]["options"]["steps"] == 100
    # the panel runs: 100 steps on the exact score, titled with its own option, far closer to the density
    # than its start (r = 0.5 is a cold chain: not the density itself)
    assert gui["chain_title"] == "Reverse SDE (Euler–Maruyama), r = 0.5 — exact score"
    assert gui["chain_steps"] == 100 and not gui["chain_error"] and not gui["chain_flowing"]
    assert gui["chain_metrics"]["energy_distance"] < gui["start_metrics"]["energy_distance"] / 4


def test_the_walk_through_shows_the_files_as_they_are():
    """docs/adding.md quotes the two example files: every line of its python blocks (comments aside)
    is in one of them, so the walk-through cannot drift from what the test above proves."""
    doc = (REPO / "docs" / "adding.md").read_text()
    blocks = doc.split("```python")[1:]
    assert len(blocks) == 2
    files = [(EXAMPLES / f).read_text() for f in ("weighted_dsm.py", "reverse_sde_em.py")]
    for block, text in zip(blocks, files):
        lines = [ln.split("  #")[0].rstrip() for ln in block.split("```")[0].splitlines()]
        missing = [ln for ln in lines if ln.strip() and not ln.strip().startswith("#") and ln not in text]
        assert missing == [], missing
