"""The one-way arrow of the architecture: explorer (Qt) imports trainers; trainers never imports Qt; explorer
holds no computation (its views import only registries, studies and schemas; no torch maths anywhere in it)."""
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


# ------------------------------------------------------------------ explorer holds no computation
# The rule (issue #20): explorer/ draws and runs threads; the computing is trainers'. Checked on the
# source (AST), so a new file is covered without being listed:
#  1. explorer/views (and views/parts) import from trainers only the registries (methods, samplers,
#     densities), the studies (trainers.studies.*), the schemas (trainers.schema, and from trainers.fitting
#     only the names in FITTING_NAMES: the 2D config the Training tab edits, the method it names, the
#     fixed training set drawn as dots), and VIEW_ALLOWED: drawing data (trainers.grid: density pictures,
#     contours, arrow scales), atomic file writes, and the image trainer's files and configs read by the
#     Image-runs tab. Nothing else — no objectives, score models, likelihoods, metrics or sampler steps.
#  2. explorer/views never import torch: a tensor a study returns becomes numpy with `.numpy()`.
#  3. Everywhere in explorer/, torch is used only as TORCH_ALLOWED says: types, a seeded generator, the
#     thread count, loading a session file and asking for the CUDA device — never for maths.
VIEW_REGISTRIES = ("trainers.methods", "trainers.samplers", "trainers.densities")
VIEW_ALLOWED = ("trainers.schema", "trainers.grid", "trainers.atomic", "trainers.image.run_layout",
                "trainers.image.progress", "trainers.image.runs", "trainers.image.config")
FITTING_NAMES = {"ToyConfig", "method_for", "training_data"}
TORCH_ALLOWED = {"torch.nn.Module", "torch.Tensor", "torch.Generator", "torch.set_num_threads", "torch.load",
                 "torch.cuda.is_available", "torch.cuda.get_device_properties"}

TRAINERS_ROOT = Path(trainers.__file__).parent
EXPLORER = TRAINERS_ROOT.parent / "explorer"


def _view_allows(module: str) -> bool:
    if module.startswith("trainers.studies") or module in VIEW_REGISTRIES + VIEW_ALLOWED:
        return True
    return any(module.startswith(m + ".") for m in VIEW_REGISTRIES)


def _trainers_imports(tree) -> list[tuple[str, str, int]]:
    """(module, name or '', line) of every import of trainers in a module's AST (`from trainers import x`
    counts as module trainers.x)."""
    import ast

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "trainers"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "trainers":
            package = (TRAINERS_ROOT.parent / node.module.replace(".", "/") / "__init__.py").is_file()
            for a in node.names:          # from a package: a module; from a module: a name in it
                found.append((f"{node.module}.{a.name}", "", node.lineno) if package
                             else (node.module, a.name, node.lineno))
    return found


def _dotted(node) -> str:
    import ast

    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def view_problems(path: Path) -> list[str]:
    """Where a view file breaks rules 1 and 2 ([] when it keeps them)."""
    import ast

    tree = ast.parse(path.read_text())
    problems = []
    for module, name, line in _trainers_imports(tree):
        if module == "trainers.fitting":          # the module itself: its attributes are checked below
            if name and name not in FITTING_NAMES:
                problems.append(f"{path.name}:{line} imports {name} from trainers.fitting")
        elif not _view_allows(module):
            problems.append(f"{path.name}:{line} imports {module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _dotted(node).startswith("fitting."):
            attr = _dotted(node).split(".")[1]
            if attr not in FITTING_NAMES:
                problems.append(f"{path.name}:{node.lineno} uses fitting.{attr}")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n.split(".")[0] == "torch" for n in names):
                problems.append(f"{path.name}:{node.lineno} imports torch")
    return problems


def torch_problems(path: Path) -> list[str]:
    """Where an explorer file uses torch beyond TORCH_ALLOWED (rule 3)."""
    import ast

    tree = ast.parse(path.read_text())
    problems = []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not isinstance(parents.get(node), ast.Attribute):
            name = _dotted(node)
            if name.startswith("torch.") and name not in TORCH_ALLOWED:
                problems.append(f"{path.relative_to(EXPLORER.parent)}:{node.lineno} uses {name}")
    return problems


def test_the_views_import_only_registries_studies_and_schemas_and_no_torch():
    views = sorted((EXPLORER / "views").rglob("*.py"))
    assert len(views) > 10
    problems = [p for path in views for p in view_problems(path)]
    assert problems == [], "\n".join(problems)


def test_explorer_uses_torch_for_no_maths():
    problems = [p for path in sorted(EXPLORER.rglob("*.py")) for p in torch_problems(path)]
    assert problems == [], "\n".join(problems)


def test_the_rules_catch_a_view_that_computes(tmp_path):
    bad = tmp_path / "bad_view.py"
    bad.write_text("import torch\nfrom trainers import fitting, grid\nfrom trainers.metrics import energy_distance\n"
                   "from trainers.studies import lab\nx = fitting.model_score_at\ny = torch.linalg.norm\n"
                   "z = torch.Generator\n")
    assert sorted(view_problems(bad)) == ["bad_view.py:1 imports torch", "bad_view.py:3 imports trainers.metrics",
                                          "bad_view.py:5 uses fitting.model_score_at"]
    global EXPLORER
    old, EXPLORER = EXPLORER, tmp_path
    try:
        assert torch_problems(bad) == ["tmp_path_dir/bad_view.py:6 uses torch.linalg.norm".replace(
            "tmp_path_dir", tmp_path.name)]
    finally:
        EXPLORER = old
