"""Public share pages: ``/share/<token>`` (HTML with OpenGraph tags), ``/share/<token>.png`` (the image) and
``/share/<token>.og.png`` (the image enlarged with nearest-neighbour to ≥ 512 px on its short side, for link previews).

Routes are plain FastAPI handlers registered before Gradio is mounted. Every user string is HTML-escaped, the
only files served are those a shared record references inside the store's images folder, and anything else —
unknown, revoked, malformed or path-like tokens — is a 404 with ``Cache-Control: no-store``.
"""

from __future__ import annotations

import html
import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from PIL import Image, UnidentifiedImageError

from studio.core.errors import NotFound, StudioError
from studio.web.style import STYLE, header_html, hero_width, image_tag, whole

if TYPE_CHECKING:
    from studio.service import Studio
    from studio.store.records import Record

TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",  # on Spaces: huggingface.co (studio.web.headers)
    "X-Frame-Options": "DENY",
}
NOT_FOUND_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
OG_MIN_SIDE = 512  # the OpenGraph image's short side at least (previews want ≥ 512 px; flux-mini's are 128)
OG_MAX_SIDE = 2048  # … and its long side at most
GONE = "This share link is unknown or was revoked."


def esc(value: Any) -> str:
    """``value`` as text, HTML-escaped (quotes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def html_page(title: str, body: str, head: str = "", current: str = "") -> str:
    """A complete HTML document with the site header (``current``: the nav entry to mark, ``studio``/``gallery``);
    ``title`` is escaped here, ``body`` and ``head`` must already be."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>{head}<style>{STYLE}</style></head>"
        f"<body>{header_html(current)}<main>{body}</main></body></html>"
    )


def error_page(status: int, message: str) -> HTMLResponse:
    """An escaped error page; never cached."""
    body = f'<h1>{status}</h1><p>{esc(message)}</p><p><a href="/">Open the studio</a></p>'
    return HTMLResponse(html_page(f"{status} — Flux Studio", body), status_code=status, headers=NOT_FOUND_HEADERS)


def when(iso: Any) -> str:
    """``2025-01-01 12:00 UTC`` from an ISO-8601 timestamp (the text itself if it does not parse)."""
    try:
        return f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%M %Z}".strip()
    except (TypeError, ValueError):
        return str(iso)


def image_file(store: Any, record: Record, k: int) -> Path | None:
    """The record's image ``k`` if it is a regular file inside the store's images folder, else None."""
    if not 0 <= k < len(record.images):
        return None
    root = Path(store.images_dir).resolve()
    path = Path(record.images[k].path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def _base_url(request: Request, share_base_url: str | None) -> str:
    """``--share-base-url`` or the scheme://host[/root] the request came to, without a trailing slash."""
    return (share_base_url or str(request.base_url)).rstrip("/")


def settings_rows(record: Record) -> list[tuple[str, str]]:
    """(label, value) rows of the main settings, unescaped."""
    req = record.request
    seed = record.images[0].seed if record.images else req.get("seed")
    rows = [
        ("Model", req.get("model")),
        ("Mode", req.get("mode")),
        ("Size", f"{req.get('width')} × {req.get('height')}"),
        ("Steps", req.get("steps")),
        ("Seed", seed),
        ("Guidance", req.get("guidance")),
        ("True CFG", req.get("true_cfg")),
    ]
    if req.get("schedule"):
        rows.append(("Schedule", json.dumps(req["schedule"], separators=(",", ":"))))
    if req.get("loras"):
        rows.append(("LoRAs", ", ".join(f"{lo.get('name')} ({lo.get('weight')})" for lo in req["loras"])))
    rows.append(("Created", f"{record.created_at:%Y-%m-%d %H:%M %Z}".strip()))
    return [(label, str(value)) for label, value in rows if value is not None]


def title_from_prompt(prompt: str, limit: int = 80) -> str:
    """A page title from a prompt: its first line, whitespace collapsed, cut at a word near ``limit``, capitalised."""
    line = " ".join((prompt.strip().splitlines() or [""])[0].split())
    if len(line) > limit:
        cut = line[: limit - 1]
        line = (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2 :] else cut).rstrip(" ,;:.") + "…"
    return line[:1].upper() + line[1:]


