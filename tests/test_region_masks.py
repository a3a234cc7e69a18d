"""Painted layers → per-colour masks: palette matching, resizing, prompts required, overlay."""

import numpy as np
import pytest

from studio.errors import InvalidRequest
from studio.ui.region_masks import colour_masks, overlay, regions_from_paint


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
    assert overlay(pairs, 64, 64).size == (256, 256)


def test_nothing_painted_means_no_regions():
    assert regions_from_paint(None, {}, 64, 64) == []
    empty = {"background": None, "layers": [np.zeros((8, 8, 4), np.uint8)], "composite": None}
    assert regions_from_paint(empty, {"red": "x"}, 64, 64) == []
