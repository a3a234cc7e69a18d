"""The history strip under the image and the actions on the current record (reuse, favourite, share, delete, edit).

The current record is the server-side ``page.selected_id`` state (set on select and after each generation); every
action looks it up again for this visitor through the ``Studio`` service — nothing the client sends is trusted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.core.errors import StudioError
from studio.ui import edit_panel, result_panel, stored_images
from studio.ui.feedback import user_error

if TYPE_CHECKING:
    from studio.ui.page import Page

NO_SELECTION = "no image yet — generate one or select one in the history strip"


def build(page: Page) -> None:
    """The strip of recent images (click one to make it the current record) and the record's details."""
    w = page.history
    with gr.Row(elem_id="history_row"):
        w["strip"] = gr.Gallery(
            label="History (click to show)",
            show_label=False,
            columns=12,
            rows=1,
            height=120,
            allow_preview=False,
            object_fit="contain",
            elem_id="history",
            scale=12,
        )
        w["refresh"] = gr.Button("↻ History", size="sm", min_width=90, scale=0, elem_id="history_refresh")
    with gr.Accordion("Record details", open=False, elem_id="record_details"):
        w["record"] = gr.JSON(label="record", elem_id="record_json")
    w["ids"] = gr.State([])


def _current(page: Page, record_id: Any, request: gr.Request) -> dict[str, Any]:
    """The visitor's current record (user errors for none / not theirs)."""
    if not record_id or not isinstance(record_id, str):
        raise user_error(NO_SELECTION)
    try:
        return page.studio.record(record_id, page.who(request))
    except StudioError as exc:
        raise user_error(str(exc)) from None


def wire(page: Page) -> None:
    """Select, refresh, reuse, favourite, share, delete, send to edit, reuse the seed."""
    studio, w, r = page.studio, page.history, page.result
    selected = page.selected_id

    def refresh(request: gr.Request) -> tuple[Any, list[str]]:
        if page.ctx.multi_user:
            try:
                page.owner(request)
            except StudioError:
                return [], []
        return page.history_items(page.who(request), page.root(request))

    def on_load(request: gr.Request) -> tuple[Any, list[str], Any, Any, Any, Any]:
        """The strip, and the newest image in the result area as the current record (as it was left)."""
        items, ids = refresh(request)
        if not ids:
            return items, ids, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            record = studio.record(ids[0], page.who(request))
        except (StudioError, gr.Error):
            return items, ids, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        status = f"Your last image · seed {record['request'].get('seed')} · id `{record['id']}`"
        return items, ids, ids[0], record, result_panel.record_html(page.root(request), record), status

    def on_select(ids: list[str], evt: gr.SelectData, request: gr.Request) -> tuple[str, Any, Any, str]:
        index = evt.index if isinstance(evt.index, int) else None
        record_id = ids[index] if isinstance(ids, list) and index is not None and 0 <= index < len(ids) else ""
        if not record_id:
            return "", None, gr.skip(), ""
        record = _current(page, record_id, request)
        took = (record.get("timings") or {}).get("total_s", 0)
        status = f"From history · {took:.2f}s · seed {record['request'].get('seed')} · id `{record['id']}`"
        return record_id, record, result_panel.record_html(page.root(request), record), status

    def on_reuse(record_id: str, request: gr.Request) -> list[Any]:
        return page.settings_from(_current(page, record_id, request)["request"])

    def on_reuse_seed(record_id: str, request: gr.Request) -> Any:
        return _current(page, record_id, request)["request"]["seed"]

    def on_favourite(record_id: str, request: gr.Request) -> tuple[Any, str]:
        _current(page, record_id, request)
        try:
            record = studio.favourite(record_id, page.who(request))
        except StudioError as exc:
            raise user_error(str(exc)) from None
        return record, "★ Favourite" if record["favourite"] else "Removed from favourites"

    def on_share(record_id: str, request: gr.Request) -> str:
        _current(page, record_id, request)
        try:
            token = studio.share(record_id, page.who(request))
        except StudioError as exc:
            raise user_error(str(exc)) from None
        raw = getattr(request, "request", None)
        base = page.ctx.share_base_url or (str(raw.base_url).rstrip("/") if raw is not None else "")
        return f"Share link: [{base}/share/{token}]({base}/share/{token}) — anyone with it can see this image"

    def on_delete(record_id: str, request: gr.Request) -> tuple[Any, list[str], str, Any, str, str]:
        _current(page, record_id, request)
        try:
            studio.delete(record_id, page.who(request))
        except StudioError as exc:
            raise user_error(str(exc)) from None
        items, ids = page.history_items(page.who(request), page.root(request))
        return items, ids, "", None, result_panel.empty_html("Deleted."), "Deleted."

    def on_send_to_edit(record_id: str, request: gr.Request) -> Any:
        """The current record's own image (looked up for this visitor) into the Edit tab."""
        try:
            image = stored_images.owned_image(studio, record_id, page.who(request))
        except StudioError as exc:
            raise user_error(str(exc)) from None
        return edit_panel.editor_value(image), "img2img", gr.Tabs(selected="edit")

    def on_use_result(record_id: str, request: gr.Request) -> Any:
        """The current record's own image (looked up for this visitor) as the Edit tab's Reference."""
        try:
            return stored_images.owned_image(studio, record_id, page.who(request))
        except StudioError as exc:
            raise user_error(str(exc)) from None

    private = {"api_visibility": "private"}
    w["strip"].select(on_select, [w["ids"]], [selected, w["record"], r["result"], r["status"]], **private)
    w["refresh"].click(refresh, None, [w["strip"], w["ids"]], **private)
    r["reuse"].click(on_reuse, [selected], page.settings_outputs, **private)
    page.panel["reuse_seed"].click(on_reuse_seed, [selected], page.panel["seed"], **private)
    r["favourite"].click(on_favourite, [selected], [w["record"], r["status"]], **private)
    r["share"].click(on_share, [selected], r["share_link"], **private)
    r["delete"].click(
        on_delete, [selected], [w["strip"], w["ids"], selected, w["record"], r["result"], r["status"]], **private
    )
    edit = page.ext["edit"]
    r["send_to_edit"].click(on_send_to_edit, [selected], [edit["editor"], edit["mode"], page.ext["tabs"]], **private)
    edit["reference_use_result"].click(on_use_result, [selected], edit["reference"], **private)
    page.demo_load(on_load, None, [w["strip"], w["ids"], selected, w["record"], r["result"], r["status"]])
