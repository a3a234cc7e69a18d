"""Painted editor layers → one boolean mask per palette colour, and the overlay preview (pure numpy/PIL; no torch)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from studio.core.errors import InvalidRequest
from studio.core.limits import check_image

PALETTE = (("red", "#ff0000"), ("green", "#00c000"), ("blue", "#0000ff"), ("yellow", "#ffd000"))
_RGB = {name: tuple(int(hex_[i : i + 2], 16) for i in (1, 3, 5)) for name, hex_ in PALETTE}
OVERLAY_MIN_SIDE = 512
NO_PROMPT = "(no prompt yet: type one below)"


class Region(NamedTuple):
    """One painted region: its palette colour, its mask at the output size and its prompt."""

    colour: str
    mask: np.ndarray
    prompt: str


def painted_layer(value: Any) -> np.ndarray | None:
    """The RGBA strokes of a gr.ImageEditor value (layers merged), or None when nothing is painted.

    A layer over ``MAX_PIXELS`` is refused (InvalidRequest naming the fix) before anything is allocated for it.
    """
    if not value:
        return None
    layers = [layer for layer in (value.get("layers") or []) if layer is not None]
    if not layers and value.get("composite") is None:
        return None
    stack = layers or [value["composite"]]
    for layer in stack:
        check_image(layer, "the painted layer")
    out = np.zeros((*np.asarray(stack[0]).shape[:2], 4), dtype=np.uint8)
    for layer in stack:
        arr = np.asarray(layer)
        if arr.ndim == 2:
            continue
        if arr.shape[2] == 3:
            arr = np.concatenate([arr, np.full((*arr.shape[:2], 1), 255, np.uint8)], axis=2)
        painted = arr[..., 3] > 0
        out[painted] = arr[painted]
    return out if (out[..., 3] > 0).any() else None


def colour_masks(layer: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
    """Per palette colour, the pixels painted in it (nearest palette colour), resized to width × height."""
    rgb = layer[..., :3].astype(np.int32)
    painted = layer[..., 3] > 0
    names = [name for name, _ in PALETTE]
    dist = np.stack([((rgb - np.array(_RGB[n])) ** 2).sum(axis=2) for n in names], axis=-1)
    nearest = dist.argmin(axis=-1)
    masks = {}
    for k, name in enumerate(names):
        mask = painted & (nearest == k)
        if mask.any():
            img = Image.fromarray(mask.astype(np.uint8) * 255, "L").resize((width, height), Image.Resampling.NEAREST)
            masks[name] = np.asarray(img) > 127
    return masks


def painted_regions(
    value: Any, prompts: dict[str, str], width: int, height: int, require_prompts: bool = True
) -> list[Region]:
    """The painted regions in palette order; a painted colour without a prompt is an error naming it (or, for a
    preview with ``require_prompts=False``, a region whose prompt is empty)."""
    layer = painted_layer(value)
    if layer is None:
        return []
    regions = []
    for name, mask in colour_masks(layer, width, height).items():
        prompt = (prompts.get(name) or "").strip()
        if not prompt and require_prompts:
            raise InvalidRequest(f"the {name} region has no prompt — describe what goes there, or erase it")
        regions.append(Region(name, mask, prompt))
    return regions


def regions_from_paint(value: Any, prompts: dict[str, str], width: int, height: int) -> list[tuple[np.ndarray, str]]:
    """(mask, prompt) pairs in palette order (what a request stores)."""
    return [(region.mask, region.prompt) for region in painted_regions(value, prompts, width, height)]


def overlay(regions: list[Region], width: int, height: int) -> Image.Image | None:
    """A preview: each region in its own palette colour (later wins) with its prompt on a label inside it."""
    if not regions:
        return None
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for region in regions:
        canvas[region.mask] = _RGB[region.colour]
    scale = max(1, -(-OVERLAY_MIN_SIDE // min(width, height)))  # whole-number upscaling keeps the edges crisp
    image = Image.fromarray(canvas).resize((width * scale, height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    font = _font(max(14, image.width // 24))
    for region in regions:
        ys, xs = np.nonzero(region.mask)
        if not len(xs):
            continue
        left, top = int(xs.min() * scale), int(ys.min() * scale)
        room = max(140, int((xs.max() + 1) * scale) - left - 8)
        lines = _wrap(draw, region.prompt or NO_PROMPT, font, room)
        box = draw.multiline_textbbox((0, 0), "\n".join(lines), font=font, spacing=2)
        w, h = box[2] - box[0] + 8, box[3] - box[1] + 8
        middle = int((ys.min() + ys.max() + 1) / 2 * scale) - h // 2  # vertically centred in the region
        x, y = min(left + 4, max(0, image.width - w)), min(max(top + 4, middle), max(0, image.height - h))
        draw.rectangle((x, y, x + w, y + h), fill=(255, 255, 255), outline=(0, 0, 0))
        draw.multiline_text((x + 4 - box[0], y + 4 - box[1]), "\n".join(lines), fill=(0, 0, 0), font=font, spacing=2)
    return image


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, room: int, max_lines: int = 4) -> list[str]:
    """``text`` in lines no wider than ``room`` pixels (at most ``max_lines``; the rest cut with …)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1] + " …"]
    return lines or [""]


def _font(size: int) -> Any:
    """PIL's built-in font at ``size`` (scalable since Pillow 10.1; the bitmap font before)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def boxes_value(boxes: dict[str, tuple[float, float, float, float]], side: int = 256) -> dict[str, Any]:
    """An ImageEditor value with each palette colour painted as a box (left, top, right, bottom as fractions)."""
    layer = np.zeros((side, side, 4), dtype=np.uint8)
    for name, (left, top, right, bottom) in boxes.items():
        x0, y0, x1, y1 = (round(v * side) for v in (left, top, right, bottom))
        layer[y0:y1, x0:x1] = (*_RGB[name], 255)
    background = np.full((side, side, 4), 255, dtype=np.uint8)
    return {"background": background, "layers": [layer], "composite": None}
