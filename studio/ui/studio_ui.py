"""The studio page: prompt panel, Generate/Cancel with live progress and previews, results, history strip.

Extension slots (regions, structure, schedule, LoRA) are placed here and filled by their own panel modules.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio import pngmeta, xyplot
from studio.errors import StudioError
from studio.ui import adapters, edit_panel, lora_panel, region_masks, stored_images
from studio.ui.api import GPU, register_api  # GPU: one concurrency id for every listener using the model
from studio.ui.controls_panel import FIELDS as CONTROL_FIELDS
from studio.ui.controls_panel import wire_overlay as wire_control_overlay
from studio.ui.feedback import internal_error, user_error
from studio.ui.jobs import CancelRegistry, stream_job
from studio.ui.prompt_panel import build_prompt_panel
from studio.ui.regions_panel import prompt_names as regions_panel_prompts
from studio.ui.schedule_panel import render as schedule_panel_render
from studio.ui.visitors import oauth_enabled
from studio.ui.visitors import owner as visitor_owner

if TYPE_CHECKING:
    from studio.service import Studio

log = logging.getLogger(__name__)
HISTORY_SIZE = 24
CSS = """
#status {min-height: 1.5em}
#history .thumbnail-item {max-height: 96px}
"""


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


def _history_items(studio: Studio, owner: str | None, root: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The history strip: (owner-checked image URL, prompt) of the newest finished records, and their ids."""
    records, _ = studio.store.list(limit=HISTORY_SIZE * 2, owner=owner)
    done = [r for r in records if r["status"] == "done" and r["images"]][:HISTORY_SIZE]
    return ([(stored_images.image_url(root, r["id"]), r["request"]["prompt"][:80]) for r in done],
            [r["id"] for r in done])


def _visitor(ctx: UIContext, request: Any) -> str | None:
    """Whose records this request may see: the visitor in multi-user mode (refused without a cookie), else all."""
    if not ctx.multi_user:
        return None
    token = visitor_owner(request)  # hf:<user> when Hugging Face login is on, else the visitor cookie
    if not token:
        raise StudioError("this browser has no visitor id yet — allow cookies and reload the page")
    return token


def _user_error(exc: BaseException) -> gr.Error:
    """A user's mistake as one log line and a message; anything else as a real fault (with its traceback)."""
    return user_error(str(exc)) if isinstance(exc, StudioError) else internal_error(exc)


