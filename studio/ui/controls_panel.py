"""Structure panel: up to three control units (kind, image or ready map, strength, start/end) with map previews,
a pose editor that feeds a unit, and the control maps drawn over the last result."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from studio.core.errors import StudioError
from studio.engine.conditioning.overlay import overlay_maps
from studio.ui import pose_editor
from studio.web.share import image_file

if TYPE_CHECKING:
    from studio.service import Studio
    from studio.store.records import Record

KINDS = ["off", "canny", "depth", "pose", "canny-map", "depth-map", "pose-map"]
UNITS = 3
FIELDS = ("kind", "image", "strength", "start", "end")
OVERLAY_MODES = ["blend", "outline", "off"]


class ControlWidgets(list):
    """The units' widget dicts (a list, one per unit), plus the pose editor's and the overlay's widgets."""

    pose: dict[str, Any]
    overlay: dict[str, Any]


def build(preview_map: Any, size: tuple[Any, Any] | None = None) -> ControlWidgets:
    """Widgets of each unit; ``preview_map(kind, image)`` returns the map an input turns into (or raises).

    ``size`` (the prompt panel's width and height boxes) sets the pose editor's map size.
    """
    gr.Markdown(
        "Edges, depth or pose. `KIND-map` means the image already is the map (no preprocessing). The "
        "schedule's control curve multiplies every unit's strength per step."
    )
    units = ControlWidgets()
    for k in range(UNITS):
        with gr.Accordion(f"Control {k + 1}", open=k == 0):
            u: dict[str, Any] = {}
            with gr.Row():
                u["kind"] = gr.Dropdown(KINDS, value="off", label="Kind", elem_id=f"control_{k}_kind")
                u["strength"] = gr.Slider(0, 2, value=1.0, step=0.05, label="Strength", elem_id=f"control_{k}_strength")
            with gr.Row():
                u["start"] = gr.Slider(0, 1, value=0.0, step=0.05, label="Start", elem_id=f"control_{k}_start")
                u["end"] = gr.Slider(0, 1, value=1.0, step=0.05, label="End", elem_id=f"control_{k}_end")
            with gr.Row():
                u["image"] = gr.Image(
                    label="Image or map",
                    type="pil",
                    image_mode="RGB",
                    format="png",
                    height=160,
                    elem_id=f"control_{k}_image",
                )
                u["map"] = gr.Image(
                    label="Map used",
                    type="pil",
                    format="png",
                    interactive=False,
                    height=160,
                    elem_id=f"control_{k}_map",
                )

            def show(kind: str, image: Any) -> Any:
                if kind == "off" or image is None:
                    return None
                try:
                    return preview_map(kind, image)
                except StudioError as exc:
                    gr.Warning(str(exc))
                    return None

            u["image"].change(show, [u["kind"], u["image"]], u["map"], api_visibility="private")
            u["kind"].change(show, [u["kind"], u["image"]], u["map"], api_visibility="private")
            units.append(u)
    with gr.Accordion("Pose editor: draw a skeleton (no detector needed)", open=True):
        units.pose = pose_editor.build(units, size)
    with gr.Accordion("Control maps on the result", open=True):
        units.overlay = {
            "mode": gr.Radio(OVERLAY_MODES, value="blend", label="Show the maps", elem_id="control_overlay_mode"),
            "image": gr.Image(
                label="Result with its control maps",
                type="pil",
                format="png",
                interactive=False,
                height=256,
                elem_id="control_overlay",
            ),
        }
    return units


def record_overlay(record: Record | None, mode: str, studio: Studio) -> Image.Image | None:
    """The record's first image with its control maps drawn over it; None without controls or when off.

    ``record`` must come from the store (looked up server-side for the visitor), never from the client.
    """
    if mode == "off" or not record or not record.get("images"):
        return None
    controls = (record.get("request") or {}).get("controls") or []
    path = image_file(studio.store, record, 0)
    if not controls or path is None:
        return None
    with Image.open(path) as img:
        result = img.convert("RGB")
    maps = []
    for control in controls:
        kind = control["kind"] if control.get("preprocess", True) else f"{control['kind'].removesuffix('-map')}-map"
        maps.append(studio.control_map(kind, studio.store.assets.load(control["image"])))
    return overlay_maps(result, maps, mode)


def wire_overlay(
    units: ControlWidgets, selected_id: Any, studio: Studio, owner_of: Callable[[Any], str | None]
) -> None:
    """Redraw the overlay whenever the shown record (the server-side ``selected_id`` state) or the mode changes."""

    def show(record_id: str | None, mode: str, request: gr.Request) -> Any:
        if not record_id or mode == "off":
            return None
        try:
            return record_overlay(studio.store.get(record_id, owner_of(request)), mode, studio)
        except (StudioError, gr.Error, OSError) as exc:
            gr.Warning(f"cannot draw the control maps over the result: {exc}")
            return None

    inputs = [selected_id, units.overlay["mode"]]
    selected_id.change(show, inputs, units.overlay["image"], api_visibility="private")
    units.overlay["mode"].change(show, inputs, units.overlay["image"], api_visibility="private")
