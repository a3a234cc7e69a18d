"""The prompt row (prompt, Generate, Cancel) and the settings (size presets, steps, seed, guidance, true CFG, …)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.engine.caching_hints import HINTS
from studio.ui import adapters, aspect

if TYPE_CHECKING:
    from studio.ui.page import Page


def build_prompt_row(page: Page) -> None:
    """The prompt box with Generate and Cancel next to it (Ctrl+Enter in the box generates)."""
    w = page.panel
    with gr.Row(elem_id="prompt_row", equal_height=True):
        w["prompt"] = gr.Textbox(
            label="Prompt",
            show_label=False,
            lines=2,
            max_lines=6,
            scale=8,
            elem_id="prompt",
            placeholder=_placeholder(page),
            info=None,
        )
        with gr.Column(scale=1, min_width=130, elem_id="run_buttons"):
            w["generate"] = gr.Button("Generate", variant="primary", elem_id="generate")
            w["cancel"] = gr.Button("■ Cancel", variant="stop", size="sm", elem_id="cancel")


def _placeholder(page: Page) -> str:
    from studio.ui.prompt_guide import is_toy_model

    if is_toy_model(page.ctx.model):
        return "a red circle in the top left on a white background   (Ctrl+Enter generates)"
    return "describe the image   (Ctrl+Enter generates)"


def build_settings(page: Page) -> None:
    """Size presets, width/height, steps, seed, batch, guidance, true CFG, negative and T5 prompts, step cache."""
    ctx, w = page.ctx, page.panel
    budget = ctx.width * ctx.height
    from studio.ui.prompt_guide import is_toy_model

    toy_note = (
        "flux-mini learned square images: other shapes work but show artefacts" if is_toy_model(ctx.model) else None
    )
    w["budget"] = gr.State(budget)  # the picked model's pixel budget (model_panel changes it)
    w["aspect"] = gr.Radio(
        list(aspect.PRESETS),
        value=aspect.preset_of(ctx.width, ctx.height, budget),
        label=f"Size (at the model's {ctx.width}×{ctx.height} pixel budget)",
        info=toy_note,
        elem_id="aspect",
    )
    with gr.Row():
        w["width"] = gr.Number(
            label="Width", value=ctx.width, precision=0, step=16, minimum=16, elem_id="width", min_width=80
        )
        w["height"] = gr.Number(
            label="Height", value=ctx.height, precision=0, step=16, minimum=16, elem_id="height", min_width=80
        )
        w["steps"] = gr.Number(
            label="Steps", value=ctx.steps, precision=0, minimum=1, maximum=200, elem_id="steps", min_width=80
        )
        w["batch"] = gr.Number(
            label="Batch", value=1, precision=0, minimum=1, maximum=16, elem_id="batch", min_width=80
        )
    with gr.Row(elem_id="seed_row"):
        w["seed"] = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, elem_id="seed", scale=3)
        with gr.Column(min_width=100, scale=1, elem_id="seed_buttons"):
            dice = gr.Button("Random", size="sm", min_width=80, elem_id="random_seed")
            w["reuse_seed"] = gr.Button("Last seed", size="sm", min_width=80, elem_id="reuse_seed")
    guidance_label = (
        "Distilled guidance" if ctx.uses_distilled_guidance else "Distilled guidance (this model ignores it)"
    )
    with gr.Row():
        w["guidance"] = gr.Slider(0, 15, value=ctx.guidance, step=0.1, label=guidance_label, elem_id="guidance")
        w["true_cfg"] = gr.Slider(
            1, 15, value=1.0, step=0.1, label="True CFG (1 = off; > 1 runs a negative pass)", elem_id="true_cfg"
        )
    w["settings_note"] = gr.Markdown("", elem_id="settings_note")
    w["negative_prompt"] = gr.Textbox(
        label="Negative prompt (used when true CFG > 1)", lines=1, elem_id="negative_prompt"
    )
    w["schedule_json"] = gr.Textbox(label="schedule (JSON)", elem_id="schedule_json", visible="hidden")
    with gr.Accordion("More: T5 prompt, step cache, live mode, load a PNG's settings", open=False):
        w["prompt_2"] = gr.Textbox(label="T5 prompt (optional; defaults to the prompt)", lines=2, elem_id="prompt_2")
        with gr.Row():
            w["cache_kind"] = gr.Dropdown(["none", *HINTS], value="none", label="Step cache", elem_id="cache_kind")
            w["cache_threshold"] = gr.Number(value=None, label="Threshold (empty = default)", elem_id="cache_threshold")
        gr.Markdown("Fidelity vs speed — " + " · ".join(f"**{k}**: {v}" for k, v in HINTS.items()))
        w["live"] = gr.Checkbox(
            False,
            label="Live: regenerate as you type or drag (fast models; not saved to "
            "history — press Generate to keep one)",
            elem_id="live",
        )
        w["import_png"] = gr.File(
            label="Drop a PNG (ours, A1111/Forge, ComfyUI) to load its settings",
            file_types=[".png"],
            type="filepath",
            height=150,
            elem_id="import_png",
        )
    dice.click(lambda: adapters.random_seed_value(), None, w["seed"], queue=False, api_visibility="private")

    def sized(preset: Any, pixels: Any) -> Any:
        try:
            return aspect.size_for(preset, int(pixels or budget))
        except (ValueError, TypeError, AttributeError):
            return gr.skip(), gr.skip()

    w["aspect"].input(
        sized, [w["aspect"], w["budget"]], [w["width"], w["height"]], queue=False, api_visibility="private"
    )
