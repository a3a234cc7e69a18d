"""Aspect-ratio presets: width × height at the model's pixel budget, both multiples of 16."""

from __future__ import annotations

import math

PRESETS: tuple[str, ...] = ("1:1", "4:3", "3:2", "16:9", "9:16")
MULTIPLE = 16


def _ratio(preset: str) -> float:
    wide, _, high = preset.partition(":")
    try:
        ratio = float(wide) / float(high)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"unknown aspect ratio {preset!r} — pick one of: {', '.join(PRESETS)}") from None
    if not ratio > 0:
        raise ValueError(f"unknown aspect ratio {preset!r} — pick one of: {', '.join(PRESETS)}")
    return ratio


def _snap(value: float) -> int:
    return max(MULTIPLE, int(value / MULTIPLE + 0.5) * MULTIPLE)


def size_for(preset: str, budget: int) -> tuple[int, int]:
    """(width, height) for ``preset`` (``"16:9"``) whose area is about ``budget`` pixels."""
    ratio = _ratio(preset)
    height = _snap(math.sqrt(budget / ratio))
    width = _snap(height * ratio)
    return width, height


def preset_of(width: int | float | None, height: int | float | None, budget: int) -> str | None:
    """The preset that gives exactly ``width`` × ``height`` at ``budget``, else None (a custom size)."""
    for preset in PRESETS:
        if (width, height) == size_for(preset, budget):
            return preset
    return None
