"""Pose documents: OpenPose keypoints as JSON, preset poses, mirror, and the OpenPose map they draw (no torch).

A pose document is ``{"figures": [[[x, y] | null, ... 18 points], ...]}``: x and y are fractions (0..1) of the
output width and height, origin top-left; the 18 points follow the OpenPose body order of ``KEYPOINT_NAMES``
(``null`` = not visible: its limbs are not drawn). The map is drawn like the toy world's ``figure.pose_map``
(limbs in the OpenPose colour x 0.6, keypoints in full colour, on black), so on a square output it is the very map
the embedded model's pose ControlNet sees; above 256 px the strokes follow controlnet-aux's ``draw_bodypose``
(stick width 4 at 512 px).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from PIL import Image

from studio.core.errors import InvalidRequest
from studio.core.limits import loads_json
from studio.toyworld.figure import (
    KEYPOINT_NAMES,
    OPENPOSE_COLOURS,
    OPENPOSE_LIMBS,
    pose_keypoints,
    stroke_half_width,
)
from studio.toyworld.vocab import POSE_NAMES

Point = tuple[float, float] | None
Figure = list[Point]

N_POINTS = len(KEYPOINT_NAMES)
MAX_FIGURES = 8
# left/right keypoint pairs, swapped by a mirror so a figure facing the viewer stays facing the viewer
MIRROR_PAIRS: tuple[tuple[int, int], ...] = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))
_NECK, _HIPS = 1, (8, 11)
_UNIT_NECK_Y, _UNIT_TORSO = 0.27, 0.31  # every preset: neck at y 0.27, mid-hip 0.31 below it (unit box)
_SITTING = {
    0: (0.5, 0.13), 1: (0.5, 0.27), 14: (0.465, 0.105), 15: (0.535, 0.105), 16: (0.42, 0.12), 17: (0.58, 0.12),
    2: (0.36, 0.30), 5: (0.64, 0.30), 3: (0.31, 0.45), 4: (0.37, 0.60), 6: (0.69, 0.45), 7: (0.63, 0.60),
    8: (0.44, 0.58), 11: (0.56, 0.58), 9: (0.34, 0.66), 10: (0.34, 0.92), 12: (0.66, 0.66), 13: (0.66, 0.92),
}  # fmt: skip
PRESETS: tuple[str, ...] = (*POSE_NAMES, "sitting")
DEFAULT_SCALE = 0.8  # a preset's unit box spans this fraction of the shorter side
TOY_SCALE, TOY_MAX_SIDE = 0.45, 128  # small outputs: the toy world's figure size, what flux-mini's nets learned


def default_scale(width: int, height: int) -> float:
    """How big a new figure is: the toy world's one-figure size up to 128 px, most of the image above."""
    return TOY_SCALE if min(width, height) <= TOY_MAX_SIDE else DEFAULT_SCALE


def preset_unit(name: str) -> np.ndarray:
    """A preset pose's 18 keypoints as an (18, 2) array in the unit box (x right, y down)."""
    if name == "sitting":
        return np.array([_SITTING[i] for i in range(N_POINTS)], dtype=np.float64)
    if name not in POSE_NAMES:
        raise InvalidRequest(f"unknown preset pose {name!r} — pick one of: {', '.join(PRESETS)}")
    return pose_keypoints(name)


def preset_figure(
    name: str, width: int, height: int, centre: tuple[float, float] = (0.5, 0.5), scale: float | None = None
) -> Figure:
    """The preset placed with its unit box centred on ``centre`` (fractions), side ``scale`` x the shorter side
    (``default_scale`` when not given)."""
    side = (scale or default_scale(width, height)) * min(width, height)
    unit = preset_unit(name)
    xs = centre[0] + (unit[:, 0] - 0.5) * side / width
    ys = centre[1] + (unit[:, 1] - 0.5) * side / height
    return [(_clip(x), _clip(y)) for x, y in zip(xs, ys)]


def placement(figure: Figure, width: int, height: int) -> tuple[tuple[float, float], float]:
    """Where a preset would sit to replace ``figure``: its unit-box centre (fractions) and scale.

    Read from the neck and hips (the same in every preset), so switching presets never drifts; a figure without
    them, or with a collapsed torso, gets the default centred placement.
    """
    neck, hips = figure[_NECK], [figure[i] for i in _HIPS]
    if neck is None or hips[0] is None or hips[1] is None:
        return (0.5, 0.5), default_scale(width, height)
    hip_x, hip_y = (hips[0][0] + hips[1][0]) / 2 * width, (hips[0][1] + hips[1][1]) / 2 * height
    torso = math.hypot(hip_x - neck[0] * width, hip_y - neck[1] * height)
    if torso < 2:
        return (0.5, 0.5), default_scale(width, height)
    side = torso / _UNIT_TORSO
    centre = (neck[0], neck[1] + (0.5 - _UNIT_NECK_Y) * side / height)
    return centre, side / min(width, height)


