"""The right-hand column: settings on top, then the advanced tabs (schedule, regions, structure, edit, LoRA,
training, X/Y plot), each filled by its own panel module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.core.errors import StudioError
from studio.ui import (
    controls_panel,
    edit_panel,
    lora_panel,
    lora_recommend,
    model_panel,
    prompt_panel,
    region_masks,
    regions_panel,
    run_panel,
    schedule_panel,
    training_panel,
)

if TYPE_CHECKING:
    from studio.ui.page import Page


def build(page: Page) -> None:
    """Settings, then the tabs; widgets go into ``page.panel`` and ``page.ext``."""
    prompt_panel.build_settings(page)
    panel, ext, studio = page.panel, page.ext, page.studio
    library = studio.loras

    def list_entries() -> list[dict[str, Any]]:
        return lora_recommend.with_recommendations([library.describe(f) for f in library.scan()])

    with gr.Tabs(elem_id="side_tabs") as tabs:
        ext["tabs"] = tabs
        with gr.Tab("Schedule", id="schedule"):
            ext["schedule"] = schedule_panel.build(panel, page.ctx.uses_distilled_guidance)
        with gr.Tab("Regions", id="regions"):
            ext["regions"] = regions_panel.build()
        with gr.Tab("Structure", id="structure"):
            ext["controls"] = controls_panel.build(studio.control_map, (panel["width"], panel["height"]))
        with gr.Tab("Edit", id="edit"):
            current = model_panel.resident_choice(page.choices, page.ctx.model)
            ext["edit"] = edit_panel.build(current.label, current.kontext)
        with gr.Tab("LoRA", id="lora"):
            settings = {"steps": panel["steps"], "true_cfg": panel["true_cfg"], "note": panel["settings_note"]}
            ext["loras"] = lora_panel.build(list_entries, panel["prompt"], settings)
        with gr.Tab("Train LoRA", id="train"):
            ext["training"] = training_panel.build(studio, page.ctx.gpu_slots, page.owner)
        with gr.Tab("X/Y", id="xy"):
            ext["xy"] = run_panel.build_xy(page)


def wire(page: Page) -> None:
    """The regions overlay, the control maps over the current record, and the schedule editor's first drawing."""
    controls_panel.wire_overlay(page.ext["controls"], page.selected_id, page.studio, page.who)
    panel, regions = page.panel, page.ext["regions"]
    prompts = [regions[n] for n in regions_panel.prompt_names()]

    def on_regions_preview(data: dict[Any, Any]) -> Any:
        try:
            width = int(data[panel["width"]] or page.ctx.width)
            height = int(data[panel["height"]] or page.ctx.height)
            return region_masks.overlay(page.painted_regions(data, width, height, require_prompts=False), width, height)
        except (StudioError, ValueError, TypeError) as exc:
            gr.Warning(str(exc))
            return gr.skip()

    inputs = {panel["width"], panel["height"], regions["editor"], *prompts}
    for trigger in (regions["editor"].change, *(p.blur for p in prompts)):
        trigger(
            on_regions_preview,
            inputs,
            regions["overlay"],
            api_visibility="private",
            trigger_mode="always_last",
            show_progress="hidden",
        )  # one stroke after another: only the newest overlay is drawn
    schedule = page.ext["schedule"]
    page.demo_load(
        lambda text, steps, g, cfg, neg: schedule_panel.render(
            text, steps, g, cfg, neg, page.ctx.uses_distilled_guidance
        ),
        [panel["schedule_json"], panel["steps"], panel["guidance"], panel["true_cfg"], panel["negative_prompt"]],
        [schedule[k] for k in ("editor", "points", "steps_table", "passes", "channels")],
    )
