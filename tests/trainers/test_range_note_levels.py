"""An NCSN model trained on L discrete levels, asked for σ between them inside its range, interpolates;
only σ beyond the range is an extrapolation (issue 25, item 11: the image note said "extrapolates" for
σ 0.0128–0.783 inside the trained [0.01, 1])."""
from __future__ import annotations

import torch

from trainers.schedules import geometric_sigmas
from trainers.score_models import SigmaScoreModel

LEVELS = geometric_sigmas(1.0, 0.01, 10)


def _model():
    return SigmaScoreModel(lambda x, c: x, 0.01, 1.0, levels=LEVELS)


def test_between_levels_is_an_interpolation():
    note = _model().range_note(torch.tensor([0.0128, 0.3, 0.783]))
    assert "interpolates" in note and "extrapolates" not in note and "σ from 0.0128 to 0.783" in note


def test_beyond_the_range_is_an_extrapolation():
    assert "extrapolates" in _model().range_note(torch.tensor([0.0128, 2.0]))
    assert "extrapolates" in _model().range_note(torch.tensor([0.005]))


def test_the_trained_levels_need_no_note_and_asked_levels_are_remembered():
    m = _model()
    assert m.range_note(LEVELS) == ""
    m.score(torch.zeros(3, 2), 0.5)                   # between levels 0.599 and 0.359
    assert "interpolates" in m.range_note()
