"""Same numbers as before the #20 refactor: benchmarks/same_numbers.py runs small fixed-seed cases through
the 2D CLI, the image CLI, the experiments CLI and the explorer's tabs (headless), and every number must
equal the one tests/golden_numbers.json recorded from commit 62aaaab within float32 rounding (relative tolerance
1e-5, absolute 1e-9: two equivalent float32 evaluation orders agree to ~1e-6 relative, while a changed formula,
seed or RNG draw moves the numbers by far more). The experiments' listing must keep every old entry unchanged
(new experiments may be added).

A deliberate change of numbers rewrites the golden file, in the commit that changes them, with
    python benchmarks/same_numbers.py --write tests/golden_numbers.json
"""
import importlib.util
import json
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden_numbers.json"


def _script():
    spec = importlib.util.spec_from_file_location("same_numbers", ROOT / "benchmarks" / "same_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


same_numbers = _script()


def test_the_differences_catch_a_changed_a_missing_and_a_crashed_number():
    old = {"a": 1.0, "b": "x", "c": 2, "d": True}
    assert same_numbers.differences(dict(old), old) == []
    assert same_numbers.differences({**old, "a": 1.0 + 1e-12}, old) == []         # within tolerance
    assert same_numbers.differences({**old, "a": 1.0 + 5e-6}, old) == []          # float32 rounding
    assert same_numbers.differences({**old, "a": 1.0 + 1e-4}, old) == ["a: old 1.0 new 1.0001"]
    diff = same_numbers.differences({"a": 1.001, "b": "x", "d": 1}, old)
    assert diff == ["a: old 1.0 new 1.001", "c: only old = 2", "d: old True new 1"]
    crashed = same_numbers.differences({"a": 1.0, "b": "x", "d": True, "c/CRASH": "ValueError: boom"},
                                       {"a": 1.0, "b": "x", "d": True, "c/x": 1.0, "c/y": 2.0})
    assert crashed == ["c/CRASH: only new = 'ValueError: boom'", "c/*: 2 old numbers missing (the case crashed)"]


def test_a_listing_may_grow_but_keeps_every_old_entry_unchanged():
    key = "experiments/list"
    old = {key: "a\n  claim: x\n\nb\n  claim: y\n\n"}
    assert same_numbers.differences({key: "a\n  claim: x\n\nb\n  claim: y\n\nc\n  claim: z\n\n"}, old) == []
    assert same_numbers.differences({key: "a\n  claim: x\n\nb\n  claim: y2\n\n"}, old) == [
        f"{key}: old entry 'b' missing or changed"]
    assert same_numbers.differences({key: "b\n  claim: y\n\n"}, old) == [f"{key}: old entry 'a' missing or changed"]
    configs = {"image/configs": "ddpm_digits  ddpm\nncsn_digits  ncsn\n"}      # one entry a line
    assert same_numbers.differences({"image/configs": "ddpm_digits  ddpm\nfm_digits  fm\nncsn_digits  ncsn\n"},
                                    configs) == []
    assert same_numbers.differences({"image/configs": "ddpm_digits  ddpm\n"}, configs) == [
        "image/configs: old entry 'ncsn_digits  ncsn' missing or changed"]


@pytest.mark.slow
@pytest.mark.parametrize("group", list(same_numbers.CASES))
def test_the_numbers_are_those_before_the_refactor(group):
    golden = json.loads(GOLDEN.read_text())["numbers"]
    old = {k: v for k, v in golden.items() if k.split("/")[0] == group}
    assert old, f"the golden file holds no {group} numbers"
    new = same_numbers.collect([group])["numbers"]
    diff = same_numbers.differences(new, old)
    near = same_numbers.below_tolerance(new, old)
    if near:          # not a failure: the tolerance allows them; said so the arithmetic change is seen
        key, rel = max(near.items(), key=lambda kv: kv[1])
        warnings.warn(f"{len(near)} {group} numbers are not bit-identical to the golden ones (within the "
                      f"tolerance; largest relative difference {rel:.2g}, at {key})")
    assert not diff, f"{len(diff)} of {len(old)} {group} numbers differ from {GOLDEN.name}:\n" + "\n".join(diff)
