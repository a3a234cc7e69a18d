"""Canny maps drawn the way other tools draw them (studio.toyworld.tool_maps)."""

from __future__ import annotations

import numpy as np

from studio.toyworld import render_scene
from studio.toyworld.evaluate import control_silhouette, mask_iou
from studio.toyworld.grammar import Scene, ToyObject
from studio.toyworld.tool_maps import (
    TOOLS,
    antialiased,
    comfyui_kornia,
    cv2_colour,
    empty_map,
    grey_blurred,
    training_map,
)
from studio.toyworld.vocab import COLOURS

SQUARE = Scene(objects=(ToyObject("yellow", "square", "center"),), background="blue")


def _equal_luminance_pair() -> tuple[str, str]:
    """Two palette colours whose grey levels differ least (green on red in the toy palette)."""
    names = list(COLOURS)
    grey = {n: 0.299 * COLOURS[n][0] + 0.587 * COLOURS[n][1] + 0.114 * COLOURS[n][2] for n in names}
    pairs = [(a, b) for a in names for b in names if a != b]
    return min(pairs, key=lambda p: abs(grey[p[0]] - grey[p[1]]))


def test_antialiased_keeps_the_layout_and_softens_the_edges() -> None:
    hard = render_scene(SQUARE, 128, 3)
    smooth = antialiased(SQUARE, 128, 3)
    assert smooth.shape == hard.image.shape and smooth.dtype == np.uint8
    palette = {tuple(c) for c in hard.image.reshape(-1, 3)}
    blended = [tuple(c) for c in smooth.reshape(-1, 3) if tuple(c) not in palette]
    assert blended, "an area-averaged render has colours between the object's and the background's"
    differs = np.abs(smooth.astype(int) - hard.image.astype(int)).max(axis=2) > 0
    assert differs.mean() < 0.05, "only the boundary pixels change"


def test_colour_tools_trace_the_silhouette_the_benchmark_map_gives() -> None:
    hard = render_scene(SQUARE, 128, 3)
    truth = control_silhouette(hard.control("canny"), "canny")
    for name in ("cv2 100/200 (A1111, Forge)", "controlnet-aux"):
        tool_map = TOOLS[name](antialiased(SQUARE, 128, 3))
        assert tool_map.shape == (128, 128, 3) and set(np.unique(tool_map)) <= {0, 255}
        assert mask_iou(control_silhouette(tool_map, "canny"), truth) > 0.85, name


def test_grey_level_tools_lose_edges_between_colours_of_equal_luminance() -> None:
    colour, background = _equal_luminance_pair()
    scene = Scene(objects=(ToyObject(colour, "square", "center"),), background=background)
    image = antialiased(scene, 128, 5)
    assert not empty_map(cv2_colour(image)), "OpenCV on the colour image sees the colour edge"
    assert empty_map(grey_blurred(image))
    assert empty_map(comfyui_kornia(image))


def test_kornia_canny_draws_a_contrasting_edge() -> None:
    tool_map = comfyui_kornia(antialiased(SQUARE, 128, 3))
    assert not empty_map(tool_map) and tool_map.dtype == np.uint8


def test_training_maps_are_never_empty() -> None:
    colour, background = _equal_luminance_pair()
    image = antialiased(Scene(objects=(ToyObject(colour, "circle", "center"),), background=background), 128, 5)
    rng = np.random.default_rng(1)
    maps = [training_map(image, rng) for _ in range(24)]
    assert any(m is None for m in maps), "the grey-level draws of an equal-luminance scene are dropped"
    assert all(not empty_map(m) for m in maps if m is not None)
