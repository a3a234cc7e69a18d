"""Guidance for the loaded model under the prompt: clickable examples and, for the toy model, a prompt builder.

An example is a whole recipe: it fills the prompt and the settings it needs (true CFG for two objects, painted
regions, a pose control, a LoRA at its recommended settings), resets what other examples set, and generates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.core.errors import StudioError
from studio.toyworld.vocab import COLOUR_NAMES, CORNERS, POSITION_NAMES, SHAPES, STYLES
from studio.ui import lora_panel, prompt_guide, region_masks
from studio.ui.feedback import user_error
from studio.ui.lora_recommend import describe as describe_recommendation
from studio.ui.regions_panel import prompt_names as region_prompt_names

if TYPE_CHECKING:
    from studio.ui.page import Page
    from studio.ui.prompt_guide import Example


def build(page: Page) -> None:
    """The example chips and (toy model) the grammar line and the prompt builder."""
    entries = page.ext["loras"]["initial"]
    names = [e["name"] for e in entries if lora_panel.usable(e)]
    toy = prompt_guide.is_toy_model(page.ctx.model)
    examples = prompt_guide.examples_for(page.ctx.model, names)
    w: dict[str, Any] = {"examples": examples, "toy": toy, "chips": []}
    with gr.Row(elem_id="examples", equal_height=True):
        gr.Markdown("Examples:", elem_classes=["fs-examples-label"])
        for k, example in enumerate(examples):
            w["chips"].append(
                gr.Button(example.label, size="sm", min_width=60, elem_id=f"example_{k}", elem_classes=["fs-chip"])
            )
    if toy:
        with gr.Accordion(
            "Prompt builder: flux-mini only understands its toy grammar", open=False, elem_id="prompt_builder"
        ):
            gr.Markdown(prompt_guide.grammar_help(), elem_id="grammar_help")
            with gr.Row():
                w["colour"] = gr.Dropdown(list(COLOUR_NAMES), value="red", label="Colour", elem_id="builder_colour")
                w["shape"] = gr.Dropdown(list(SHAPES), value="circle", label="Shape", elem_id="builder_shape")
                w["position"] = gr.Dropdown(
                    list(POSITION_NAMES), value="top left", label="Position", elem_id="builder_position"
                )
                w["background"] = gr.Dropdown(
                    list(COLOUR_NAMES), value="white", label="Background", elem_id="builder_background"
                )
            with gr.Row():
                w["colour_2"] = gr.Dropdown(
                    [prompt_guide.NO_SECOND, *COLOUR_NAMES],
                    value=prompt_guide.NO_SECOND,
                    label="2nd object colour",
                    elem_id="builder_colour_2",
                )
                w["shape_2"] = gr.Dropdown(list(SHAPES), value="square", label="2nd shape", elem_id="builder_shape_2")
                w["position_2"] = gr.Dropdown(
                    list(CORNERS), value="bottom right", label="2nd position (a corner)", elem_id="builder_position_2"
                )
                w["style"] = gr.Dropdown(
                    [prompt_guide.NO_STYLE, *STYLES],
                    value=prompt_guide.NO_STYLE,
                    label="Style (needs its LoRA)",
                    elem_id="builder_style",
                )
    page.guide = w


def _example_outputs(page: Page) -> list[Any]:
    panel, regions, loras = page.panel, page.ext["regions"], page.ext["loras"]
    control = page.ext["controls"][0]
    slot = loras["slots"][0]
    # the region prompts come before the editor: the editor's change event (the overlay) reads them
    return [
        panel["prompt"],
        panel["true_cfg"],
        panel["steps"],
        panel["settings_note"],
        *(regions[n] for n in region_prompt_names()),
        regions["editor"],
        control["kind"],
        control["image"],
        slot["name"],
        slot["weight"],
        regions["overlay"],
    ]


def example_values(page: Page, example: Example, entries: list[dict[str, Any]], width: Any, height: Any) -> list[Any]:
    """What clicking ``example`` writes into ``_example_outputs`` (everything another example may have set)."""
    ctx = page.ctx
    true_cfg, steps = example.settings.get("true_cfg", 1.0), example.settings.get("steps", ctx.steps)
    note, lora_name, lora_weight = "", lora_panel.NONE, 1.0
    editor, prompts = region_masks.boxes_value({}), dict.fromkeys(region_prompt_names(), "")  # a blank canvas
    kind, image = "off", None
    if example.kind == "regions":
        editor = region_masks.boxes_value({colour: box for colour, (_, box) in example.regions.items()})
        prompts.update({f"prompt_{colour}": text for colour, (text, _) in example.regions.items()})
        note = "Regions example: see the Regions tab for the painted boxes and their prompts."
    elif example.kind == "control" and example.pose:
        from studio.engine.conditioning import pose

        w, h = int(width or ctx.width), int(height or ctx.height)
        kind, image = "pose-map", pose.render_pose_map([pose.preset_figure(example.pose, w, h)], w, h)
        # RGBA (the unit reads RGB): Gradio caches an image by its bytes, and the unit's "map used" preview of the
        # same RGB map would be rewritten into the very file the chained generation is reading
        image = image.convert("RGBA")
        note = f"Pose example: control 1 in the Structure tab holds the “{example.pose}” pose map."
    elif example.kind == "lora" and example.lora:
        entry = next((e for e in entries if e["name"] == example.lora), {})
        recommended = (entry.get("recommended") or {}).get("settings") or {}
        lora_name, lora_weight = example.lora, recommended.get("weight", 1.0)
        steps, true_cfg = recommended.get("steps", steps), recommended.get("true_cfg", true_cfg)
        note = (
            f"LoRA example: “{example.lora}” in LoRA slot 1 at its recommended settings "
            f"({describe_recommendation(recommended) or 'weight 1'})."
        )
    if true_cfg != 1.0 and not note:
        note = f"True CFG {true_cfg:g}: two objects come out more reliably with a negative pass."
    overlay = None
    if example.kind == "regions":
        w, h = int(width or ctx.width), int(height or ctx.height)
        texts = {colour: text for colour, (text, _) in example.regions.items()}
        overlay = region_masks.overlay(region_masks.painted_regions(editor, texts, w, h), w, h)
    return [
        example.prompt,
        true_cfg,
        steps,
        note,
        *prompts.values(),
        editor,
        kind,
        image,
        lora_name,
        lora_weight,
        overlay,
    ]


def wire(page: Page) -> None:
    """Chips fill the recipe and generate; the builder writes its prompt into the prompt box."""
    w, run = page.guide, page.run
    outputs = _example_outputs(page)
    inputs = [page.ext["loras"]["entries"], page.panel["width"], page.panel["height"]]
    for chip, example in zip(w["chips"], w["examples"], strict=True):

        def fill(entries: list[dict[str, Any]] | None, width: Any, height: Any, example: Example = example) -> Any:
            try:
                return example_values(page, example, entries if isinstance(entries, list) else [], width, height)
            except (StudioError, ValueError, TypeError) as exc:
                raise user_error(f"this example cannot be set up: {exc}") from None

        chip.click(fill, inputs, outputs, queue=False, api_visibility="private").success(
            run["fn"], run["inputs"], run["outputs"], **run["options"]
        )
    if not w["toy"]:
        return
    fields = [w[k] for k in ("colour", "shape", "position", "background", "colour_2", "shape_2", "position_2", "style")]

    def write(*choices: str) -> Any:
        try:
            prompt = prompt_guide.built_prompt(*choices)
        except StudioError as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip()
        two = choices[4] not in (None, "", prompt_guide.NO_SECOND)
        return prompt, prompt_guide.TWO_OBJECT_TRUE_CFG if two else gr.skip()

    for field in fields:
        field.input(
            write, fields, [page.panel["prompt"], page.panel["true_cfg"]], queue=False, api_visibility="private"
        )