def build(ctx: UIContext) -> gr.Blocks:
    """The whole studio as Gradio Blocks (queue it and launch/mount it in app.py)."""
    studio = ctx.studio
    cancels = CancelRegistry()
    with gr.Blocks(title="Flux Studio") as demo:
        gr.Markdown(f"## Flux Studio · `{Path(ctx.model).name or ctx.model}`")
        if ctx.multi_user and oauth_enabled():
            gr.LoginButton()  # on a Space with hf_oauth: your history follows your Hugging Face account
        with gr.Row():
            with gr.Column(scale=2):
                panel = build_prompt_panel(ctx)
                import_png = gr.File(label="Drop a PNG (ours, A1111/Forge, ComfyUI) to load its settings",
                                     file_types=[".png"], type="filepath", height=90, elem_id="import_png")
                with gr.Row():
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
                live = gr.Checkbox(False, label="Live: regenerate as you type or drag (fast models; not saved to "
                                   "history — press Generate to keep one)", elem_id="live")
                extension = _extension_slots(panel, ctx)
                schedule_widgets = extension["schedule"]
                with gr.Accordion("X/Y plot: compare values on one grid (same seed)", open=False):
                    with gr.Row():
                        x_axis = gr.Dropdown(list(xyplot.AXES), value="schedule preset", label="X axis",
                                             elem_id="xy_x_axis")
                        x_values = gr.Textbox(value="constant, compose early, detail late", label="X values",
                                              elem_id="xy_x_values")
                    with gr.Row():
                        y_axis = gr.Dropdown(["none", *xyplot.AXES], value="none", label="Y axis", elem_id="xy_y_axis")
                        y_values = gr.Textbox(value="", label="Y values", elem_id="xy_y_values")
                    xy_btn = gr.Button("Run X/Y plot", elem_id="xy_run")
            with gr.Column(scale=3):
                status = gr.Markdown("", elem_id="status")
                preview = gr.Image(label="Preview", type="pil", interactive=False, height=256, elem_id="preview")
                results = gr.Gallery(label="Result", columns=2, height=320, elem_id="results")
                with gr.Accordion("Record", open=False):
                    record_json = gr.JSON(label="record")
        with gr.Row():
            history = gr.Gallery(label="History (click to select)", columns=12, rows=1, height=150, allow_preview=False,
                                 object_fit="contain", elem_id="history")
        history_ids = gr.State([])
        selected_id = gr.State("")

        def root(request: gr.Request | None) -> str:
            """Where the browser fetches stored images from (owner-checked routes, never Gradio's file server)."""
            return stored_images.root_url(request, ctx.share_base_url)

        def who(request: gr.Request | None) -> str | None:
            """The owner to filter by: the browser's visitor cookie in multi-user mode, None (everything) otherwise."""
            try:
                return _visitor(ctx, request)
            except StudioError as exc:
                raise user_error(str(exc)) from None
        with gr.Row():
            reuse_btn = gr.Button("Reuse settings", size="sm", elem_id="reuse")
            replay_btn = gr.Button("Replay", size="sm", elem_id="replay")
            refresh_btn = gr.Button("Refresh history", size="sm")
            favourite_btn = gr.Button("★ Favourite", size="sm", elem_id="favourite")
            share_btn = gr.Button("Share link", size="sm", elem_id="share")
            send_edit_btn = gr.Button("Send to edit (img2img / inpaint)", size="sm", elem_id="send_to_edit")
            delete_btn = gr.Button("Delete", size="sm", variant="stop", elem_id="delete")
        share_link = gr.Markdown("", elem_id="share_link")

        panel_inputs = [panel[name] for name in adapters.FIELDS]

        def refresh(request: gr.Request) -> tuple[Any, list[str]]:
            if ctx.multi_user and not visitor_owner(request):
                return [], []
            return _history_items(studio, who(request), root(request))

        def run_stream(run: Any, owner: str | None, request: gr.Request, progress: gr.Progress) -> Any:
            session = request.session_hash or "local"
            cancel = cancels.start(session)
            try:
                for event in stream_job(lambda on_step: run(on_step, cancel), cancel):
                    if event.kind == "step":
                        update = event.payload
                        progress((update.step, update.total), desc=f"step {update.step}/{update.total}")
                        yield (f"Step {update.step}/{update.total} · {update.elapsed_s:.1f}s", update.preview
                               if update.preview is not None else gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                               gr.skip(), gr.skip())
                    elif event.kind == "error":
                        raise _user_error(event.payload)
                    else:
                        record = event.payload
                        items, ids = _history_items(studio, owner, root(request))
                        images = stored_images.record_images(root(request), record)
                        if record["status"] == "cancelled":
                            message = "Cancelled — stored in history as cancelled."
                        else:
                            message = f"Done in {record['timings'].get('total_s', 0):.2f}s · id `{record['id']}`"
                        yield message, None, images, record, items, ids, record["id"]
            finally:
                cancels.finish(session, cancel)

        region_w, control_units, lora_w = extension["regions"], extension["controls"], extension["loras"]
        wire_control_overlay(control_units, selected_id, studio, who)
        edit_w = extension["edit"]
        lora_slot_inputs = [s[f] for s in lora_w["slots"] for f in lora_panel.FIELDS]
        request_inputs = {*panel_inputs, region_w["editor"], *(region_w[n] for n in regions_panel_prompts()),
                          *(u[f] for u in control_units for f in CONTROL_FIELDS), lora_w["entries"],
                          *lora_slot_inputs, edit_w["mode"], edit_w["editor"], edit_w["strength"],
                          region_w["base_ratio"]}

        def request_from(data: dict[Any, Any]) -> Any:
            """Every panel's widget values → one validated request (inputs stored by content hash)."""
            values = adapters.PromptPanelValues(*(data[panel[name]] for name in adapters.FIELDS))
            req = adapters.request_from_panel(values)
            width, height = req.width or ctx.width, req.height or ctx.height
            prompts = {name.removeprefix("prompt_"): data[region_w[name]] for name in regions_panel_prompts()}
            pairs = region_masks.regions_from_paint(data[region_w["editor"]], prompts, width, height)
            units = [{f: data[u[f]] for f in CONTROL_FIELDS} for u in control_units]
            put = studio.store.assets.put_image
            picked = lora_panel.selection([(data[s["name"]], data[s["weight"]]) for s in lora_w["slots"]],
                                          data[lora_w["entries"]])
            edit = edit_panel.edit_fields(data[edit_w["mode"]], data[edit_w["editor"]], data[edit_w["strength"]], put)
            return req.replace(regions=adapters.region_specs(pairs, put), controls=adapters.control_specs(units, put),
                               loras=adapters.lora_specs(picked), region_base_ratio=float(data[region_w["base_ratio"]]
                                                                                          or 0.0), **edit).validate()

        def on_generate(data: dict[Any, Any], request: gr.Request, progress: gr.Progress = gr.Progress()) -> Any:
            owner = who(request)
            try:
                req = request_from(data)
            except StudioError as exc:
                raise user_error(str(exc)) from None
            yield from run_stream(lambda on_step, cancel: studio.generate(req, on_step, cancel, owner=owner), owner,
                                  request, progress)

        def on_regions_preview(data: dict[Any, Any]) -> Any:
            try:
                width = int(data[panel["width"]] or ctx.width)
                height = int(data[panel["height"]] or ctx.height)
                prompts = {name.removeprefix("prompt_"): data[region_w[name]] for name in regions_panel_prompts()}
                pairs = region_masks.regions_from_paint(data[region_w["editor"]], prompts, width, height)
            except (StudioError, ValueError) as exc:
                gr.Warning(str(exc))
                return gr.skip()
            return region_masks.overlay(pairs, width, height)

        def on_replay(record_id: str, request: gr.Request, progress: gr.Progress = gr.Progress()) -> Any:
            if not record_id:
                raise user_error("select an image in the history strip first")
            owner = who(request)
            yield from run_stream(lambda on_step, cancel: studio.replay(record_id, on_step, cancel, owner=owner),
                                  owner, request, progress)

        def on_xy(data: dict[Any, Any], request: gr.Request, progress: gr.Progress = gr.Progress()) -> Any:
            xa, xv, ya, yv = data[x_axis], data[x_values], data[y_axis], data[y_values]
            try:
                base = request_from(data)
                x = xyplot.parse_axis(xa, xv)
                y = None if ya == "none" else xyplot.parse_axis(ya, yv)
                xyplot.cell_requests(base, x, y)
            except StudioError as exc:
                raise user_error(str(exc)) from None
            session = request.session_hash or "local"
            cancel = cancels.start(session)
            try:
                owner = who(request)
                grid, records = xyplot.run(studio, base, x, y, lambda k, n: progress((k, n), desc="X/Y cells"),
                                           cancel, owner=owner)
            except StudioError as exc:
                raise _user_error(exc) from None
            finally:
                cancels.finish(session, cancel)
            items, ids = _history_items(studio, owner, root(request))
            note = f"X/Y plot: {len(records)} records ({', '.join(r['id'] for r in records[:3])}…)"
            caption = f"{x.name}" + (f" × {y.name}" if y else "")
            return note, None, [(grid, caption)], records[-1], items, ids, records[-1]["id"]

        def on_remix(request: gr.Request) -> list[Any]:
            """``/?remix=<share token>`` or ``/?reuse=<own record id>`` (gallery detail) fills the panels."""
            params = request.query_params if request else {}
            token, record_id = params.get("remix"), params.get("reuse")
            skip = [gr.skip() for _ in [*adapters.FIELDS, *lora_slot_inputs]]
            try:
                if token:
                    record = studio.store.resolve_share(token)
                elif record_id:
                    record = studio.store.get(record_id, who(request))
                else:
                    return skip
            except (StudioError, gr.Error):
                gr.Warning("this link no longer points to a record you can see (revoked, deleted or not yours)")
                return skip
            stored = record["request"]
            values = adapters.panel_from_request(stored)
            return [getattr(values, name) for name in adapters.FIELDS] + lora_panel.slot_values(stored.get("loras") or [])

        def on_import(path: str | None) -> list[Any]:
            if not path:
                return [gr.skip() for _ in [*adapters.FIELDS, *lora_slot_inputs]]
            try:
                stored = pngmeta.read_png_request(stored_images.uploaded(path))
            except StudioError as exc:
                raise user_error(str(exc)) from None
            values = adapters.panel_from_request(stored)
            gr.Info("Settings loaded from the PNG")
            return [getattr(values, name) for name in adapters.FIELDS] + lora_panel.slot_values(stored.get("loras") or [])

        def on_favourite(record_id: str, request: gr.Request) -> Any:
            if not record_id:
                raise user_error("select an image in the history strip first")
            try:
                record = studio.store.get(record_id, who(request))
                return studio.store.set_favourite(record_id, not record["favourite"], who(request))
            except StudioError as exc:
                raise user_error(str(exc)) from None

        def on_share(record_id: str, request: gr.Request) -> str:
            if not record_id:
                raise user_error("select an image in the history strip first")
            try:
                token = studio.store.share(record_id, who(request))
            except StudioError as exc:
                raise user_error(str(exc)) from None
            raw = getattr(request, "request", None)
            base = ctx.share_base_url or (str(raw.base_url).rstrip("/") if raw is not None else "")
            return f"Share link: [{base}/share/{token}]({base}/share/{token}) — anyone with it can see this image"

        def on_delete(record_id: str, request: gr.Request) -> tuple[Any, list[str], str, Any]:
            if not record_id:
                raise user_error("select an image in the history strip first")
            try:
                studio.store.delete(record_id, who(request))
            except StudioError as exc:
                raise user_error(str(exc)) from None
            items, ids = _history_items(studio, who(request), root(request))
            return items, ids, "", None

        def on_cancel(request: gr.Request) -> Any:
            running = cancels.cancel(request.session_hash or "local")
            # A running job's stream writes "Cancelled" itself; writing "Cancelling…" here could land after it.
            return gr.update() if running else "Nothing is running."

        def on_select(ids: list[str], evt: gr.SelectData, request: gr.Request) -> tuple[str, Any]:
            record_id = ids[evt.index] if evt.index is not None and evt.index < len(ids) else ""
            try:
                return record_id, studio.store.get(record_id, who(request)) if record_id else None
            except StudioError as exc:
                raise user_error(str(exc)) from None

        def on_reuse(record_id: str, request: gr.Request) -> list[Any]:
            if not record_id:
                raise user_error("select an image in the history strip first")
            try:
                stored = studio.store.get(record_id, who(request))["request"]
            except StudioError as exc:
                raise user_error(str(exc)) from None
            values = adapters.panel_from_request(stored)
            return [getattr(values, name) for name in adapters.FIELDS] + lora_panel.slot_values(stored.get("loras") or [])

        def on_live(data: dict[Any, Any], request: gr.Request) -> Any:
            """A quick generation of the current settings, not stored; stale ones were cancelled on change."""
            if not data[live]:
                return gr.skip(), gr.skip()
            try:
                req = request_from(data)
            except StudioError as exc:
                return f"Live: {exc}", gr.skip()
            session = request.session_hash or "local"
            cancel = cancels.start(session)
            try:
                started = time.perf_counter()
                result = studio.preview(req, cancel)
            finally:
                cancels.finish(session, cancel)
            if result is None:
                return gr.skip(), gr.skip()
            took = time.perf_counter() - started
            return f"Live · {took:.2f}s · seed {result.seeds[0]}", [(img, f"seed {s}") for img, s in
                                                                    zip(result.images, result.seeds)]

        def cancel_stale(is_live: bool, request: gr.Request) -> None:
            if is_live:
                cancels.cancel(request.session_hash or "local")

        outputs = [status, preview, results, record_json, history, history_ids, selected_id]
        run_options = {"concurrency_id": GPU, "concurrency_limit": ctx.gpu_slots, "api_visibility": "private",
                       "show_progress_on": [results]}
        gen_event = generate_btn.click(on_generate, request_inputs, outputs, **run_options)
        for widget in (panel["prompt"], panel["guidance"], panel["true_cfg"], panel["seed"], panel["steps"],
                       panel["schedule_json"], live):
            widget.change(cancel_stale, live, None, queue=False, api_visibility="private")
            widget.change(on_live, {*request_inputs, live}, [status, results], trigger_mode="always_last",
                          concurrency_id=GPU, concurrency_limit=ctx.gpu_slots, api_visibility="private",
                          show_progress="hidden")
        preview_inputs = {panel["width"], panel["height"], region_w["editor"],
                          *(region_w[n] for n in regions_panel_prompts())}
        for trigger in (region_w["editor"].change, *(region_w[n].blur for n in regions_panel_prompts())):
            trigger(on_regions_preview, preview_inputs, region_w["overlay"], api_visibility="private")
        replay_event = replay_btn.click(on_replay, [selected_id], outputs, **run_options)
        xy_btn.click(on_xy, {*request_inputs, x_axis, x_values, y_axis, y_values}, outputs, **run_options)
        demo.load(on_remix, None, panel_inputs + lora_slot_inputs, api_visibility="private")
        import_png.upload(on_import, import_png, panel_inputs + lora_slot_inputs, api_visibility="private")
        cancel_btn.click(on_cancel, None, status, queue=False, api_visibility="private")
        def on_reuse_seed(record: Any) -> Any:
            if not record or "request" not in record:
                raise user_error("no generation yet — generate or select one in the history strip")
            return record["request"]["seed"]

        panel["reuse_seed"].click(on_reuse_seed, record_json, panel["seed"], queue=False, api_visibility="private")
        history.select(on_select, [history_ids], [selected_id, record_json], api_visibility="private")

        def on_send_to_edit(record_id: str, request: gr.Request) -> Any:
            """The selected record's own image (looked up for this visitor) into the Edit tab."""
            try:
                image = stored_images.owned_image(studio, record_id, who(request))
            except StudioError as exc:
                raise user_error(str(exc)) from None
            return edit_panel.editor_value(image), "img2img", gr.Tabs(selected="edit")

        send_edit_btn.click(on_send_to_edit, selected_id, [edit_w["editor"], edit_w["mode"], extension["tabs"]],
                            api_visibility="private")
        reuse_btn.click(on_reuse, [selected_id], panel_inputs + lora_slot_inputs, api_visibility="private")
        refresh_btn.click(refresh, None, [history, history_ids], api_visibility="private")
        favourite_btn.click(on_favourite, selected_id, record_json, api_visibility="private")
        share_btn.click(on_share, selected_id, share_link, api_visibility="private")
        delete_btn.click(on_delete, selected_id, [history, history_ids, selected_id, record_json],
                         api_visibility="private")
        demo.load(refresh, None, [history, history_ids], api_visibility="private")
        demo.load(
            lambda text, steps, g, cfg, neg: schedule_panel_render(text, steps, g, cfg, neg, ctx.uses_distilled_guidance),
            [panel["schedule_json"], panel["steps"], panel["guidance"], panel["true_cfg"], panel["negative_prompt"]],
            [schedule_widgets[k] for k in ("editor", "points", "steps_table", "passes", "channels")],
            api_visibility="private",
        )
        del gen_event, replay_event
        register_api(studio, ctx.multi_user, ctx.gpu_slots)
    return demo


