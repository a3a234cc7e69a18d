"""Structure panel: up to three control units (kind, image or ready map, strength, start/end) with map previews."""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.errors import StudioError

KINDS = ["off", "canny", "depth", "pose", "canny-map", "depth-map", "pose-map"]
UNITS = 3
FIELDS = ("kind", "image", "strength", "start", "end")


def build(preview_map: Any) -> list[dict[str, Any]]:
    """Widgets of each unit; ``preview_map(kind, image)`` returns the map an input turns into (or raises)."""
    gr.Markdown("Edges, depth or pose. `KIND-map` means the image already is the map (no preprocessing). The "
                "schedule's control curve multiplies every unit's strength per step.")
    units = []
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
                u["image"] = gr.Image(label="Image or map", type="pil", image_mode="RGB", height=160,
                                      elem_id=f"control_{k}_image")
                u["map"] = gr.Image(label="Map used", type="pil", interactive=False, height=160,
                                    elem_id=f"control_{k}_map")

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
    return units
