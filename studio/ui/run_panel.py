"""Running the model from the page: Generate (with step previews in the result area), Replay, X/Y plot, live mode,
Cancel, and filling the panels from a remix/reuse link or a dropped PNG.

Every run yields into the same outputs (``page.run["outputs"]``): status line, result area, record details, history
strip, its ids and the current record id — so the step preview and the final image share one place, and the final
image stays after the run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio import xyplot
from studio.core.errors import StudioError
from studio.store import pngmeta
from studio.ui import result_panel, stored_images
from studio.ui.api import GPU  # one concurrency id for every listener using the model
from studio.ui.feedback import user_error
from studio.ui.jobs import stream_job
from studio.ui.page import as_gradio_error

if TYPE_CHECKING:
    from studio.ui.page import Page

LIVE_TRIGGERS = ("prompt", "guidance", "true_cfg", "seed", "steps", "schedule_json")
WAIT_POLL_S = 0.5
XY_SHOWN_MAX_SIDE = 2048  # how often a waiting generation checks its place in the line


def done_message(record: dict[str, Any]) -> str:
    """The status line after a run: time, seed(s) and id, or that it was cancelled."""
    if record["status"] == "cancelled":
        return "Cancelled — stored in history as cancelled."
    seeds = ", ".join(str(img["seed"]) for img in record["images"][:4]) or record["request"].get("seed")
    took = (record.get("timings") or {}).get("total_s", 0)
    return f"Done in {took:.2f}s · seed {seeds} · id `{record['id']}`"


def build_xy(page: Page) -> dict[str, Any]:
    """The X/Y plot tab's widgets."""
    w: dict[str, Any] = {}
    gr.Markdown("Compare values on one grid with the same seed: each cell is a stored generation.")
    with gr.Row():
        w["x_axis"] = gr.Dropdown(list(xyplot.AXES), value="schedule preset", label="X axis", elem_id="xy_x_axis")
        w["x_values"] = gr.Textbox(
            value="constant, compose early, detail late", label="X values", elem_id="xy_x_values"
        )
    with gr.Row():
        w["y_axis"] = gr.Dropdown(["none", *xyplot.AXES], value="none", label="Y axis", elem_id="xy_y_axis")
        w["y_values"] = gr.Textbox(value="", label="Y values", elem_id="xy_y_values")
    w["run"] = gr.Button("Run X/Y plot", elem_id="xy_run")
    return w


