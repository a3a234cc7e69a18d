"""The main area: the image (or the step preview while it runs) whole and large, its status line and actions.

The image is plain HTML (``#result``) so it can be shown whole at any size: each image sits in a size container and
takes ``min(100cqw, 100cqh × aspect)`` — never cropped or stretched; small native images are upscaled with crisp
pixels. Stored images come through owner-checked URLs (``stored_images``); step previews and live/X-Y images,
which are not stored, as inline PNG data.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.ui import stored_images

if TYPE_CHECKING:
    from studio.ui.page import Page

PIXELATED_MAX_SIDE = 512  # images up to this side are upscaled with crisp pixels
EMPTY_TEXT = "Your image appears here — write a prompt or click an example, then Generate (Ctrl+Enter)."


def data_uri(image: Any) -> str:
    """A PIL image as an inline PNG ``data:`` URI (previews and images that are not stored)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(src: str, size: tuple[int, int] | None, caption: str, link: bool) -> str:
    width, height = size or (1, 1)
    ratio = width / height if width and height else 1.0
    small = " fs-pixelated" if size and max(size) <= PIXELATED_MAX_SIDE else ""
    dims = f' width="{width}" height="{height}"' if size else ""
    img = (
        f'<img src="{html.escape(src)}" alt="{html.escape(caption or "result")}"{dims} class="fs-img{small}" '
        f'style="--ar: {ratio:.6f}">'
    )
    if link:
        img = f'<a href="{html.escape(src)}" target="_blank" rel="noopener" title="open full size">{img}</a>'
    badge = f'<span class="fs-badge">{html.escape(caption)}</span>' if caption else ""
    return f'<figure class="fs-cell">{img}{badge}</figure>'


def images_html(items: list[tuple[str, tuple[int, int] | None, str]], link: bool = True, note: str = "") -> str:
    """The result area for ``(src, (width, height) or None, caption)`` items; one image fills it, several share it."""
    if not items:
        return empty_html()
    columns = math.ceil(math.sqrt(len(items)))
    cells = "".join(_cell(src, size, caption if len(items) > 1 or note else "", link) for src, size, caption in items)
    extra = f'<span class="fs-note">{html.escape(note)}</span>' if note else ""
    return f'<div class="fs-result" data-count="{len(items)}" style="--cols: {columns}">{cells}{extra}</div>'


def empty_html(text: str = EMPTY_TEXT) -> str:
    """The result area before the first image."""
    return f'<div class="fs-result fs-empty"><p>{html.escape(text)}</p></div>'


def waiting_html(ahead: int) -> str:
    """The result area while a generation waits for the model."""
    other = "generation" if ahead == 1 else "generations"
    return empty_html(f"In the queue — {ahead} {other} ahead of yours. It starts as soon as the model is free.")


def record_html(root: str, record: dict[str, Any]) -> str:
    """A stored record's images through their owner-checked URLs."""
    request = record.get("request") or {}
    size = (int(request["width"]), int(request["height"])) if request.get("width") and request.get("height") else None
    return images_html([(url, size, caption) for url, caption in stored_images.record_images(root, record)])


def pil_html(images: list[Any], captions: list[str] | None = None, note: str = "") -> str:
    """Images that are not stored (a step preview, live mode, an X/Y grid) as inline data."""
    captions = captions or [""] * len(images)
    return images_html(
        [(data_uri(img), img.size, cap) for img, cap in zip(images, captions, strict=True)], link=False, note=note
    )


def build(page: Page) -> None:
    """The result area, its status line and the record actions (wired by ``history_panel``)."""
    w = page.result
    w["result"] = gr.HTML(empty_html(), elem_id="result", js_on_load=None, min_height=384)
    with gr.Row(elem_id="result_bar", equal_height=True):
        w["status"] = gr.Markdown("", elem_id="status")
        with gr.Row(elem_id="result_actions"):
            w["reuse"] = gr.Button("Reuse", size="sm", min_width=60, elem_id="reuse")
            w["replay"] = gr.Button("Replay", size="sm", min_width=60, elem_id="replay")
            w["share"] = gr.Button("Share", size="sm", min_width=60, elem_id="share")
            w["send_to_edit"] = gr.Button("Edit", size="sm", min_width=50, elem_id="send_to_edit")
            w["favourite"] = gr.Button("★ Favourite", size="sm", min_width=60, elem_id="favourite")
            w["delete"] = gr.Button("Delete", size="sm", min_width=60, variant="stop", elem_id="delete")
    w["share_link"] = gr.Markdown("", elem_id="share_link")