def _extension_slots(panel: dict[str, Any], ctx: UIContext) -> dict[str, Any]:
    """The panels that extend a generation (schedule, regions, structure); a slot for the LoRA picker."""
    from studio.ui import controls_panel, edit_panel, lora_panel, regions_panel, schedule_panel, training_panel

    widgets: dict[str, Any] = {}
    with gr.Tabs() as tabs:
        widgets["tabs"] = tabs
        with gr.Tab("Schedule", id="schedule"):
            widgets["schedule"] = schedule_panel.build(panel, ctx.uses_distilled_guidance)
        with gr.Tab("Regions", id="regions"):
            widgets["regions"] = regions_panel.build()
        with gr.Tab("Structure", id="structure"):
            widgets["controls"] = controls_panel.build(ctx.studio.control_map, (panel["width"], panel["height"]))
        with gr.Tab("Edit", id="edit"):
            widgets["edit"] = edit_panel.build()
        with gr.Tab("Train LoRA", id="train"):
            widgets["training"] = training_panel.build(ctx.studio, ctx.gpu_slots, lambda request: _visitor(ctx, request))
        with gr.Tab("LoRA", id="lora"):
            library = ctx.studio.loras
            widgets["loras"] = lora_panel.build(lambda: [library.describe(f) for f in library.scan()], panel["prompt"])
    return widgets
