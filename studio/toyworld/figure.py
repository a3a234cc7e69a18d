"""Stick figures: named poses as 18 OpenPose (COCO body) keypoints, and drawing of the figure and its pose map.

The same keypoints drive the figure in the image and the skeleton in the pose control map, so a pose editor can
move keypoints and redraw both with ``figure_mask`` and ``pose_map``.
"""

from __future__ import annotations

import numpy as np

from studio.toyworld import raster
from studio.toyworld.vocab import POSE_NAMES

# OpenPose 18-keypoint body layout (COCO order with the neck inserted at 1); "right" = the figure's right.
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck",
    "right shoulder", "right elbow", "right wrist",
    "left shoulder", "left elbow", "left wrist",
    "right hip", "right knee", "right ankle",
    "left hip", "left knee", "left ankle",
    "right eye", "left eye", "right ear", "left ear",
)  # fmt: skip

# The standard OpenPose limbs (0-based keypoint pairs) and colours as drawn by ControlNet's annotator:
# limbs in colour x 0.6, keypoints in full colour.
OPENPOSE_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
OPENPOSE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip

# Unit box: x right, y down, (0, 0) top-left of the figure's bounding box.
HEAD_RADIUS = 0.09  # the head ring is centred on the mean of nose and eyes
_FACE = {0: (0.5, 0.13), 1: (0.5, 0.27), 14: (0.465, 0.105), 15: (0.535, 0.105), 16: (0.42, 0.12), 17: (0.58, 0.12)}
_HIPS = {8: (0.44, 0.58), 11: (0.56, 0.58)}
_LEGS_TOGETHER = {**_HIPS, 9: (0.42, 0.78), 10: (0.40, 0.98), 12: (0.58, 0.78), 13: (0.60, 0.98)}
_LEGS_APART = {**_HIPS, 9: (0.36, 0.77), 10: (0.26, 0.97), 12: (0.64, 0.77), 13: (0.74, 0.97)}
_SHOULDERS = {2: (0.36, 0.30), 5: (0.64, 0.30)}
_ARMS = {
    "down": {3: (0.31, 0.46), 4: (0.28, 0.62), 6: (0.69, 0.46), 7: (0.72, 0.62)},
    "up": {3: (0.22, 0.18), 4: (0.17, 0.03), 6: (0.78, 0.18), 7: (0.83, 0.03)},
    "out": {3: (0.21, 0.30), 4: (0.06, 0.30), 6: (0.79, 0.30), 7: (0.94, 0.30)},
    "swing": {3: (0.30, 0.45), 4: (0.24, 0.58), 6: (0.70, 0.45), 7: (0.78, 0.56)},
    "wave": {3: (0.31, 0.46), 4: (0.28, 0.62), 6: (0.76, 0.20), 7: (0.82, 0.05)},
}
_POSE_PARTS = {
    "standing": ("down", _LEGS_TOGETHER),
    "arms up": ("up", _LEGS_TOGETHER),
    "arms out": ("out", _LEGS_TOGETHER),
    "walking": ("swing", _LEGS_APART),
    "waving": ("wave", _LEGS_TOGETHER),
}


def pose_keypoints(pose: str) -> np.ndarray:
    """The named pose's 18 keypoints as an (18, 2) array of (x, y) in the unit box."""
    if pose not in POSE_NAMES:
        raise ValueError(f"unknown pose {pose!r}; expected one of: {', '.join(POSE_NAMES)}")
    arms, legs = _POSE_PARTS[pose]
    points = {**_FACE, **_SHOULDERS, **_ARMS[arms], **legs}
    return np.array([points[i] for i in range(len(KEYPOINT_NAMES))], dtype=np.float64)


def place_keypoints(unit: np.ndarray, centre: tuple[float, float], side: float) -> np.ndarray:
    """Unit-box keypoints mapped into the pixel box of ``side`` centred on ``centre`` (x, y)."""
    return (np.asarray(unit, dtype=np.float64) - 0.5) * side + np.asarray(centre, dtype=np.float64)


def stroke_half_width(size: int) -> float:
    """Half-width of figure strokes (1 px lines below 64 px, then 2 px per 64 px of side).

    Thin enough that the strokes vanish under ToyGenEval's thinness erosion at every size.
    """
    return float(size // 64) if size >= 64 else 0.7


def head_centre(keypoints: np.ndarray) -> np.ndarray:
    """Centre of the head ring: the mean of nose and eyes."""
    return np.asarray(keypoints, dtype=np.float64)[[0, 14, 15]].mean(axis=0)


def _figure_segments(kp: np.ndarray, head_radius: float) -> list[tuple[np.ndarray, np.ndarray]]:
    mid_hip = (kp[8] + kp[11]) / 2
    chin = head_centre(kp) + np.array([0.0, head_radius])
    pairs = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 11), (8, 9), (9, 10), (11, 12), (12, 13)]
    return [(kp[a], kp[b]) for a, b in pairs] + [(kp[1], mid_hip), (kp[1], chin)]


def figure_mask(keypoints: np.ndarray, side: float, size: int) -> np.ndarray:
    """The stick figure drawn from pixel keypoints: head ring, neck, shoulders, arms, torso, hips, legs."""
    half = stroke_half_width(size)
    head_radius = HEAD_RADIUS * side
    kp = np.asarray(keypoints, dtype=np.float64)
    centre = head_centre(kp)
    mask = raster.ring(size, (centre[0], centre[1]), head_radius, half)
    for p0, p1 in _figure_segments(kp, head_radius):
        mask |= raster.capsule(size, (p0[0], p0[1]), (p1[0], p1[1]), half)
    return mask


def pose_map(keypoint_sets: list[np.ndarray], size: int) -> np.ndarray:
    """OpenPose-style skeleton map (uint8 size x size x 3, black background) of pixel keypoint sets."""
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    half = stroke_half_width(size)
    for kp in keypoint_sets:
        for (a, b), colour in zip(OPENPOSE_LIMBS, OPENPOSE_COLOURS, strict=False):
            limb = raster.capsule(size, (kp[a][0], kp[a][1]), (kp[b][0], kp[b][1]), half)
            canvas[limb] = [int(c * 0.6) for c in colour]
        for point, colour in zip(kp, OPENPOSE_COLOURS, strict=True):
            canvas[raster.disc(size, (point[0], point[1]), half * 1.25)] = colour
    return canvas
