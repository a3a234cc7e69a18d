"""Edit panel: image-to-image and inpainting on an uploaded image or one sent from a result / the history.

The editor's background is the init image; white strokes painted on it are the inpainting mask (white = repaint).
Pure numpy/PIL here (no torch): the engine runs FluxImg2ImgPipeline / FluxInpaintPipeline via ``from_pipe``.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from studio.core.errors import InvalidRequest
from studio.core.limits import check_image
from studio.ui.region_masks import painted_layer

MODES = ("off", "img2img", "inpaint")
DEFAULT_STRENGTH = 0.6


def build() -> dict[str, Any]:
    """Mode, editor (init image + painted mask) and strength."""
    w: dict[str, Any] = {}
    gr.Markdown(
        "Start from an image: **img2img** redraws all of it, **inpaint** only where you paint (white). "
        "Strength 0 keeps the image, 1 ignores it. Press **Edit** under the image to start from the shown "
        "result."
    )
    w["mode"] = gr.Radio(list(MODES), value="off", label="Mode", elem_id="edit_mode")
    w["editor"] = gr.ImageEditor(
        label="Init image (paint the area to repaint for inpaint)",
        type="numpy",
        image_mode="RGBA",
        canvas_size=(256, 256),
        brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=14),
        layers=False,
        transforms=(),
        sources=("upload",),
        elem_id="edit_editor",
    )
    w["strength"] = gr.Slider(0.05, 1.0, value=DEFAULT_STRENGTH, step=0.05, label="Strength", elem_id="edit_strength")
    return w


def _background(value: Any) -> np.ndarray | None:
    if not value:
        return None
    background = value.get("background")
    if background is None:
        return None
    check_image(background, "the init image")
    arr = np.asarray(background)
    return arr if arr.size else None


def edit_fields(mode: str, value: Any, strength: float | None, put_image: Any) -> dict[str, Any]:
    """Request fields for the edit panel: {} when off, else mode, init_image (and mask) refs and strength."""
    if mode in (None, "", "off"):
        return {}
    if mode not in MODES:
        raise InvalidRequest(f"unknown edit mode {mode!r} — pick one of: {', '.join(MODES)}")
    background = _background(value)
    if background is None:
        raise InvalidRequest(f"{mode} needs an init image — upload one in the Edit tab or press Edit under the image")
    for layer in value.get("layers") or []:  # every size is checked before anything is stored
        check_image(layer, "the painted layer")
    init = Image.fromarray(background[..., :3].astype(np.uint8), "RGB")
    fields: dict[str, Any] = {
        "mode": mode,
        "init_image": put_image(init),
        "strength": DEFAULT_STRENGTH if strength is None else float(strength),
    }
    if mode == "inpaint":
        layer = painted_layer({"layers": value.get("layers") or []})
        if layer is None:
            raise InvalidRequest("inpaint needs a mask — paint over the area to repaint (white), or use img2img")
        mask = (layer[..., 3] > 0).astype(np.uint8) * 255
        fields["mask"] = put_image(Image.fromarray(mask, "L"))
    return fields


def editor_value(image: Image.Image) -> dict[str, Any]:
    """An ImageEditor value with ``image`` (loaded server-side from the store) as background, nothing painted."""
    return {"background": image, "layers": [], "composite": image}
