"""Aliasing-free rasterisation and small morphology helpers on boolean masks.

Coordinates are continuous pixels: pixel (row i, column j) covers [j, j+1) x [i, i+1), its centre is (j+.5, i+.5).
A pixel belongs to a shape when its centre does, so every pixel is a pure palette colour.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Point = tuple[float, float]


def pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) centre coordinates of every pixel of a size x size image, each (size, size)."""
    coords = np.arange(size, dtype=np.float64) + 0.5
    return coords[None, :].repeat(size, axis=0), coords[:, None].repeat(size, axis=1)


def disc(size: int, centre: Point, radius: float) -> np.ndarray:
    """Filled disc."""
    x, y = pixel_centres(size)
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2


def ring(size: int, centre: Point, radius: float, half_width: float) -> np.ndarray:
    """Circle outline: centres within ``half_width`` of the circle of ``radius``."""
    x, y = pixel_centres(size)
    return np.abs(np.hypot(x - centre[0], y - centre[1]) - radius) < half_width


def square(size: int, centre: Point, side: float) -> np.ndarray:
    """Filled axis-aligned square."""
    x, y = pixel_centres(size)
    half = side / 2
    return (np.abs(x - centre[0]) <= half) & (np.abs(y - centre[1]) <= half)


def triangle(size: int, centre: Point, side: float) -> np.ndarray:
    """Filled apex-up isosceles triangle whose bounding box is the square of ``side`` around ``centre``."""
    x, y = pixel_centres(size)
    top, bottom = centre[1] - side / 2, centre[1] + side / 2
    depth = (y - top) / side  # 0 at the apex, 1 at the base
    return (y <= bottom) & (depth >= 0) & (np.abs(x - centre[0]) <= depth * side / 2)


def capsule(size: int, p0: Point, p1: Point, half_width: float) -> np.ndarray:
    """Thick segment with round caps: centres closer than ``half_width`` to the segment p0-p1."""
    x, y = pixel_centres(size)
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    length2 = dx * dx + dy * dy
    t = np.zeros_like(x) if length2 == 0 else ((x - p0[0]) * dx + (y - p0[1]) * dy) / length2
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(x - (p0[0] + t * dx), y - (p0[1] + t * dy)) < half_width


def inner_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each mask pixel to the nearest non-mask pixel (outside the image counts as outside)."""
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def outline(mask: np.ndarray, stroke: float) -> np.ndarray:
    """The pixels of ``mask`` within ``stroke`` pixels of its edge: a closed outline of that width."""
    return mask & (inner_distance(mask) <= stroke)


def disk_structure(radius: float) -> np.ndarray:
    """Disc-shaped structuring element of the given radius (at least 3 x 3)."""
    r = max(1, int(np.ceil(radius)))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= max(radius, 1.0) ** 2 + 1e-9


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary dilation by a disc of ``radius`` pixels."""
    return ndimage.binary_dilation(mask, structure=disk_structure(radius))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with its enclosed holes filled (its silhouette)."""
    return ndimage.binary_fill_holes(mask)
