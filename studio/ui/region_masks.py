"""Painted editor layers → one boolean mask per palette colour (pure numpy; no torch, no widgets)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from studio.errors import InvalidRequest
from studio.limits import check_image

PALETTE = (("red", "#ff0000"), ("green", "#00c000"), ("blue", "#0000ff"), ("yellow", "#ffd000"))
_RGB = {name: tuple(int(hex_[i:i + 2], 16) for i in (1, 3, 5)) for name, hex_ in PALETTE}


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


def regions_from_paint(value: Any, prompts: dict[str, str], width: int, height: int) -> list[tuple[np.ndarray, str]]:
    """(mask, prompt) pairs in palette order; a painted colour without a prompt is an error naming it."""
    layer = painted_layer(value)
    if layer is None:
        return []
    pairs = []
    for name, mask in colour_masks(layer, width, height).items():
        prompt = (prompts.get(name) or "").strip()
        if not prompt:
            raise InvalidRequest(f"the {name} region has no prompt — describe what goes there, or erase it")
        pairs.append((mask, prompt))
    return pairs


def overlay(pairs: list[tuple[np.ndarray, str]], width: int, height: int) -> Image.Image | None:
    """A preview: each region in its colour (later wins) with its prompt written inside."""
    if not pairs:
        return None
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    names = [name for name, _ in PALETTE]
    for (mask, _), name in zip(pairs, names):
        canvas[mask] = _RGB[name]
    image = Image.fromarray(canvas).resize((max(256, width), max(256, height)), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    scale = image.width / width
    for mask, prompt in pairs:
        ys, xs = np.nonzero(mask)
        draw.text((xs.min() * scale + 2, ys.mean() * scale), prompt[:40], fill="black")
    return image
