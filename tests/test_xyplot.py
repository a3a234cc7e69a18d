"""X/Y plot on the embedded model: cells are records, the grid is labelled, bad axes are refused."""

from __future__ import annotations

import pytest

from studio import xyplot
from studio.core.errors import InvalidRequest
from studio.core.request import GenerationRequest

PROMPT = "a red circle in the top left on a white background"


def test_grid_over_presets_and_seeds_stores_each_cell(studio):
    x = xyplot.parse_axis("schedule preset", "constant, compose early")
    y = xyplot.parse_axis("seed", "1, 2")
    grid, records = xyplot.run(studio, GenerationRequest(prompt=PROMPT, guidance=3.5, seed=9), x, y)
    assert len(records) == 4 and grid.size == (110 + 2 * 128, 18 + 2 * 128)
    assert [r["request"]["seed"] for r in records] == [1, 1, 2, 2]
    assert records[0]["request"]["schedule"] is None and records[1]["request"]["schedule"]["guidance"]
    _, total = studio.store.list()
    assert total == 4
    # same seed, different schedule → different image; the constant preset equals no schedule
    assert records[0]["images"][0]["sha256"] != records[1]["images"][0]["sha256"]


def test_presets_shape_the_models_default_guidance_when_none_is_given(studio):
    default = studio.engine.defaults().guidance
    x = xyplot.parse_axis("schedule preset", "compose early")
    _, records = xyplot.run(studio, GenerationRequest(prompt=PROMPT, seed=3), x)
    curve = records[0]["request"]["schedule"]["guidance"]
    assert curve[1][1] == pytest.approx(default) and curve[0][1] == pytest.approx(1.5 * default)


@pytest.mark.parametrize(
    "axis, text, fragment",
    [
        ("speed", "1", "unknown"),
        ("guidance", "", "separated by commas"),
        ("steps", "a, b", "int numbers"),
        ("schedule preset", "turbo", "unknown preset"),
    ],
)
def test_bad_axes_name_the_fix(axis, text, fragment):
    with pytest.raises(InvalidRequest, match=fragment):
        xyplot.parse_axis(axis, text)


def test_invalid_cell_values_are_refused_before_generating():
    with pytest.raises(InvalidRequest, match="steps"):
        xyplot.cell_requests(GenerationRequest(prompt=PROMPT), xyplot.parse_axis("steps", "4, 0"), None)


def test_lora_weight_and_control_strength_axes_set_every_unit():
    from studio.core.request import ControlSpec, LoraSpec

    ref = "sha256:" + "a" * 64
    base = GenerationRequest(
        prompt=PROMPT, loras=(LoraSpec("a"), LoraSpec("b", "", 0.5)), controls=(ControlSpec("canny", ref),)
    )
    cells = xyplot.cell_requests(
        base, xyplot.parse_axis("LoRA weight", "0, 0.8"), xyplot.parse_axis("control strength", "0.3, 1")
    )
    assert [[lo.weight for lo in c.loras] for c in cells[0]] == [[0.0, 0.0], [0.8, 0.8]]
    assert [c.controls[0].strength for c in (cells[0][0], cells[1][0])] == [0.3, 1.0]
    with pytest.raises(InvalidRequest, match="needs at least one LoRA"):
        xyplot.cell_requests(GenerationRequest(prompt=PROMPT), xyplot.parse_axis("LoRA weight", "1"), None)
