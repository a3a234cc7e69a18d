"""Drawing toy-world scenes: the image, one mask per object, and canny / depth / pose control maps.

Rendering is deterministic given (scene, size, seed): sizes, jitter and unspecified poses come from
``numpy.random.default_rng(seed)``. Pixels are pure palette colours (no anti-aliasing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.toyworld import figure, raster
from studio.toyworld.grammar import Scene, ToyObject, scene_prompt
from studio.toyworld.vocab import (
    BORDER_MARGIN,
    COLOURS,
    ONE_OBJECT_FIGURE_SIZE,
    ONE_OBJECT_JITTER,
    ONE_OBJECT_SIZE,
    OUTLINE_STROKE,
    POSE_NAMES,
    POSITIONS,
    STICK_FIGURE,
    TWO_OBJECT_FIGURE_SIZE,
    TWO_OBJECT_JITTER,
    TWO_OBJECT_SIZE,
    border_colour_index,
    nearest_colour_index,
)

CONTROL_KINDS = ("canny", "depth", "pose")
DEPTH_LEVELS = (224, 144)  # grey levels of the nearer and the farther object
MIN_SIZE = 16


@dataclass(frozen=True)
class Placement:
    """Where an object is drawn: pixel centre (x, y), bounding-box side in pixels, resolved pose (figures)."""

    obj: ToyObject
    centre: tuple[float, float]
    side: float
    pose: str | None = None


@dataclass(frozen=True, eq=False)
class Rendered:
    """A rendered scene: uint8 H x W x 3 image and control maps, and one boolean H x W mask per object."""

    scene: Scene
    size: int
    seed: int
    image: np.ndarray
    masks: tuple[np.ndarray, ...]
    canny: np.ndarray
    depth: np.ndarray
    pose: np.ndarray
    placements: tuple[Placement, ...]
    keypoints: tuple[np.ndarray | None, ...]  # (18, 2) pixel keypoints per stick figure, else None

    @property
    def prompt(self) -> str:
        """The scene's prompt."""
        return scene_prompt(self.scene)

    def control(self, kind: str) -> np.ndarray:
        """The control map of ``kind`` ("canny", "depth" or "pose")."""
        if kind not in CONTROL_KINDS:
            raise ValueError(f"unknown control kind {kind!r}; expected one of: {', '.join(CONTROL_KINDS)}")
        return getattr(self, kind)


def _clamp(centre: float, side: float, size: int) -> float:
    low = side / 2 + BORDER_MARGIN * size
    return min(max(centre, low), size - low)


def layout_scene(scene: Scene, size: int, rng: np.random.Generator) -> tuple[Placement, ...]:
    """Draw each object's size, jitter and (if unset) pose per TOYWORLD.md; jitter is clamped inside the image."""
    two = len(scene.objects) == 2
    placements = []
    for obj in scene.objects:
        is_figure = obj.shape == STICK_FIGURE
        if two:
            span, jitter = (TWO_OBJECT_FIGURE_SIZE if is_figure else TWO_OBJECT_SIZE), TWO_OBJECT_JITTER
        else:
            span, jitter = (ONE_OBJECT_FIGURE_SIZE if is_figure else ONE_OBJECT_SIZE), ONE_OBJECT_JITTER
        side = float(rng.uniform(*span)) * size
        jx, jy = rng.uniform(-jitter, jitter, size=2)
        drawn_pose = POSE_NAMES[int(rng.integers(len(POSE_NAMES)))]
        anchor_x, anchor_y = POSITIONS[obj.position]
        centre = (_clamp((anchor_x + jx) * size, side, size), _clamp((anchor_y + jy) * size, side, size))
        pose = (obj.pose or drawn_pose) if is_figure else None
        placements.append(Placement(obj, centre, side, pose))
    return tuple(placements)


def figure_keypoints(placement: Placement) -> np.ndarray:
    """The (18, 2) pixel keypoints of a placed stick figure (OpenPose body order)."""
    if placement.pose is None:
        raise ValueError(f"a {placement.obj.shape} has no keypoints; only stick figures do")
    return figure.place_keypoints(figure.pose_keypoints(placement.pose), placement.centre, placement.side)


def object_mask(placement: Placement, size: int, style: str | None = None) -> np.ndarray:
    """Boolean mask of one placed object; style "outlined" keeps a closed outline of the filled shape."""
    shape, centre, side = placement.obj.shape, placement.centre, placement.side
    if shape == STICK_FIGURE:  # already strokes: the outlined style leaves figures as they are
        return figure.figure_mask(figure_keypoints(placement), side, size)
    if shape == "circle":
        mask = raster.disc(size, centre, side / 2)
    elif shape == "square":
        mask = raster.square(size, centre, side)
    else:
        mask = raster.triangle(size, centre, side)
    if style == "outlined":
        mask = raster.outline(mask, max(1, round(OUTLINE_STROKE * side)))
    return mask


def edge_map(image: np.ndarray) -> np.ndarray:
    """Canny-like edge map (white on black, 1 px): foreground pixels next to a pixel of another palette colour.

    Computed from the image alone: pixels are quantised to the palette, the background is the border's colour,
    and edges are drawn on the inner side of each object boundary, so filling them gives the silhouettes.
    """
    labels = nearest_colour_index(image)
    background = border_colour_index(labels)
    padded = np.pad(labels, 1, constant_values=background)
    centre = padded[1:-1, 1:-1]
    differs = (
        (padded[:-2, 1:-1] != centre)
        | (padded[2:, 1:-1] != centre)
        | (padded[1:-1, :-2] != centre)
        | (padded[1:-1, 2:] != centre)
    )
    edges = differs & (labels != background)
    return np.repeat((edges * 255).astype(np.uint8)[..., None], 3, axis=2)


def depth_map(masks: tuple[np.ndarray, ...], levels: tuple[int, ...], size: int) -> np.ndarray:
    """Depth map: each object's silhouette in its grey level (brighter = nearer) on black."""
    depth = np.zeros((size, size), dtype=np.uint8)
    for mask, level in zip(masks, levels, strict=True):
        depth[mask] = level
    return np.repeat(depth[..., None], 3, axis=2)


def render_scene(scene: Scene, size: int, seed: int) -> Rendered:
    """Render ``scene`` on a size x size canvas; deterministic given ``seed``."""
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px, not {size}")
    rng = np.random.default_rng(seed)
    placements = layout_scene(scene, size, rng)
    masks = tuple(object_mask(p, size, scene.style) for p in placements)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = COLOURS[scene.background]
    for mask, placement in zip(masks, placements, strict=True):
        image[mask] = COLOURS[placement.obj.colour]
    levels = DEPTH_LEVELS[:1] if len(masks) == 1 else tuple(int(v) for v in rng.permutation(DEPTH_LEVELS))
    keypoints = tuple(figure_keypoints(p) if p.pose else None for p in placements)
    return Rendered(
        scene=scene,
        size=size,
        seed=seed,
        image=image,
        masks=masks,
        canny=edge_map(image),
        depth=depth_map(masks, levels, size),
        pose=figure.pose_map([kp for kp in keypoints if kp is not None], size),
        placements=placements,
        keypoints=keypoints,
    )
