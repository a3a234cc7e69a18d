"""Canny maps of toy scenes drawn the way other tools draw them, to measure and train the ControlNet's robustness.

A scene is first rendered antialiased (``antialiased``: drawn at 4× and area-averaged down, as a photo or another
app's render would be), then edge-detected as a tool does:

- ``cv2 100/200 (A1111, Forge)``: ``cv2.Canny(rgb, 100, 200)`` on the colour image — the canny preprocessor of
  A1111/Forge; OpenCV takes the strongest gradient over the three channels;
- ``controlnet-aux``: ``controlnet_aux.CannyDetector()`` (the same call through its resize path), as diffusers'
  examples and ComfyUI's "Canny Edge" (comfyui_controlnet_aux) node do;
- ``ComfyUI Canny (kornia 0.4/0.8)``: ``kornia.filters.canny`` as ComfyUI's core Canny node calls it — on the
  grey image, so an edge between two colours of equal luminance vanishes;
- ``blur + grey cv2 50/150``: a 5×5 Gaussian blur of the grey image, then ``cv2.Canny(50, 150)``.

Grey-level maps of such colour pairs are empty: no ControlNet can follow them (``empty_map``).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from studio.toyworld.grammar import Scene
from studio.toyworld.render import render_scene

SUPERSAMPLE = 4


def antialiased(scene: Scene, size: int, seed: int) -> np.ndarray:
    """``render_scene``'s image drawn at 4× and area-averaged to ``size`` (same layout: it scales with size)."""
    big = render_scene(scene, size * SUPERSAMPLE, seed).image
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


def _rgb(edges: np.ndarray) -> np.ndarray:
    return np.repeat(edges[:, :, None], 3, axis=2)


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def cv2_colour(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """``cv2.Canny`` on the RGB image (A1111/Forge's preprocessor)."""
    return _rgb(cv2.Canny(np.ascontiguousarray(image), low, high))


def controlnet_aux(image: np.ndarray) -> np.ndarray:
    """``controlnet_aux.CannyDetector`` with its defaults at the image's own resolution."""
    from controlnet_aux import CannyDetector
    from PIL import Image

    side = image.shape[0]
    out = CannyDetector()(Image.fromarray(image), detect_resolution=side, image_resolution=side)
    return np.asarray(out.convert("RGB"))


def comfyui_kornia(image: np.ndarray, low: float = 0.4, high: float = 0.8) -> np.ndarray:
    """``kornia.filters.canny`` on the image in [0, 1] (ComfyUI's core Canny node; kornia converts to grey)."""
    import kornia
    import torch

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    _, edges = kornia.filters.canny(x, low, high)
    return _rgb((edges[0, 0].numpy() > 0.5).astype(np.uint8) * 255)


def grey_blurred(image: np.ndarray, low: int = 50, high: int = 150) -> np.ndarray:
    """A 5×5 Gaussian blur of the grey image, then ``cv2.Canny``."""
    return _rgb(cv2.Canny(cv2.GaussianBlur(_grey(image), (5, 5), 0), low, high))


TOOLS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "cv2 100/200 (A1111, Forge)": cv2_colour,
    "controlnet-aux": controlnet_aux,
    "ComfyUI Canny (kornia 0.4/0.8)": comfyui_kornia,
    "blur + grey cv2 50/150": grey_blurred,
}


def empty_map(control_map: np.ndarray) -> bool:
    """True when a map has (almost) no edge pixels: nothing for a ControlNet to follow."""
    return int((np.asarray(control_map)[..., 0] > 127).sum()) < 8


def training_map(image: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A tool-style canny map of an antialiased ``image`` for training: colour ``cv2.Canny`` with the low
    threshold drawn from [50, 150] and the high one twice that (a 5×5 blur first a third of the time), or
    ComfyUI's kornia canny a quarter of the time; ``None`` when the map is empty (train on the own map then)."""
    if rng.random() < 0.25:
        out = comfyui_kornia(image, float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.6, 0.9)))
    else:
        source = cv2.GaussianBlur(image, (5, 5), 0) if rng.random() < 1 / 3 else image
        low = int(rng.integers(50, 151))
        out = cv2_colour(source, low, 2 * low)
    return None if empty_map(out) else out
