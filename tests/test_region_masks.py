"""Painted layers → per-colour masks: palette matching, resizing, prompts required, overlay."""

import numpy as np
import pytest

from studio.core.errors import InvalidRequest
from studio.ui.region_masks import PALETTE, boxes_value, colour_masks, overlay, painted_regions, regions_from_paint


def painted(size=256):
    layer = np.zeros((size, size, 4), dtype=np.uint8)
    layer[:128, :128] = (250, 5, 5, 255)  # red-ish stroke, top left
    layer[128:, 128:] = (0, 10, 240, 255)  # blue, bottom right
    return {"background": None, "layers": [layer], "composite": layer}


def test_masks_per_colour_resized_to_the_output():
    masks = colour_masks(painted()["layers"][0], 64, 64)
    assert set(masks) == {"red", "blue"}
    assert masks["red"][:32, :32].all() and not masks["red"][32:, :].any()
    assert masks["blue"].sum() == 32 * 32


def test_regions_need_a_prompt_per_painted_colour():
    with pytest.raises(InvalidRequest, match="blue region has no prompt"):
        regions_from_paint(painted(), {"red": "a red circle"}, 64, 64)
    pairs = regions_from_paint(painted(), {"red": "a red circle", "blue": "a blue square"}, 64, 64)
    assert [p for _, p in pairs] == ["a red circle", "a blue square"]
    regions = painted_regions(painted(), {"red": "a red circle", "blue": "a blue square"}, 64, 64)
    assert overlay(regions, 64, 64).size == (512, 512)  # whole-number upscaling to at least 512 px


def test_overlay_shows_each_region_in_its_own_colour():
    """Red and blue painted (green skipped): blue must not be drawn green (it was paired by position)."""
    regions = painted_regions(painted(), {"red": "a red circle", "blue": "a blue square"}, 64, 64)
    assert [r.colour for r in regions] == ["red", "blue"]
    image = overlay(regions, 64, 64).convert("RGB")
    rgb = dict((name, tuple(int(h[i : i + 2], 16) for i in (1, 3, 5))) for name, h in PALETTE)
    assert image.getpixel((20, 500)) == (255, 255, 255)  # unpainted bottom left
    assert image.getpixel((500, 500)) == rgb["blue"]  # bottom-right corner, away from the label
    assert image.getpixel((240, 20)) == rgb["red"]  # top-left region, above its (centred) label
    preview = painted_regions(painted(), {"red": "a red circle"}, 64, 64, require_prompts=False)
    assert [r.prompt for r in preview] == ["a red circle", ""]  # a preview shows a region before its prompt


def test_boxes_value_paints_regions_the_panel_reads_back():
    value = boxes_value({"red": (0.0, 0.0, 0.5, 0.5), "blue": (0.5, 0.5, 1.0, 1.0)})
    masks = colour_masks(value["layers"][0], 32, 32)
    assert masks["red"][:16, :16].all() and masks["blue"][16:, 16:].all() and set(masks) == {"red", "blue"}


def test_nothing_painted_means_no_regions():
    assert regions_from_paint(None, {}, 64, 64) == []
    empty = {"background": None, "layers": [np.zeros((8, 8, 4), np.uint8)], "composite": None}
    assert regions_from_paint(empty, {"red": "x"}, 64, 64) == []
