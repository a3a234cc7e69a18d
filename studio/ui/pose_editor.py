"""Pose editor: drag OpenPose keypoints on a canvas, presets, add/remove/mirror figures → a `pose-map` control.

The SVG editor (``pose_editor.js``) holds ``{"figures", "selected", "width", "height", "feed"}``; every edit comes
back here, is validated, drawn by ``studio.engine.conditioning.pose`` (no detector, no torch), shown as the map preview,
written to the keypoints JSON box, and — when ``feed`` is set, i.e. the user edited the pose — put into the chosen
control unit as kind ``pose-map``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from studio.core.errors import StudioError
from studio.core.limits import loads_json
from studio.engine.conditioning import pose

EDITOR_JS = (Path(__file__).parent / "pose_editor.js").read_text
DEFAULT_SIZE = 512
MAX_SIDE = 4096
NO_TARGET = "none"
PREVIEW_SIDE = 256


def enlarged(image: Image.Image, min_side: int = PREVIEW_SIDE) -> Image.Image:
    """A small map scaled up by a whole factor (nearest neighbour) so its thin strokes stay crisp on screen."""
    factor = max(1, -(-min_side // max(1, min(image.size))))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def target_names(units: int) -> list[str]:
    """Choices of the unit picker: none, then one per control unit."""
    return [NO_TARGET, *(f"Control {k + 1}" for k in range(units))]


def output_size(width: Any, height: Any, default: tuple[int, int] = (DEFAULT_SIZE, DEFAULT_SIZE)) -> tuple[int, int]:
    """The map size from the prompt panel's width/height boxes (defaults for empty or odd values)."""

    def side(value: Any, fallback: int) -> int:
        try:
            v = int(value)
        except (TypeError, ValueError):
            return fallback
        return min(MAX_SIDE, v) if v >= 16 else fallback

    return side(width, default[0]), side(height, default[1])


def editor_value(figures: list[pose.Figure], selected: int, width: int, height: int, feed: bool) -> str:
    """The editor's JSON state (canonical, so an unchanged pose gives the same text)."""
    doc = json.loads(pose.dump_pose(figures))
    selected = min(max(int(selected), 0), max(len(figures) - 1, 0))
    return json.dumps(
        {**doc, "selected": selected, "width": width, "height": height, "feed": feed}, separators=(",", ":")
    )


def read_editor(value: str | None) -> tuple[list[pose.Figure], int]:
    """Figures and selected index of an editor state; StudioError naming the problem when malformed."""
    try:
        state = loads_json(value or "{}")
    except ValueError as exc:
        raise StudioError(f"the pose editor sent malformed JSON ({exc}) — pick a preset pose to start again") from None
    if not isinstance(state, dict):
        raise StudioError("the pose editor state must be a JSON object — pick a preset pose to start again")
    figures = pose.parse_pose(json.dumps({"figures": state.get("figures", [])}))
    selected = state.get("selected", 0)
    return figures, selected if isinstance(selected, int) else 0


def initial_value(width: int, height: int) -> str:
    """One standing figure in the middle."""
    return editor_value([pose.preset_figure("standing", width, height)], 0, width, height, False)


def edit(
    value: str | None, action: str, preset: str | None, width: Any, height: Any, default: tuple[int, int]
) -> tuple[str, str, Image.Image]:
    """Apply one action (``preset``, ``add``, ``remove``, ``mirror``, ``size``, ``redraw``) to the editor state.

    Returns the new editor state, the keypoints JSON and the map. Edits set ``feed``; ``redraw`` keeps the state's
    own (the JS editor sets it on a drag); ``size`` clears it: a new output size redraws the map without taking
    over a control unit.
    """
    w, h = output_size(width, height, default)
    figures, selected = read_editor(value)
    feed = action != "size"
    if action == "preset":
        if not preset:
            raise StudioError("pick a preset pose first")
        figures = pose.apply_preset(figures, selected, preset, w, h)
    elif action == "add":
        figures = pose.add_figure(figures, w, h)
        selected = len(figures) - 1
    elif action == "remove":
        figures = pose.remove_figure(figures, selected)
        selected = min(selected, len(figures) - 1)
    elif action == "mirror":
        figures = pose.mirror(figures, selected)
    elif action == "redraw":
        feed = bool(loads_json(value or "{}").get("feed"))
    elif action != "size":
        raise StudioError(f"unknown pose editor action {action!r}")
    state = editor_value(figures, max(selected, 0), w, h, feed)
    return state, pose.dump_pose(figures), pose.render_pose_map(figures, w, h)


def from_json(text: str, value: str | None, width: Any, height: Any, default: tuple[int, int]) -> str:
    """A typed keypoints JSON document → the editor state (validated; StudioError with the problem)."""
    w, h = output_size(width, height, default)
    figures = pose.parse_pose(text)
    try:
        _, selected = read_editor(value)
    except StudioError:
        selected = 0
    return editor_value(figures, selected, w, h, True)


