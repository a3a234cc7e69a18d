"""Guidance-schedule editor panel: presets, per-channel enable, a draggable plot, a table of points, per-step values.

The hidden ``schedule_json`` textbox of the prompt panel is the single source of truth: every control here
writes it, and its change re-renders the plot, the tables and the pass count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from studio.core import schedule as sched
from studio.core.errors import StudioError
from studio.core.limits import loads_json

EDITOR_JS = (Path(__file__).parent / "schedule_editor.js").read_text
CHANNEL_DEFAULTS = {"control": 1.0, "regions": 1.0}


def _load(text: str | None) -> dict[str, Any]:
    if not text or not text.strip():
        return {}
    try:
        value = loads_json(text)
    except ValueError as exc:
        raise gr.Error(f"the schedule is not valid JSON ({exc}) — pick a preset to start again") from None
    return value if isinstance(value, dict) else {}


def _dump(schedule: dict[str, Any] | None) -> str:
    return json.dumps(schedule, separators=(",", ":")) if schedule else ""


def _validated(schedule: dict[str, Any]) -> dict[str, Any]:
    try:
        return sched.validate_schedule(schedule) or {}
    except StudioError as exc:
        raise gr.Error(str(exc)) from None


def _steps(value: Any) -> int:
    try:
        return max(1, min(200, int(value or 1)))
    except (TypeError, ValueError):
        return 1


def render(text: str, steps: Any, guidance: Any, true_cfg: Any, negative: str, uses_distilled_guidance: bool) -> tuple:
    """Editor state, points table, per-step table, pass count text and enabled channels for a schedule."""
    schedule = _load(text)
    n = _steps(steps)
    g = float(guidance if guidance is not None else 0.0)
    cfg = float(true_cfg if true_cfg is not None else 1.0)
    try:
        clean = sched.validate_schedule(schedule) or {}
    except StudioError as exc:
        return gr.skip(), gr.skip(), gr.skip(), f"⚠ {exc}", gr.skip()
    values = sched.step_values(clean, n, g, cfg)
    rows = [
        [i + 1, round(p, 3)] + [round(values[c][i], 3) for c in sched.CHANNELS]
        for i, p in enumerate(sched.step_positions(n))
    ]
    points = [[c, p, v] for c, curve in clean.items() for p, v in curve]
    passes = sched.transformer_passes(n, values["true_cfg"], has_negative=True)
    constant = sched.transformer_passes(n, [cfg] * n, has_negative=True)
    note = f"**Transformer passes: {passes}** for {n} steps"
    if "true_cfg" in clean:
        note += f" (constant true CFG {cfg:g} would cost {constant})"
    if not uses_distilled_guidance:
        note += " · this model does not use distilled guidance: that channel is ignored — shape true CFG instead"
    editor = json.dumps({"schedule": clean, "steps": n})
    return editor, points or [["", None, None]], rows, note, list(clean)


def build(panel: dict[str, Any], uses_distilled_guidance: bool) -> dict[str, Any]:
    """The Schedule tab's widgets, wired to the prompt panel's ``schedule_json``, steps, guidance and CFG."""
    schedule_json = panel["schedule_json"]
    names = list(sched.presets())
    w: dict[str, Any] = {}
    with gr.Row():
        w["preset"] = gr.Dropdown(names, value="constant", label="Preset", elem_id="schedule_preset")
        w["channels"] = gr.CheckboxGroup(
            list(sched.CHANNELS), value=[], label="Curves on (others use the sliders)", elem_id="schedule_channels"
        )
    w["editor"] = gr.HTML(
        value=json.dumps({"schedule": {}, "steps": 4}),
        html_template='<div class="sched-root"></div>',
        js_on_load=EDITOR_JS(),
        elem_id="schedule_editor",
    )
    w["passes"] = gr.Markdown("", elem_id="schedule_passes")
    with gr.Accordion("Points (exact values)", open=False):
        w["points"] = gr.Dataframe(
            headers=["channel", "p", "value"],
            datatype=["str", "number", "number"],
            value=[["", None, None]],
            interactive=True,
            elem_id="schedule_points",
        )
    with gr.Accordion("Value at each step", open=False):
        w["steps_table"] = gr.Dataframe(
            headers=["step", "p", *sched.CHANNELS], interactive=False, elem_id="schedule_steps"
        )
    context = [panel["steps"], panel["guidance"], panel["true_cfg"], panel["negative_prompt"]]
    outputs = [w["editor"], w["points"], w["steps_table"], w["passes"], w["channels"]]

    def on_render(text: str, steps: Any, guidance: Any, cfg: Any, negative: str) -> tuple:
        return render(text, steps, guidance, cfg, negative, uses_distilled_guidance)

    def on_preset(name: str, guidance: Any, cfg: Any) -> str:
        level = float(cfg) if cfg and float(cfg) > 1 else 3.0
        return _dump(sched.presets(guidance=float(guidance or 3.5), true_cfg=level).get(name))

    def on_channels(channels: list[str], text: str, guidance: Any, cfg: Any) -> str:
        schedule = _load(text)
        scalars = {"guidance": float(guidance or 0.0), "true_cfg": float(cfg or 1.0), **CHANNEL_DEFAULTS}
        kept = {c: curve for c, curve in schedule.items() if c in channels}
        for channel in channels:
            kept.setdefault(channel, sched.flat_curve(scalars[channel]))
        return _dump(kept)

    def on_points(rows: Any) -> str:
        data = rows.values.tolist() if hasattr(rows, "values") else list(rows or [])
        schedule: dict[str, list[list[float]]] = {}
        for row in data:
            if not row or not row[0] or row[1] is None or row[2] is None or row[1] != row[1]:
                continue
            schedule.setdefault(str(row[0]).strip(), []).append([float(row[1]), float(row[2])])
        for curve in schedule.values():
            curve.sort(key=lambda point: point[0])
        return _dump(_validated(schedule))

    def on_editor(value: str) -> str:
        state = _load(value)
        return _dump(_validated(state.get("schedule") or {}))

    schedule_json.change(on_render, [schedule_json, *context], outputs, queue=False, api_visibility="private")
    for widget in context:
        widget.change(on_render, [schedule_json, *context], outputs, queue=False, api_visibility="private")
    w["preset"].input(
        on_preset,
        [w["preset"], panel["guidance"], panel["true_cfg"]],
        schedule_json,
        queue=False,
        api_visibility="private",
    )
    w["channels"].input(
        on_channels,
        [w["channels"], schedule_json, panel["guidance"], panel["true_cfg"]],
        schedule_json,
        queue=False,
        api_visibility="private",
    )
    w["points"].input(on_points, w["points"], schedule_json, queue=False, api_visibility="private")
    w["editor"].change(on_editor, w["editor"], schedule_json, queue=False, api_visibility="private")
    return w
