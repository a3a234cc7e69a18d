"""ToyGenEval (TOYWORLD.md): score images against toy-world prompts, plus the control and style-LoRA checks.

Exact rules chosen where TOYWORLD.md leaves room (all sizes relative to the side s = min(H, W)):
- gap joining: the foreground is dilated by ceil(s / 128) px (3 x 3 steps, joining gaps up to s / 64), labelled
  with 8-connectivity; an object is a label's *original* foreground pixels, kept when > 1 % of the image.
- matching: an object's candidates are the components whose centroid is nearest (of the five anchors) to its
  anchor; it takes the largest of them. A prompt object without candidates takes the nearest component (centroid
  to anchor) not taken by another object, and then fails the position check; with none left it is not found.
- shape: thin strokes = erosion by a disc of diameter s / 32 (a pixel survives when its distance to the outside
  exceeds max(1, s / 64)) keeps fewer than 30 % of the pixels; thin and not hollow (see ``is_hollow``) means stick
  figure (a hollow closed outline is an outlined shape). Else the fill ratio of the hole-filled mask's bounding
  box: square >= 0.88, circle 0.68-0.88, triangle 0.36-0.68 with >= 60 % of the pixels below the box's middle;
  anything else is "other".
- joint: every prompt object found with colour, shape and position right (the background is reported apart).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from studio.toyworld import raster
from studio.toyworld.grammar import Scene, ToyObject, parse_prompt
from studio.toyworld.vocab import (
    COLOUR_NAMES,
    POSITIONS,
    STICK_FIGURE,
    border_colour_index,
    nearest_colour,
    nearest_colour_index,
    nearest_position,
)

MIN_COMPONENT = 0.01
THIN_SURVIVAL = 0.30
CONTROL_IOU = 0.8
HOLLOW_COVER = 0.8


@dataclass(frozen=True, eq=False)
class Component:
    """One foreground object found in an image: its pixels, their count and centroid (x, y) as side fractions."""

    mask: np.ndarray
    area: int
    centroid: tuple[float, float]


@dataclass(frozen=True, eq=False)
class ObjectScore:
    """What was found for one prompt object (None where nothing was found) and whether each attribute is right."""

    expected: ToyObject
    mask: np.ndarray | None
    colour: str | None
    shape: str | None
    position: str | None

    @property
    def found(self) -> bool:
        return self.mask is not None

    @property
    def colour_ok(self) -> bool:
        return self.colour == self.expected.colour

    @property
    def shape_ok(self) -> bool:
        return self.shape == self.expected.shape

    @property
    def position_ok(self) -> bool:
        return self.position == self.expected.position

    @property
    def correct(self) -> bool:
        return self.colour_ok and self.shape_ok and self.position_ok


@dataclass(frozen=True, eq=False)
class ImageScore:
    """The score of one image against one prompt."""

    scene: Scene
    background: str
    objects: tuple[ObjectScore, ...]

    @property
    def background_ok(self) -> bool:
        return self.background == self.scene.background

    @property
    def joint(self) -> bool:
        return all(obj.correct for obj in self.objects)


def to_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """An RGB uint8 H x W x 3 array from a PIL image or an array (alpha dropped, grey expanded, floats in 0..1)."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if np.issubdtype(array.dtype, np.floating):
        array = np.rint(np.clip(array, 0.0, 1.0) * 255)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 image, got shape {array.shape}")
    return np.ascontiguousarray(array[..., :3], dtype=np.uint8)


def find_components(image: np.ndarray | Image.Image) -> tuple[str, tuple[Component, ...]]:
    """The background colour (the border's most common palette colour) and the image's objects, largest first."""
    pixels = to_array(image)
    labels = nearest_colour_index(pixels)
    background = border_colour_index(labels)
    foreground = labels != background
    height, width = foreground.shape
    square = np.ones((3, 3), dtype=bool)
    joined = ndimage.binary_dilation(foreground, structure=square, iterations=math.ceil(min(height, width) / 128))
    ids, count = ndimage.label(joined, structure=square)
    ids = np.where(foreground, ids, 0)
    sizes = np.bincount(ids.ravel(), minlength=count + 1)
    components = []
    for index in np.argsort(-sizes[1:], kind="stable") + 1:
        if sizes[index] <= MIN_COMPONENT * height * width:
            break
        mask = ids == index
        ys, xs = np.nonzero(mask)
        centroid = ((xs.mean() + 0.5) / width, (ys.mean() + 0.5) / height)
        components.append(Component(mask, int(sizes[index]), (float(centroid[0]), float(centroid[1]))))
    return COLOUR_NAMES[background], tuple(components)


def is_thin(mask: np.ndarray) -> bool:
    """Made of thin strokes: under an erosion by a disc of diameter side / 32, fewer than 30 % of pixels survive."""
    total = int(np.count_nonzero(mask))
    radius = max(1.0, min(mask.shape) / 64)
    return total > 0 and int((raster.inner_distance(mask) > radius).sum()) < THIN_SURVIVAL * total