def apply_preset(figures: list[Figure], index: int, name: str, width: int, height: int) -> list[Figure]:
    """``figures`` with figure ``index`` replaced by the preset, in its place; the preset alone when empty."""
    if not figures:
        return [preset_figure(name, width, height)]
    index = _index(figures, index)
    centre, scale = placement(figures[index], width, height)
    return [*figures[:index], preset_figure(name, width, height, centre, scale), *figures[index + 1 :]]


def add_figure(figures: list[Figure], width: int, height: int, name: str = "standing") -> list[Figure]:
    """``figures`` plus a smaller preset figure where it is farthest from the others (at most MAX_FIGURES)."""
    if len(figures) >= MAX_FIGURES:
        raise InvalidRequest(f"at most {MAX_FIGURES} figures fit in one pose map — remove one first")
    if not figures:
        return [preset_figure(name, width, height)]
    centres = [_mean_x(f) for f in figures]
    x = max((0.2, 0.35, 0.5, 0.65, 0.8), key=lambda c: min(abs(c - m) for m in centres))
    return [*figures, preset_figure(name, width, height, (x, 0.55), 0.75 * default_scale(width, height))]


def remove_figure(figures: list[Figure], index: int) -> list[Figure]:
    """``figures`` without figure ``index`` (nothing to remove is fine)."""
    if not figures:
        return []
    index = _index(figures, index)
    return [*figures[:index], *figures[index + 1 :]]


def mirror_figure(figure: Figure) -> Figure:
    """The figure reflected about its own vertical centre line, left and right keypoints swapped.

    A figure facing the viewer stays facing the viewer: its raised right arm becomes a raised left arm on the
    other side. Mirroring twice gives the figure back.
    """
    xs = [p[0] for p in figure if p is not None]
    if not xs:
        return list(figure)
    axis = (min(xs) + max(xs)) / 2
    reflected: Figure = [None if p is None else (_clip(2 * axis - p[0]), p[1]) for p in figure]
    for a, b in MIRROR_PAIRS:
        reflected[a], reflected[b] = reflected[b], reflected[a]
    return reflected


def mirror(figures: list[Figure], index: int) -> list[Figure]:
    """``figures`` with figure ``index`` mirrored."""
    if not figures:
        return []
    index = _index(figures, index)
    return [*figures[:index], mirror_figure(figures[index]), *figures[index + 1 :]]


def parse_pose(text: str | None) -> list[Figure]:
    """The figures of a pose document; InvalidRequest naming the first problem and the fix."""
    if text is None or not str(text).strip():
        return []
    try:
        doc = loads_json(text)
    except ValueError as exc:
        raise InvalidRequest(f"the pose is not valid JSON ({exc}) — pick a preset pose to start again") from None
    if isinstance(doc, list):
        doc = {"figures": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("figures"), list):
        raise InvalidRequest(
            'the pose must be a JSON object {"figures": [[[x, y], ... 18 points], ...]} — '
            "pick a preset pose to start again"
        )
    figures = doc["figures"]
    if len(figures) > MAX_FIGURES:
        raise InvalidRequest(f"the pose has {len(figures)} figures — at most {MAX_FIGURES} fit in one pose map")
    return [_parse_figure(k, figure) for k, figure in enumerate(figures)]


def dump_pose(figures: list[Figure]) -> str:
    """The canonical pose document (coordinates rounded to 4 decimals, compact)."""
    rounded = [[None if p is None else [round(p[0], 4), round(p[1], 4)] for p in figure] for figure in figures]
    return json.dumps({"figures": rounded}, separators=(",", ":"))


def half_width(width: int, height: int) -> float:
    """Half-width of limb strokes: the toy world's below 256 px, controlnet-aux's (4 px at 512) above."""
    side = min(width, height)
    return stroke_half_width(side) if side < 256 else max(4.0, side / 128)


