"""Guidance schedules: piecewise-linear curves over the denoising steps.

A curve is a list of ``[p, value]`` points with p in [0, 1], sorted by p, linear in between and flat
outside. Step i of N (0-based) sits at p = i / (N - 1) (p = 0 when N = 1). See docs/cli.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from studio.core.errors import InvalidRequest

Curve = list[list[float]]

CHANNELS: dict[str, tuple[float, float]] = {
    "guidance": (0.0, 30.0),
    "true_cfg": (0.0, 30.0),
    "control": (0.0, 2.0),
    "regions": (0.0, 1.0),
}
MAX_POINTS = 64


def step_positions(steps: int) -> list[float]:
    """The p of every step: i / (N - 1), or [0.0] for a single step."""
    if steps <= 1:
        return [0.0] * max(steps, 0)
    return [i / (steps - 1) for i in range(steps)]


def evaluate(curve: Sequence[Sequence[float]], p: float) -> float:
    """Value of the curve at position p (linear in between, flat outside; at a repeated p the later point)."""
    points = [(float(a), float(b)) for a, b in curve]
    if p <= points[0][0]:
        return points[0][1]
    if p >= points[-1][0]:
        return points[-1][1]
    for (p0, v0), (p1, v1) in zip(points, points[1:]):
        if p0 <= p < p1:  # at a repeated p the later point wins (a step)
            return v0 + (v1 - v0) * (p - p0) / (p1 - p0)
    return points[-1][1]  # unreachable for sorted points


def per_step(curve: Sequence[Sequence[float]] | None, steps: int, default: float) -> list[float]:
    """One value per step: the curve sampled at each step, or the scalar default when no curve."""
    if not curve:
        return [float(default)] * steps
    return [evaluate(curve, p) for p in step_positions(steps)]


def validate_curve(channel: str, curve: Any) -> Curve:
    """Check a curve and return it as a clean list of [p, value] floats; raises InvalidRequest."""
    if channel not in CHANNELS:
        raise InvalidRequest(f"unknown schedule channel {channel!r} — use one of {', '.join(CHANNELS)}")
    low, high = CHANNELS[channel]
    if not isinstance(curve, (list, tuple)) or not curve:
        raise InvalidRequest(
            f"schedule.{channel} must be a non-empty list of [p, value] points, e.g. [[0, 3.5], [1, 1.0]]"
        )
    if len(curve) > MAX_POINTS:
        raise InvalidRequest(f"schedule.{channel} has {len(curve)} points — use at most {MAX_POINTS}")
    clean: Curve = []
    for point in curve:
        if (
            not isinstance(point, (list, tuple))
            or len(point) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in point)
        ):
            raise InvalidRequest(f"schedule.{channel} point {point!r} is not a [p, value] pair of numbers")
        p, value = float(point[0]), float(point[1])
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise InvalidRequest(f"schedule.{channel}: p={point[0]} must be between 0 and 1")
        if not math.isfinite(value) or not low <= value <= high:
            raise InvalidRequest(f"schedule.{channel}: value {point[1]} must be a number from {low:g} to {high:g}")
        if clean and p < clean[-1][0]:
            raise InvalidRequest(f"schedule.{channel}: points must be sorted by p (got {p:g} after {clean[-1][0]:g})")
        clean.append([p, value])
    return clean


def validate_schedule(schedule: Any) -> dict[str, Curve] | None:
    """Check a whole schedule dict (channel → curve); None or {} means no schedule."""
    if schedule is None or schedule == {}:
        return None
    if not isinstance(schedule, dict):
        raise InvalidRequest(
            f'schedule must be a JSON object like {{"guidance": [[0, 4], [1, 2]]}} — got {type(schedule).__name__}'
        )
    clean = {name: validate_curve(name, curve) for name, curve in schedule.items() if curve is not None}
    return clean or None


def transformer_passes(steps: int, true_cfg: Sequence[float], has_negative: bool) -> int:
    """Transformer evaluations a run costs: one per step plus one per step whose CFG scale is > 1."""
    extra = sum(1 for scale in true_cfg if scale > 1.0) if has_negative else 0
    return steps + extra


def _flat(value: float) -> Curve:
    return [[0.0, float(value)], [1.0, float(value)]]


def presets(guidance: float = 3.5, true_cfg: float = 3.0) -> dict[str, dict[str, Curve] | None]:
    """Named schedules a user can start from (guidance and true_cfg are the scalar levels to shape)."""
    return {
        "constant": None,
        "compose early": {"guidance": [[0.0, guidance * 1.5], [0.5, guidance], [1.0, guidance * 0.5]]},
        "detail late": {"guidance": [[0.0, guidance * 0.6], [0.6, guidance], [1.0, guidance * 1.4]]},
        "schnell": {"guidance": _flat(0.0)},
        "dev default": {"guidance": _flat(3.5)},
        "CFG first third": {"true_cfg": [[0.0, true_cfg], [0.33, true_cfg], [0.34, 1.0], [1.0, 1.0]]},
    }


def step_values(
    schedule: dict[str, Curve] | None, steps: int, guidance: float, true_cfg: float
) -> dict[str, list[float]]:
    """Every channel's value at every step: the curve where given, else the scalar (control/regions: 1)."""
    curves = schedule or {}
    scalars = {"guidance": guidance, "true_cfg": true_cfg, "control": 1.0, "regions": 1.0}
    return {name: per_step(curves.get(name), steps, scalars[name]) for name in CHANNELS}


def flat_curve(value: float) -> Curve:
    """A constant curve (what enabling a channel starts from)."""
    return _flat(value)
