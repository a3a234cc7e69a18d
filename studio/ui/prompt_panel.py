"""The prompt panel: prompt, negative and T5 prompts, size, steps, seed, guidance, true CFG, batch, step cache."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.caching_hints import HINTS
from studio.ui import adapters

if TYPE_CHECKING:
    from studio.ui.studio_ui import UIContext


def build_prompt_panel(ctx: UIContext) -> dict[str, Any]:
    """Prompt, negative prompt, T5 prompt, size, steps, seed, guidance, true CFG, batch."""
    w: dict[str, Any] = {}
    w["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id="prompt",
                             placeholder="a red circle in the top left on a white background")
    w["negative_prompt"] = gr.Textbox(label="Negative prompt (used when true CFG > 1)", lines=1,
                                      elem_id="negative_prompt")
    with gr.Accordion("T5 prompt (optional; defaults to the prompt)", open=False):
        w["prompt_2"] = gr.Textbox(label="T5 prompt", lines=2, elem_id="prompt_2")
    with gr.Row():
        w["width"] = gr.Number(label="Width", value=ctx.width, precision=0, step=16, minimum=16, elem_id="width")
        w["height"] = gr.Number(label="Height", value=ctx.height, precision=0, step=16, minimum=16, elem_id="height")
        w["steps"] = gr.Number(label="Steps", value=ctx.steps, precision=0, minimum=1, maximum=200, elem_id="steps")
    with gr.Row():
        w["seed"] = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, elem_id="seed")
        with gr.Column(min_width=80):
            dice = gr.Button("Random", size="sm", min_width=60, elem_id="random_seed")
            w["reuse_seed"] = gr.Button("Last seed", size="sm", min_width=60, elem_id="reuse_seed")
        w["batch"] = gr.Number(label="Batch", value=1, precision=0, minimum=1, maximum=16, elem_id="batch")
    guidance_label = "Distilled guidance" if ctx.uses_distilled_guidance else "Distilled guidance (this model ignores it)"
    with gr.Row():
        w["guidance"] = gr.Slider(0, 15, value=ctx.guidance, step=0.1, label=guidance_label, elem_id="guidance")
        w["true_cfg"] = gr.Slider(1, 15, value=1.0, step=0.1, label="True CFG (1 = off; > 1 runs a negative pass)",
                                  elem_id="true_cfg")
    w["schedule_json"] = gr.Textbox(label="schedule (JSON)", elem_id="schedule_json", visible="hidden")
    with gr.Accordion("Speed: step caching (off by default)", open=False):
        with gr.Row():
            w["cache_kind"] = gr.Dropdown(["none", *HINTS], value="none", label="Step cache", elem_id="cache_kind")
            w["cache_threshold"] = gr.Number(value=None, label="Threshold (empty = default)", elem_id="cache_threshold")
        gr.Markdown("Fidelity vs speed — " + " · ".join(f"**{k}**: {v}" for k, v in HINTS.items()))
    dice.click(lambda: adapters.random_seed_value(), None, w["seed"], queue=False, api_visibility="private")
    return w