def build(units: list[dict[str, Any]], size: tuple[Any, Any] | None) -> dict[str, Any]:
    """The pose editor's widgets; edits feed the picked unit of ``units`` (its kind and image)."""
    default = output_size(*(c.value for c in size)) if size else (DEFAULT_SIZE, DEFAULT_SIZE)
    start = initial_value(*default)
    figures, _ = read_editor(start)
    w: dict[str, Any] = {}
    gr.Markdown(
        "Drag a keypoint to move it (Shift-drag moves the whole figure); click a figure to select it. "
        "Presets and mirror apply to the selected figure. Edits feed the picked control unit as `pose-map`."
    )
    with gr.Row():
        w["preset"] = gr.Dropdown(list(pose.PRESETS), value=None, label="Preset pose", elem_id="pose_preset")
        w["target"] = gr.Dropdown(
            target_names(len(units)),
            value=target_names(len(units))[1],
            label="Feeds control unit",
            elem_id="pose_target",
        )
    with gr.Row():
        w["add"] = gr.Button("Add figure", size="sm", elem_id="pose_add")
        w["remove"] = gr.Button("Remove figure", size="sm", elem_id="pose_remove")
        w["mirror"] = gr.Button("Mirror", size="sm", elem_id="pose_mirror")
    with gr.Row():
        w["editor"] = gr.HTML(
            value=start, html_template='<div class="pose-root"></div>', js_on_load=EDITOR_JS(), elem_id="pose_editor"
        )
        w["map"] = gr.Image(
            value=enlarged(pose.render_pose_map(figures, *default)),
            label="Pose map",
            type="pil",
            format="png",
            interactive=False,
            height=200,
            elem_id="pose_map",
        )
    with gr.Accordion("Keypoints (JSON)", open=False):
        w["json"] = gr.Textbox(
            value=pose.dump_pose(figures),
            lines=4,
            max_lines=12,
            show_label=False,
            info='{"figures": [[[x, y] or null, … 18 OpenPose points], …]}, x and y fractions '
            "of the width and height; press Enter or leave the box to apply",
            elem_id="pose_json",
        )
    _wire(w, units, size, default)
    return w


def fed_unit(action: str, state: str, target: str, kinds: list[str]) -> int | None:
    """The control unit (0-based) an editor event puts its map into, or None.

    Edits feed the picked unit; a redraw only when the state says the user moved a point; a new output size only
    when the picked unit already is a ``pose-map`` (so its map keeps the output size, and nothing else is taken over).
    """
    names = target_names(len(kinds))
    if target not in names or target == NO_TARGET:
        return None
    k = names.index(target) - 1
    if action == "size":
        return k if kinds[k] == "pose-map" else None
    if action == "redraw":
        return k if loads_json(state).get("feed") else None
    return k


def _wire(
    w: dict[str, Any], units: list[dict[str, Any]], size: tuple[Any, Any] | None, default: tuple[int, int]
) -> None:
    kinds, images = [u["kind"] for u in units], [u["image"] for u in units]
    sizes = list(size) if size else []
    n = len(units)
    outputs = [w["editor"], w["json"], w["map"], *kinds, *images]

    def handler(action: str) -> Callable[..., list[Any]]:
        def run(value: str, text: str, preset: str | None, target: str, *rest: Any) -> list[Any]:
            current, wh = list(rest[:n]), rest[n:] or (None, None)
            try:
                if action == "typed":
                    value = from_json(text, value, *wh, default)
                step = "redraw" if action in ("typed", "retarget") else action
                state, text, image = edit(value, step, preset, *wh, default)
            except StudioError as exc:
                raise gr.Error(str(exc)) from None
            k = fed_unit(action, state, target, current)
            return [
                state,
                text,
                enlarged(image),
                *("pose-map" if i == k else gr.skip() for i in range(n)),
                *(image if i == k else gr.skip() for i in range(n)),
            ]

        return run

    inputs = [w["editor"], w["json"], w["preset"], w["target"], *kinds, *sizes]
    private = {"queue": False, "api_visibility": "private"}
    w["preset"].input(handler("preset"), inputs, outputs, **private)
    w["add"].click(handler("add"), inputs, outputs, **private)
    w["remove"].click(handler("remove"), inputs, outputs, **private)
    w["mirror"].click(handler("mirror"), inputs, outputs, **private)
    w["editor"].change(handler("redraw"), inputs, outputs, **private)
    w["target"].input(handler("retarget"), inputs, outputs, **private)
    w["json"].submit(handler("typed"), inputs, outputs, **private)
    w["json"].blur(handler("typed"), inputs, outputs, **private)
    for box in sizes:
        box.change(handler("size"), inputs, outputs, **private)