def pose_map_array(figures: list[Figure], width: int, height: int) -> np.ndarray:
    """The OpenPose map (uint8 height x width x 3, black background) of the figures."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    half = half_width(width, height)
    for figure in figures:
        pixels = [None if p is None else (p[0] * width, p[1] * height) for p in figure]
        for (a, b), colour in zip(OPENPOSE_LIMBS, OPENPOSE_COLOURS):
            if pixels[a] is not None and pixels[b] is not None:
                _capsule(canvas, pixels[a], pixels[b], half, tuple(int(c * 0.6) for c in colour))
        for point, colour in zip(pixels, OPENPOSE_COLOURS, strict=True):
            if point is not None:
                _disc(canvas, point, half * 1.25, colour)
    return canvas


def render_pose_map(figures: list[Figure], width: int, height: int) -> Image.Image:
    """The OpenPose map of the figures as an RGB image of the output size."""
    if width < 1 or height < 1:
        raise InvalidRequest(f"the pose map needs a positive size (got {width}x{height})")
    return Image.fromarray(pose_map_array(figures, width, height), "RGB")


def _parse_figure(k: int, figure: Any) -> Figure:
    if not isinstance(figure, list) or len(figure) != N_POINTS:
        got = f"{len(figure)} points" if isinstance(figure, list) else type(figure).__name__
        raise InvalidRequest(
            f"figure {k + 1} has {got} — a figure is a list of {N_POINTS} [x, y] points (or null) "
            f"in OpenPose order: {', '.join(KEYPOINT_NAMES)}"
        )
    points: Figure = []
    for i, point in enumerate(figure):
        if point is None:
            points.append(None)
            continue
        where = f"figure {k + 1}, {KEYPOINT_NAMES[i]}"
        if (
            not isinstance(point, list | tuple)
            or len(point) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in point)
        ):
            raise InvalidRequest(f"{where}: expected [x, y] numbers or null, got {json.dumps(point)[:40]}")
        x, y = float(point[0]), float(point[1])
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise InvalidRequest(
                f"{where}: [{x:g}, {y:g}] is outside the image — x and y are fractions of the width and height, 0 to 1"
            )
        points.append((x, y))
    return points


def _index(figures: list[Figure], index: Any) -> int:
    try:
        value = int(index)
    except (TypeError, ValueError):
        value = len(figures) - 1
    return min(max(value, 0), len(figures) - 1)


def _mean_x(figure: Figure) -> float:
    xs = [p[0] for p in figure if p is not None]
    return sum(xs) / len(xs) if xs else 0.5


def _clip(v: float) -> float:
    return min(1.0, max(0.0, float(v)))


def _window(canvas: np.ndarray, lo: tuple[float, float], hi: tuple[float, float]) -> tuple[slice, slice, Any, Any]:
    """Rows/columns of the canvas whose pixel centres may lie in the box lo..hi, and those centres."""
    h, w = canvas.shape[:2]
    x0, x1 = max(0, math.floor(lo[0]) - 1), min(w, math.ceil(hi[0]) + 1)
    y0, y1 = max(0, math.floor(lo[1]) - 1), min(h, math.ceil(hi[1]) + 1)
    xs = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    ys = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1)), xs, ys


def _capsule(
    canvas: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], half: float, colour: tuple[int, ...]
) -> None:
    """Paint centres closer than ``half`` to the segment p0-p1 (as ``raster.capsule``, in a window)."""
    rows, cols, x, y = _window(
        canvas,
        (min(p0[0], p1[0]) - half, min(p0[1], p1[1]) - half),
        (max(p0[0], p1[0]) + half, max(p0[1], p1[1]) + half),
    )
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    length2 = dx * dx + dy * dy
    t = (
        np.zeros(np.broadcast_shapes(x.shape, y.shape))
        if length2 == 0
        else ((x - p0[0]) * dx + (y - p0[1]) * dy) / length2
    )
    t = np.clip(t, 0.0, 1.0)
    inside = np.hypot(x - (p0[0] + t * dx), y - (p0[1] + t * dy)) < half
    canvas[rows, cols][inside] = colour


def _disc(canvas: np.ndarray, centre: tuple[float, float], radius: float, colour: tuple[int, ...]) -> None:
    """Paint centres within ``radius`` of ``centre`` (as ``raster.disc``, in a window)."""
    rows, cols, x, y = _window(
        canvas, (centre[0] - radius, centre[1] - radius), (centre[0] + radius, centre[1] + radius)
    )
    inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2
    canvas[rows, cols][inside] = colour
