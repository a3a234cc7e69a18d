"""The studio page, canvas first: prompt and Generate on top, the image large and whole below it with its status
line, actions and history strip; settings and the advanced tabs in a column on the right.

Each area is its own module that builds its widgets into one ``Page`` context object and wires its events from it:
``model_panel`` (the header's model picker), ``prompt_panel`` (prompt row, settings), ``guide_panel`` (examples, prompt builder), ``result_panel`` (the image and
its actions), ``history_panel`` (strip and record actions), ``side_panel`` (tabs), ``run_panel`` (generation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from studio.ui import (
    guide_panel,
    history_panel,
    layout,
    model_panel,
    prompt_panel,
    result_panel,
    run_panel,
    side_panel,
)
from studio.ui.api import register_api
from studio.ui.page import Page
from studio.ui.prompt_guide import is_toy_model
from studio.web.visitors import oauth_enabled

if TYPE_CHECKING:
    from studio.service import Studio

CSS = layout.CSS  # app.py hands it to mount_gradio_app


@dataclass(frozen=True)
class UIContext:
    """What the UI needs: the studio backend and the model's defaults."""

    studio: Studio
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    uses_distilled_guidance: bool = True  # guidance embedding present and trained (studio.json may say not)
    multi_user: bool = False
    share_base_url: str | None = None
    gpu_slots: int = 1  # generation events admitted at once (> 1 only with coalescing: the engine runs one batch)


def build(ctx: UIContext) -> gr.Blocks:
    """The whole studio as Gradio Blocks (queue it and launch/mount it in app.py)."""
    with gr.Blocks(title="Flux Studio", fill_width=True) as demo:
        page = Page(ctx, demo=demo)
        with gr.Row(elem_id="top_bar", equal_height=True):
            model_panel.build(page, is_toy_model(ctx.model))
            if ctx.multi_user and oauth_enabled():
                gr.LoginButton(scale=0)  # on a Space with hf_oauth: your history follows your Hugging Face account
        page.selected_id = gr.State("")
        with gr.Row(elem_id="studio_main", equal_height=False):
            with gr.Column(scale=3, min_width=520, elem_id="canvas_column"):
                prompt_panel.build_prompt_row(page)
                examples = gr.Column(elem_id="guide")  # filled once the LoRA library is known (side panel)
                result_panel.build(page)
                history_panel.build(page)
            with gr.Column(scale=2, min_width=420, elem_id="side_column"):
                side_panel.build(page)
        with examples:
            guide_panel.build(page)
        run_panel.wire(page)
        history_panel.wire(page)
        side_panel.wire(page)
        guide_panel.wire(page)
        model_panel.wire(page)
        layout.install_scripts(demo)
        register_api(ctx.studio, ctx.multi_user, ctx.gpu_slots)
    return demo