def classify_shape(mask: np.ndarray) -> str:
    """'stick figure', 'square', 'circle', 'triangle' or 'other' for an object's image-sized mask (module rules)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return "other"
    if is_thin(mask) and not is_hollow(mask):
        return STICK_FIGURE
    filled = raster.fill_holes(mask)
    ys, xs = np.nonzero(filled)
    top, bottom = ys.min(), ys.max() + 1
    ratio = len(ys) / ((bottom - top) * (xs.max() + 1 - xs.min()))
    lower = float(np.mean(ys + 0.5 > (top + bottom) / 2))
    if ratio >= 0.88:
        return "square"
    if ratio >= 0.68:
        return "circle"
    if ratio >= 0.36 and lower >= 0.6:
        return "triangle"
    return "other"


def _distance(component: Component, position: str) -> float:
    anchor = POSITIONS[position]
    return math.hypot(component.centroid[0] - anchor[0], component.centroid[1] - anchor[1])


def match_objects(objects: tuple[ToyObject, ...], components: tuple[Component, ...]) -> list[Component | None]:
    """Each prompt object's component or None (the matching rule of the module docstring)."""
    cells = [nearest_position(*c.centroid) for c in components]
    chosen: list[Component | None] = []
    for obj in objects:
        candidates = [c for c, cell in zip(components, cells, strict=True) if cell == obj.position]
        chosen.append(max(candidates, key=lambda c: c.area) if candidates else None)
    for i, obj in enumerate(objects):
        if chosen[i] is None:
            free = [c for c in components if not any(c is taken for taken in chosen)]
            chosen[i] = min(free, key=lambda c: _distance(c, obj.position)) if free else None
    return chosen


def _score_object(pixels: np.ndarray, obj: ToyObject, component: Component | None) -> ObjectScore:
    if component is None:
        return ObjectScore(obj, None, None, None, None)
    colour = nearest_colour(np.median(pixels[component.mask], axis=0))
    position = nearest_position(*component.centroid)
    return ObjectScore(obj, component.mask, colour, classify_shape(component.mask), position)


def evaluate_image(image: np.ndarray | Image.Image, prompt: str | Scene) -> ImageScore:
    """Score one image against a toy-world prompt (or an already parsed Scene)."""
    scene = prompt if isinstance(prompt, Scene) else parse_prompt(prompt)
    pixels = to_array(image)
    background, components = find_components(pixels)
    matched = match_objects(scene.objects, components)
    scores = tuple(_score_object(pixels, obj, c) for obj, c in zip(scene.objects, matched, strict=True))
    return ImageScore(scene, background, scores)


def evaluate_many(pairs: Iterable[tuple[np.ndarray | Image.Image, str | Scene]]) -> dict[str, float | int]:
    """ToyGenEval accuracy over (image, prompt) pairs; a prompt object not found counts as wrong everywhere.

    Returns {"n": images, "color" / "shape" / "position": fraction of prompt objects right, "joint": fraction of
    images with every attribute of every object right, "background": fraction of images with the right background}.
    """
    n_images = n_objects = joint = background = 0
    right = {"color": 0, "shape": 0, "position": 0}
    for image, prompt in pairs:
        score = evaluate_image(image, prompt)
        n_images += 1
        joint += score.joint
        background += score.background_ok
        for obj in score.objects:
            n_objects += 1
            right["color"] += obj.colour_ok
            right["shape"] += obj.shape_ok
            right["position"] += obj.position_ok
    result: dict[str, float | int] = {"n": n_images}
    result.update({key: value / max(n_objects, 1) for key, value in right.items()})
    result["joint"] = joint / max(n_images, 1)
    result["background"] = background / max(n_images, 1)
    return result


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _pose_radius(mask: np.ndarray) -> float:
    return max(1.0, min(mask.shape) / 32)


def control_silhouette(control_map: np.ndarray | Image.Image, kind: str) -> np.ndarray:
    """The silhouette a control map asks for: canny: filled edges; depth: non-black; pose: skeleton dilated by s/32."""
    drawn = to_array(control_map).max(axis=2) > 32
    if kind == "canny":
        return raster.fill_holes(drawn)
    if kind == "depth":
        return drawn
    if kind == "pose":
        return raster.dilate(drawn, _pose_radius(drawn))
    raise ValueError(f"unknown control kind {kind!r}; expected canny, depth or pose")


def control_obeyed(generated_image: np.ndarray | Image.Image, silhouette: np.ndarray, kind: str) -> tuple[float, bool]:
    """(IoU, IoU >= 0.8) of the generated objects' mask against a control silhouette (``control_silhouette``).

    The generated mask is the union of the image's objects that touch the silhouette; for canny it is hole-filled,
    for pose it is dilated like the skeleton (s / 32), so strokes compare by their course, not their width.
    """
    if kind not in ("canny", "depth", "pose"):
        raise ValueError(f"unknown control kind {kind!r}; expected canny, depth or pose")
    silhouette = np.asarray(silhouette, dtype=bool)
    _, components = find_components(generated_image)
    mask = np.zeros_like(silhouette)
    for component in components:
        if (component.mask & silhouette).any():
            mask |= component.mask
    if kind == "canny":
        mask = raster.fill_holes(mask)
    elif kind == "pose":
        mask = raster.dilate(mask, _pose_radius(mask))
    iou = mask_iou(mask, silhouette)
    return iou, iou >= CONTROL_IOU


def is_hollow(object_mask: np.ndarray) -> bool:
    """Outlined-style check: the pixels cover less than 80 % of the hole-filled silhouette."""
    mask = np.asarray(object_mask, dtype=bool)
    filled = int(raster.fill_holes(mask).sum())
    return filled > 0 and int(mask.sum()) < HOLLOW_COVER * filled
