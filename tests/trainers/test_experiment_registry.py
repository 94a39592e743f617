"""The experiments registry (trainers/studies/experiments.py): the experiment files register themselves,
the listing order is experiments.LISTING whatever module is imported first (the CLI runs the module as
__main__), and a name cannot be taken twice."""
import dataclasses
import subprocess
import sys

import pytest

from trainers.studies import experiments


def _listed(code: list[str]) -> list[str]:
    out = subprocess.run([sys.executable, *code], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line and not line.startswith(" ")]


def test_the_listing_is_the_explicit_order_whatever_is_imported_first():
    assert list(experiments.EXPERIMENTS) == list(experiments.LISTING)
    # the command line (experiments.py as __main__ imports flow_experiments before the registry module)
    assert _listed(["-m", "trainers.studies.experiments", "list"]) == list(experiments.LISTING)


def test_a_new_experiment_follows_the_listed_ones_and_a_name_is_taken_once():
    first = experiments.EXPERIMENTS[experiments.LISTING[0]]
    new = dataclasses.replace(first, name="aaa-new")          # sorts first by name, listed last
    try:
        experiments.register(new)
        assert list(experiments.EXPERIMENTS)[-1] == "aaa-new"
        experiments.register(new)                              # the same experiment again: no change
        with pytest.raises(ValueError, match="'aaa-new' is registered twice"):
            experiments.register(dataclasses.replace(new, title="another"))
    finally:
        experiments.EXPERIMENTS.pop("aaa-new", None)
    assert list(experiments.EXPERIMENTS) == list(experiments.LISTING)
