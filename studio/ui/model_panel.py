"""The header's model picker ("Flux Studio · model ▾"): the models the operator serves, the resident one first.

Choosing one makes the next generation use it (the request's ``model``; the engine loads it then) and sets the
size, steps and guidance to that model's defaults, read from its ``studio.json``/config without loading it
(``Studio.model_defaults``). Models that cannot load are listed with "cannot load" and are not selectable: picking
one says why and keeps the current model. With one model the header shows its name and no dropdown. A visitor can
only pick from the list (the dropdown takes no typed values, and ``model_for`` refuses anything not on it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.core.errors import InvalidRequest, StudioError
from studio.models.choices import ModelChoice, find_choice
from studio.ui import aspect, edit_panel, layout
from studio.ui.feedback import log, user_error

if TYPE_CHECKING:
    from studio.ui.page import Page


def choice_label(choice: ModelChoice) -> str:
    """What the dropdown shows for a model."""
    if not choice.loadable:
        return f"⊘ {choice.label} — cannot load"
    if choice.family.startswith("flux2"):
        return f"{choice.label} · FLUX.2"
    return f"{choice.label} · Kontext" if choice.kontext else choice.label


def note(width: int, height: int, steps: int, kontext: bool) -> str:
    """What the selected model does, in a few words next to the picker."""
    text = f"{width}×{height} · {steps} steps"
    return text + " · edits from a reference" if kontext else text


def resident_choice(choices: list[ModelChoice], model: str) -> ModelChoice:
    """The model loaded now (the first entry when none says so)."""
    return next((c for c in choices if c.resident), None) or find_choice(choices, model) or ModelChoice(model, model)


def build(page: Page, toy: bool) -> None:
    """Title, the picker (with several models) or the model's name, a note on what it does, the gallery link."""
    ctx = page.ctx
    try:
        choices = page.studio.models()
    except StudioError as exc:  # a model folder that cannot be read must not keep the page from starting
        log.warning("the model picker lists only the resident model: %s", exc)
        choices = []
    current = resident_choice(choices, ctx.model)
    page.choices = choices or [current]
    picker = len(page.choices) > 1
    layout.header(ctx.model, toy, picker)
    if picker:
        page.panel["model"] = gr.Dropdown(
            [(choice_label(c), c.name) for c in page.choices],
            value=current.name,
            show_label=False,
            container=False,
            allow_custom_value=False,
            filterable=False,
            min_width=200,
            elem_id="model_picker",
        )
        page.panel["model_current"] = gr.State(current.name)
    page.panel["model_note"] = gr.HTML(
        note(ctx.width, ctx.height, ctx.steps, current.kontext), elem_id="model_note", container=False, padding=False
    )
    layout.gallery_link()


def model_for(page: Page, value: Any) -> str:
    """The request's ``model`` from the picker's value: only a model on the list that can load (else refused)."""
    if "model" not in page.panel:
        return ""
    choice = find_choice(page.choices, value) if isinstance(value, str) and value else None
    if choice is None:
        raise InvalidRequest(f"model {value!r} is not served here — pick one from the list in the header")
    if not choice.loadable:
        raise InvalidRequest(f"{choice.label} cannot load: {choice.reason} — pick another model in the header")
    return choice.name


def kontext_of(page: Page, value: Any) -> bool:
    """Whether the picked model (or the resident one) takes a reference image."""
    choice = find_choice(page.choices, value) if isinstance(value, str) and value else None
    return bool((choice or resident_choice(page.choices, page.ctx.model)).kontext)


def wire(page: Page) -> None:
    """Picking a model: that model's defaults into the settings, the Reference input told what it can do."""
    if "model" not in page.panel:
        return
    panel, edit = page.panel, page.ext["edit"]
    outputs = [
        panel["model"],
        panel["model_current"],
        panel["width"],
        panel["height"],
        panel["steps"],
        panel["guidance"],
        panel["aspect"],
        panel["budget"],
        panel["model_note"],
        edit["reference_box"],
        edit["reference_note"],
    ]
    keep = [gr.skip()] * (len(outputs) - 2)

    def on_model(value: Any, current: str) -> list[Any]:
        choice = find_choice(page.choices, value) if isinstance(value, str) else None
        if choice is None or not choice.loadable:
            why = choice.reason if choice is not None else "it is not on this studio's list"
            gr.Warning(f"{choice.label if choice else value} cannot load: {why}")
            return [current, current, *keep]
        try:
            d = page.studio.model_defaults(choice.name)
        except StudioError as exc:
            raise user_error(str(exc)) from None
        budget = d.width * d.height
        distilled = "Distilled guidance" if d.guidance_distilled else "Distilled guidance (this model ignores it)"
        return [
            choice.name,
            choice.name,
            d.width,
            d.height,
            d.steps,
            gr.Slider(value=d.guidance, label=distilled),
            gr.Radio(
                value=aspect.preset_of(d.width, d.height, budget),
                label=f"Size (at the model's {d.width}×{d.height} pixel budget)",
            ),
            budget,
            note(d.width, d.height, d.steps, choice.kontext),
            *edit_panel.reference_updates(choice.label, choice.kontext),
        ]

    panel["model"].input(
        on_model, [panel["model"], panel["model_current"]], outputs, api_visibility="private", show_progress="hidden"
    )
