"""Region panel: paint with a fixed palette, one prompt per colour; the overlay shows what goes where."""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.ui.region_masks import PALETTE


def build() -> dict[str, Any]:
    """Editor, one prompt box per palette colour, and the overlay preview."""
    w: dict[str, Any] = {}
    gr.Markdown(
        "Paint where each object goes — the brush is ready; pick a colour in the palette. Unpainted = the "
        "main prompt; overlaps: the later colour in this list wins. Masks are resized to the output size."
    )
    w["editor"] = gr.ImageEditor(
        label="Regions",
        type="numpy",
        image_mode="RGBA",
        canvas_size=(256, 256),
        fixed_canvas=True,
        brush=gr.Brush(colors=[hex_ for _, hex_ in PALETTE], color_mode="fixed", default_size=12),
        layers=False,
        transforms=(),
        sources=("upload",),
        elem_id="region_editor",
    )
    for pair in (PALETTE[:2], PALETTE[2:]):
        with gr.Row():
            for name, _ in pair:
                w[f"prompt_{name}"] = gr.Textbox(
                    label=f"{name.capitalize()} region prompt",
                    lines=1,
                    min_width=160,
                    elem_id=f"region_prompt_{name}",
                    elem_classes=["fs-region-prompt"],
                )
    w["base_ratio"] = gr.Slider(
        0.0,
        1.0,
        value=0.0,
        step=0.05,
        label="Main prompt share in each region",
        info="0: a region follows only its own prompt; higher mixes the main prompt in",
        elem_id="region_base_ratio",
    )
    gr.Markdown("**What goes where** (updates as you paint and type):")
    w["overlay"] = gr.Image(
        label="Regions overlay", show_label=False, type="pil", interactive=False, height=300, elem_id="region_overlay"
    )
    return w


def prompt_names() -> list[str]:
    """Widget keys of the per-colour prompts, in palette order."""
    return [f"prompt_{name}" for name, _ in PALETTE]
