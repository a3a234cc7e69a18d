"""Curves: one value per step, INTERFACES.md semantics, clear errors."""

import math

import pytest

from studio.core import schedule
from studio.core.errors import InvalidRequest


def test_step_positions_follow_the_contract():
    assert schedule.step_positions(1) == [0.0]
    assert schedule.step_positions(5) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_linear_in_between_and_flat_outside():
    curve = [[0.2, 4.0], [0.6, 2.0]]
    assert schedule.evaluate(curve, 0.0) == 4.0
    assert schedule.evaluate(curve, 0.4) == pytest.approx(3.0)
    assert schedule.evaluate(curve, 1.0) == 2.0


def test_per_step_without_curve_is_the_scalar():
    assert schedule.per_step(None, 3, 3.5) == [3.5, 3.5, 3.5]
    assert schedule.per_step([[0, 4], [1, 0]], 5, 9.9) == [4.0, 3.0, 2.0, 1.0, 0.0]


def test_step_function_with_repeated_p():
    curve = [[0, 3.0], [0.5, 3.0], [0.5, 1.0], [1, 1.0]]
    assert schedule.per_step(curve, 3, 0) == [3.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "curve, fragment",
    [
        ([], "non-empty"),
        ([[0.5]], "pair"),
        ([[1.5, 2]], "between 0 and 1"),
        ([[0, math.nan]], "from 0 to 30"),
        ([[0, 99]], "from 0 to 30"),
        ([[0.6, 1], [0.2, 1]], "sorted"),
        ([["a", 1]], "pair"),
    ],
)
def test_invalid_curves_name_the_fix(curve, fragment):
    with pytest.raises(InvalidRequest, match=fragment):
        schedule.validate_curve("guidance", curve)


def test_unknown_channel_is_refused():
    with pytest.raises(InvalidRequest, match="unknown schedule channel"):
        schedule.validate_schedule({"speed": [[0, 1]]})


def test_cfg_passes_counted_only_where_scale_above_one():
    cfg = schedule.per_step(schedule.presets(true_cfg=3.0)["CFG first third"]["true_cfg"], 9, 1.0)
    assert schedule.transformer_passes(9, cfg, has_negative=True) == 9 + 3
    assert schedule.transformer_passes(9, [3.0] * 9, has_negative=True) == 18
    assert schedule.transformer_passes(9, [3.0] * 9, has_negative=False) == 9


def test_every_preset_is_valid():
    for name, preset in schedule.presets().items():
        assert schedule.validate_schedule(preset) == preset or preset is None, name