def og_scale(width: int, height: int) -> int:
    """The whole factor that brings an image's short side to OG_MIN_SIDE (never its long side past OG_MAX_SIDE)."""
    short, long = sorted((max(1, width), max(1, height)))
    return max(1, min(-(-OG_MIN_SIDE // short), OG_MAX_SIDE // long))


def image_size(path: Path | None, record: Record) -> tuple[int, int]:
    """(width, height) of the stored image (its header only), else the request's."""
    req = record.request
    fallback = whole(req.get("width"), 128), whole(req.get("height"), 128)
    if path is None:
        return fallback
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError):
        return fallback


def og_png(path: Path) -> bytes:
    """The image at ``path`` enlarged ``og_scale`` times with nearest-neighbour (crisp pixels), as PNG bytes."""
    with Image.open(path) as im:
        im.load()
        k = og_scale(*im.size)
        image = im if im.mode in ("RGB", "RGBA", "L") else im.convert("RGBA")
        big = image.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    return buffer.getvalue()


def prompt_paragraphs(req: dict[str, Any]) -> list[str]:
    """The prompt, prompt 2 and negative prompt paragraphs (escaped here)."""
    parts = ['<p class="label">Prompt</p>', f'<p class="prompt" id="prompt">{esc(req.get("prompt") or "")}</p>']
    if req.get("prompt_2"):
        parts.append(f'<p class="prompt sub" id="prompt-2"><b>Prompt 2:</b> {esc(req["prompt_2"])}</p>')
    if req.get("negative_prompt"):
        parts.append(f'<p class="prompt sub" id="negative-prompt"><b>Negative:</b> {esc(req["negative_prompt"])}</p>')
    return parts


def render_share_page(record: Record, token: str, base: str, size: tuple[int, int] | None = None) -> str:
    """The share page of ``record``: the image large, a title from the prompt, prompts, settings, Remix and
    Download, and OpenGraph/Twitter tags whose image is ``/share/<token>.og.png`` (``size``: the stored image's)."""
    req = record.request
    prompt = str(req.get("prompt") or "")
    summary = prompt if len(prompt) <= 200 else prompt[:199] + "…"
    title = title_from_prompt(prompt) or "Shared image"
    width, height = size or image_size(None, record)
    k = og_scale(width, height)
    og_image = f"{base}/share/{token}.og.png"
    meta = {
        "og:type": "website",
        "og:site_name": "Flux Studio",
        "og:title": summary or "Flux Studio image",
        "og:description": summary,
        "og:url": f"{base}/share/{token}",
        "og:image": og_image,
        "og:image:type": "image/png",
        "og:image:width": width * k,
        "og:image:height": height * k,
        "og:image:alt": summary,
    }
    head = "".join(f'<meta property="{esc(k)}" content="{esc(v)}">' for k, v in meta.items() if v is not None)
    twitter = {"twitter:card": "summary_large_image", "twitter:title": meta["og:title"],
               "twitter:description": summary, "twitter:image": og_image, "twitter:image:alt": summary}  # fmt: skip
    head += "".join(f'<meta name="{esc(k)}" content="{esc(v)}">' for k, v in twitter.items())
    hero = image_tag(f"/share/{token}.png", summary, width, height)
    rows = "".join(f"<dt>{esc(label)}</dt><dd>{esc(value)}</dd>" for label, value in settings_rows(record))
    info = [
        f'<h1 id="title">{esc(title)}</h1>',
        *prompt_paragraphs(req),
        f'<div class="actions"><a class="btn primary" id="remix" href="/?remix={esc(token)}">Remix</a>'
        f'<a class="btn" id="download" href="/share/{esc(token)}.png" download="flux-{esc(record.id)}.png">'
        "Download PNG</a></div>",
        f'<dl id="settings">{rows}</dl>',
        '<p class="muted">Made with Flux Studio. <b>Remix</b> opens the studio with these settings.</p>',
    ]
    body = (f'<div class="layout" style="--hero-w:{hero_width(width, height)}px"><div class="stage">{hero}</div>'
            f'<div class="info">{"".join(info)}</div></div>')  # fmt: skip
    return html_page(f"{title} — Flux Studio", body, head)


def register_share_routes(app: FastAPI, studio: Studio, share_base_url: str | None) -> None:
    """Add ``/share/<token>``, ``/share/<token>.png``, ``/share/<token>.og.png`` and ``/share?token=`` to ``app``
    (before Gradio's mount)."""
    store = studio.store

    def resolve(token: str) -> Record | None:
        if not TOKEN.fullmatch(token):
            return None
        try:
            return store.resolve_share(token)
        except NotFound:
            return None

    def shared(token: str) -> tuple[Record, Path | None] | Response:
        """(record, its first image file) of a live share, or the error page to answer instead."""
        try:
            record = resolve(token)
        except StudioError as exc:
            return error_page(503, str(exc))
        if record is None:
            return error_page(404, GONE)
        return record, image_file(store, record, 0)

    def shared_file(token: str) -> tuple[Record, Path] | Response:
        """(record, image file) of a live share that has an image, or the error page to answer instead."""
        found = shared(token)
        if isinstance(found, Response):
            return found
        return found if found[1] is not None else error_page(404, GONE)

    def page(request: Request, token: str) -> Response:
        found = shared(token)
        if isinstance(found, Response):
            return found
        record, path = found
        body = render_share_page(record, token, _base_url(request, share_base_url), image_size(path, record))
        return HTMLResponse(body, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    def png(token: str) -> Response:
        found = shared_file(token)
        if isinstance(found, Response):
            return found
        record, path = found
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return FileResponse(path, media_type="image/png", headers=headers,
                            filename=f"flux-{record.id}.png", content_disposition_type="inline")  # fmt: skip

    def og(token: str) -> Response:
        """The OpenGraph image: the shared image enlarged (nearest) to OG_MIN_SIDE on its short side."""
        found = shared_file(token)
        if isinstance(found, Response):
            return found
        record, path = found
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        if og_scale(*image_size(path, record)) == 1:
            return FileResponse(path, media_type="image/png", headers=headers)
        try:
            data = og_png(path)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
            return error_page(404, GONE)
        return Response(data, media_type="image/png", headers=headers)

    @app.get("/share", include_in_schema=False)
    def share_query(request: Request, token: str = "") -> Response:
        """``/share?token=…``: the share page, for hosts where only the query string reaches the app."""
        return page(request, token)

    @app.api_route("/share/{name:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def share_path(request: Request, name: str) -> Response:
        """``/share/<token>`` (page), ``/share/<token>.png`` (the image), ``/share/<token>.og.png`` (its OpenGraph
        size); anything else under /share is a 404."""
        if name.endswith(".og.png"):
            return og(name[: -len(".og.png")])
        if name.endswith(".png"):
            return png(name[: -len(".png")])
        return page(request, name)
