"""The toy world of TOYWORLD.md: scene grammar, deterministic renderer with control maps, and ToyGenEval.

Modules: ``vocab`` (palette, shapes, positions, sizes) · ``grammar`` (scenes, prompts, held-out split) ·
``figure`` (stick-figure poses and OpenPose maps) · ``raster`` (aliasing-free drawing) · ``render`` (scenes to
images, masks and canny/depth/pose maps) · ``evaluate`` (ToyGenEval, control and style checks).
"""

from studio.toyworld.evaluate import (
    ImageScore,
    ObjectScore,
    control_obeyed,
    control_silhouette,
    evaluate_image,
    evaluate_many,
    is_hollow,
    mask_iou,
)
from studio.toyworld.grammar import (
    Scene,
    ToyObject,
    held_out_split,
    is_held_out,
    object_prompt,
    parse_prompt,
    prompt_set,
    random_scene,
    scene_prompt,
    scene_set,
)
from studio.toyworld.render import Rendered, figure_keypoints, render_scene

__all__ = [
    "ImageScore",
    "ObjectScore",
    "Rendered",
    "Scene",
    "ToyObject",
    "control_obeyed",
    "control_silhouette",
    "evaluate_image",
    "evaluate_many",
    "figure_keypoints",
    "held_out_split",
    "is_held_out",
    "is_hollow",
    "mask_iou",
    "object_prompt",
    "parse_prompt",
    "prompt_set",
    "random_scene",
    "render_scene",
    "scene_prompt",
    "scene_set",
]
