"""The toy world's vocabulary (TOYWORLD.md): palette, shapes, positions, sizes, and palette look-up."""

from __future__ import annotations

import numpy as np

# sRGB palette, in TOYWORLD.md order (object and background colours).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "stick figure")
STICK_FIGURE = "stick figure"

# Object-centre anchors as (x, y) fractions of the side.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
    "center": (0.5, 0.5),
}
POSITION_NAMES: tuple[str, ...] = tuple(POSITIONS)
CORNERS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")

# Style LoRA trigger words (placed in front of the shape in prompts).
STYLES: tuple[str, ...] = ("outlined",)

# Named stick-figure poses (keypoints live in figure.py).
POSE_NAMES: tuple[str, ...] = ("standing", "arms up", "arms out", "walking", "waving")

# Layout, as fractions of the image side: bounding-box size ranges and centre jitter.
ONE_OBJECT_SIZE = (0.30, 0.40)
ONE_OBJECT_FIGURE_SIZE = (0.42, 0.48)
ONE_OBJECT_JITTER = 1 / 16
TWO_OBJECT_SIZE = (0.25, 0.30)
TWO_OBJECT_FIGURE_SIZE = (0.33, 0.37)
TWO_OBJECT_JITTER = 1 / 32
BORDER_MARGIN = 1 / 32  # objects are kept this far inside the image (jitter is clamped)
OUTLINE_STROKE = 0.13  # outlined style: stroke as a fraction of the object's box (~4-5 % of the side)


def palette_array() -> np.ndarray:
    """The palette as a (9, 3) int array, rows in COLOUR_NAMES order."""
    return np.array([COLOURS[name] for name in COLOUR_NAMES], dtype=np.int32)


def nearest_colour_index(pixels: np.ndarray) -> np.ndarray:
    """Index into COLOUR_NAMES of the nearest palette colour (squared RGB distance) for (..., 3) pixels."""
    pix = np.asarray(pixels, dtype=np.int32)
    dist = [((pix - colour) ** 2).sum(axis=-1) for colour in palette_array()]
    return np.stack(dist, axis=-1).argmin(axis=-1)


def nearest_colour(rgb: tuple[float, float, float] | np.ndarray) -> str:
    """Name of the palette colour nearest to one RGB value."""
    return COLOUR_NAMES[int(nearest_colour_index(np.rint(np.asarray(rgb, dtype=float))))]


def nearest_position(x: float, y: float) -> str:
    """Name of the anchor nearest to (x, y) given as fractions of the side."""
    return min(POSITIONS, key=lambda p: (POSITIONS[p][0] - x) ** 2 + (POSITIONS[p][1] - y) ** 2)


def article(word: str) -> str:
    """'an' before a vowel, else 'a'."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def border_colour_index(labels: np.ndarray) -> int:
    """Most common palette index along the border of an (H, W) label image (ties: lowest index)."""
    border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    return int(np.bincount(border.ravel(), minlength=len(COLOURS)).argmax())
