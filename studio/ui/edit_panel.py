"""Edit panel: image-to-image and inpainting on an uploaded image or one sent from a result / the history, and a
Reference image for models that edit from one (FLUX.1 Kontext: the prompt is the instruction, e.g. "make it blue").

The editor's background is the init image; white strokes painted on it are the inpainting mask (white = repaint).
The reference is an upload (only a file Gradio received: ``stored_images.uploaded``) or the current result (looked
up server-side for this visitor), stored content-addressed like the API's and the CLI's ``reference``. A model that
cannot use a reference refuses the request with the reason (``studio.models.kinds.check_references``).
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
from studio.ui.stored_images import uploaded

MODES = ("off", "img2img", "inpaint")
DEFAULT_STRENGTH = 0.6


def build(model_label: str = "this model", kontext: bool = False) -> dict[str, Any]:
    """Mode, editor (init image + painted mask), strength, and the Reference input (told what the model can do)."""
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
    title, text = _reference_texts(model_label, kontext)
    with gr.Accordion(title, open=kontext, elem_id="reference_box") as w["reference_box"]:
        w["reference_note"] = gr.Markdown(text, elem_id="reference_note")
        w["reference"] = gr.Image(
            label="Reference",
            type="filepath",
            format="png",
            sources=("upload", "clipboard"),
            height=200,
            elem_id="edit_reference",
        )
        w["reference_use_result"] = gr.Button("Use the current result", size="sm", elem_id="reference_use_result")
    return w


def _reference_texts(model_label: str, kontext: bool) -> tuple[str, str]:
    if kontext:
        return "Reference (edit with an instruction)", (
            "The image to edit: describe the change in the prompt (e.g. *make the circle blue*) and press "
            "**Generate** with the Mode above set to **off**."
        )
    return "Reference — needs a FLUX.1 Kontext or FLUX.2 model", (
        f"**{model_label} cannot use a reference image.** Pick a FLUX.1 Kontext or FLUX.2 model in the header "
        "(model ▾) to edit an image with an instruction."
    )


def reference_updates(model_label: str, kontext: bool) -> tuple[Any, Any]:
    """The Reference box's title (open on a Kontext model) and its note, for the picked model."""
    title, text = _reference_texts(model_label, kontext)
    return gr.Accordion(label=title, open=kontext), text


def reference_fields(path: Any, put_file: Any) -> dict[str, Any]:
    """Request fields for the Reference input: {} without one, else ``references`` (the upload stored by content).

    Only a file Gradio received as an upload (or cached from the current result) is read — never a client's path."""
    if not path:
        return {}
    if not isinstance(path, str):
        raise InvalidRequest("the reference must be an uploaded image — upload it again")
    return {"references": (put_file(uploaded(path)),)}


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