def wire(page: Page) -> None:
    """Generate, Replay, X/Y, live mode, Cancel, remix links and PNG import."""
    studio, cancels, panel, r, h = page.studio, page.cancels, page.panel, page.result, page.history
    outputs = [r["status"], r["result"], h["record"], h["strip"], h["ids"], page.selected_id]
    options = {
        "concurrency_id": GPU,
        "concurrency_limit": page.ctx.gpu_slots,
        "api_visibility": "private",
        "show_progress_on": [r["result"]],
    }
    request_inputs = page.request_inputs

    def run_stream(run: Any, owner: str | None, request: gr.Request, progress: gr.Progress) -> Any:
        session = request.session_hash or "local"
        cancel = cancels.start(session)
        ticket, shown_ahead, started = page.line.join(), 0, False
        skip = [gr.skip()] * 4
        try:
            for event in stream_job(lambda on_step: run(on_step, cancel), cancel, idle_s=WAIT_POLL_S):
                if event.kind == "idle":
                    ahead = 0 if started else page.line.ahead(ticket)
                    if ahead and ahead != shown_ahead:  # waiting behind others: say where it stands
                        shown_ahead = ahead
                        yield f"In the queue: {ahead} ahead of yours", result_panel.waiting_html(ahead), *skip
                elif event.kind == "step":
                    started, update = True, event.payload
                    progress((update.step, update.total), desc=f"step {update.step}/{update.total}")
                    note = f"step {update.step}/{update.total}"
                    shown = (
                        result_panel.pil_html([update.preview], note=note) if update.preview is not None else gr.skip()
                    )
                    yield f"Step {update.step}/{update.total} · {update.elapsed_s:.1f}s", shown, *skip
                elif event.kind == "error":
                    raise as_gradio_error(event.payload)
                else:
                    record = event.payload
                    root = page.root(request)
                    items, ids = page.history_items(owner, root)
                    shown = result_panel.record_html(root, record) if record["images"] else gr.skip()
                    yield done_message(record), shown, record, items, ids, record["id"]
        finally:
            page.line.leave(ticket)
            cancels.finish(session, cancel)

    def on_generate(data: dict[Any, Any], request: gr.Request, progress: gr.Progress = gr.Progress()) -> Any:
        owner = page.who(request)
        try:
            req = page.request_from(data)
        except StudioError as exc:
            raise user_error(str(exc)) from None
        yield from run_stream(
            lambda on_step, cancel: studio.generate(req, on_step, cancel, owner=owner), owner, request, progress
        )

    def on_replay(record_id: str, request: gr.Request, progress: gr.Progress = gr.Progress()) -> Any:
        if not record_id or not isinstance(record_id, str):
            raise user_error("no image yet — generate one or select one in the history strip")
        owner = page.who(request)
        yield from run_stream(
            lambda on_step, cancel: studio.replay(record_id, on_step, cancel, owner=owner), owner, request, progress
        )

    xy = page.ext["xy"]

    def on_xy(data: dict[Any, Any], request: gr.Request, progress: gr.Progress = gr.Progress()) -> Any:
        try:
            base = page.request_from(data)
            x = xyplot.parse_axis(data[xy["x_axis"]], data[xy["x_values"]])
            y = None if data[xy["y_axis"]] == "none" else xyplot.parse_axis(data[xy["y_axis"]], data[xy["y_values"]])
            xyplot.cell_requests(base, x, y)
        except StudioError as exc:
            raise user_error(str(exc)) from None
        session = request.session_hash or "local"
        cancel = cancels.start(session)
        try:
            owner = page.who(request)
            grid, records = xyplot.run(
                studio, base, x, y, lambda k, n: progress((k, n), desc="X/Y cells"), cancel, owner=owner
            )
        except StudioError as exc:
            raise as_gradio_error(exc) from None
        finally:
            cancels.finish(session, cancel)
        items, ids = page.history_items(owner, page.root(request))
        note = f"X/Y plot: {len(records)} records ({', '.join(r['id'] for r in records[:3])}…)"
        caption = f"{x.name}" + (f" × {y.name}" if y else "")
        shown = grid.copy()
        shown.thumbnail((XY_SHOWN_MAX_SIDE, XY_SHOWN_MAX_SIDE))  # for the page only: each cell is a stored record
        return note, result_panel.pil_html([shown], note=caption), records[-1], items, ids, records[-1]["id"]

    def on_live(data: dict[Any, Any], request: gr.Request) -> Any:
        """A quick generation of the current settings, not stored; stale ones were cancelled on change."""
        if not data[panel["live"]]:
            return gr.skip(), gr.skip()
        try:
            req = page.request_from(data)
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
        return (
            f"Live · {took:.2f}s · seed {result.seeds[0]}",
            result_panel.pil_html(list(result.images), [f"seed {s}" for s in result.seeds]),
        )

    def cancel_stale(is_live: bool, request: gr.Request) -> None:
        if is_live is True:
            cancels.cancel(request.session_hash or "local")

    def on_cancel(request: gr.Request) -> Any:
        running = cancels.cancel(request.session_hash or "local")
        # A running job's stream writes "Cancelled" itself; writing "Cancelling…" here could land after it.
        return gr.update() if running else "Nothing is running."

    panel["generate"].click(on_generate, request_inputs, outputs, **options)
    r["replay"].click(on_replay, [page.selected_id], outputs, **options)
    xy["run"].click(
        on_xy, {*request_inputs, *(xy[k] for k in ("x_axis", "x_values", "y_axis", "y_values"))}, outputs, **options
    )
    panel["cancel"].click(on_cancel, None, r["status"], queue=False, api_visibility="private")
    for name in (*LIVE_TRIGGERS, "live"):
        widget = panel[name]
        widget.change(cancel_stale, panel["live"], None, queue=False, api_visibility="private")
        widget.change(
            on_live,
            {*request_inputs, panel["live"]},
            [r["status"], r["result"]],
            trigger_mode="always_last",
            concurrency_id=GPU,
            concurrency_limit=page.ctx.gpu_slots,
            api_visibility="private",
            show_progress="hidden",
        )
    page.run = {"fn": on_generate, "inputs": request_inputs, "outputs": outputs, "options": options}
    _wire_fill(page)


def _wire_fill(page: Page) -> None:
    """``/?remix=<share token>`` or ``/?reuse=<own record id>`` (gallery detail), and a dropped PNG, fill the panels."""
    studio = page.studio
    skip = [gr.skip() for _ in page.settings_outputs]

    def on_remix(request: gr.Request) -> list[Any]:
        params = request.query_params if request else {}
        token, record_id = params.get("remix"), params.get("reuse")
        try:
            if token:
                record = studio.shared(token)
            elif record_id:
                record = studio.record(record_id, page.who(request))
            else:
                return skip
        except (StudioError, gr.Error):
            gr.Warning("this link no longer points to a record you can see (revoked, deleted or not yours)")
            return skip
        return page.settings_from(record["request"])

    def on_import(path: str | None) -> list[Any]:
        if not path:
            return skip
        try:
            stored = pngmeta.read_png_request(stored_images.uploaded(path))
        except StudioError as exc:
            raise user_error(str(exc)) from None
        gr.Info("Settings loaded from the PNG")
        return page.settings_from(stored)

    page.demo_load(on_remix, None, page.settings_outputs)
    page.panel["import_png"].upload(
        on_import, page.panel["import_png"], page.settings_outputs, api_visibility="private"
    )
