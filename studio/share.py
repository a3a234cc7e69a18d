"""Public share pages: ``/share/<token>`` (HTML with OpenGraph tags), ``/share/<token>.png`` (the image).

Routes are plain FastAPI handlers registered before Gradio is mounted. Every user string is HTML-escaped, the
only files served are those a shared record references inside the store's images folder, and anything else —
unknown, revoked, malformed or path-like tokens — is a 404 with ``Cache-Control: no-store``.
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from studio.errors import NotFound, StudioError

if TYPE_CHECKING:
    from studio.service import Studio

TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",  # on Spaces: huggingface.co (studio.web_headers)
    "X-Frame-Options": "DENY",
}
NOT_FOUND_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
main{max-width:1100px;margin:0 auto;padding:1.5rem}
a{color:#8ab4ff}
img.hero{max-width:100%;height:auto;display:block;margin:0 auto 1rem;background:#222;image-rendering:auto}
.prompt{white-space:pre-wrap;font-size:1.1rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
dt{color:#aaa}
dd{margin:0;word-break:break-word}
.actions a{margin-right:1rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:1rem}
.card{background:#1c1c1c;border-radius:6px;padding:.5rem;overflow:hidden}
.card img,.card .none{width:100%;aspect-ratio:1;object-fit:cover;background:#222;display:block}
.card .none{display:flex;align-items:center;justify-content:center;color:#888}
.card p{margin:.4rem 0 0;font-size:.85rem;overflow-wrap:anywhere}
.muted{color:#999;font-size:.8rem}
nav.pages a,nav.pages span{margin-right:1rem}
"""


def esc(value: Any) -> str:
    """``value`` as text, HTML-escaped (quotes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def html_page(title: str, body: str, head: str = "") -> str:
    """A complete HTML document; ``title`` is escaped here, ``body`` and ``head`` must already be."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>{head}<style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def error_page(status: int, message: str) -> HTMLResponse:
    """An escaped error page; never cached."""
    body = f'<h1>{status}</h1><p>{esc(message)}</p><p><a href="/">Flux Studio</a></p>'
    return HTMLResponse(html_page(f"{status} — Flux Studio", body), status_code=status, headers=NOT_FOUND_HEADERS)


def when(iso: Any) -> str:
    """``2025-01-01 12:00 UTC`` from an ISO-8601 timestamp (the text itself if it does not parse)."""
    try:
        return f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%M %Z}".strip()
    except (TypeError, ValueError):
        return str(iso)


def image_file(store: Any, record: dict[str, Any], k: int) -> Path | None:
    """The record's image ``k`` if it is a regular file inside the store's images folder, else None."""
    images = record.get("images") or []
    if not 0 <= k < len(images):
        return None
    root = Path(store.images_dir).resolve()
    path = Path(images[k]["path"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def _base_url(request: Request, share_base_url: str | None) -> str:
    """``--share-base-url`` or the scheme://host[/root] the request came to, without a trailing slash."""
    return (share_base_url or str(request.base_url)).rstrip("/")


def settings_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the main settings, unescaped."""
    req = record.get("request") or {}
    images = record.get("images") or []
    seed = images[0].get("seed") if images else req.get("seed")
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
    rows.append(("Created", when(record.get("created_at"))))
    return [(label, str(value)) for label, value in rows if value is not None]


def render_share_page(record: dict[str, Any], token: str, base: str) -> str:
    """The share page of ``record``: image, prompts, settings, OpenGraph/Twitter tags, Remix and download."""
    req = record.get("request") or {}
    prompt = str(req.get("prompt") or "")
    summary = prompt if len(prompt) <= 200 else prompt[:199] + "…"
    image_url = f"{base}/share/{token}.png"
    meta = {
        "og:type": "website",
        "og:site_name": "Flux Studio",
        "og:title": summary or "Flux Studio image",
        "og:description": summary,
        "og:url": f"{base}/share/{token}",
        "og:image": image_url,
        "og:image:type": "image/png",
        "og:image:width": req.get("width"),
        "og:image:height": req.get("height"),
        "og:image:alt": summary,
    }
    head = "".join(f'<meta property="{esc(k)}" content="{esc(v)}">' for k, v in meta.items() if v is not None)
    twitter = {"twitter:card": "summary_large_image", "twitter:title": meta["og:title"],
               "twitter:description": summary, "twitter:image": image_url}  # fmt: skip
    head += "".join(f'<meta name="{esc(k)}" content="{esc(v)}">' for k, v in twitter.items())
    parts = [
        f'<img class="hero" src="/share/{esc(token)}.png" alt="{esc(summary)}"'
        f' width="{esc(req.get("width"))}" height="{esc(req.get("height"))}">',
        f'<p class="prompt" id="prompt">{esc(prompt)}</p>',
    ]
    if req.get("prompt_2"):
        parts.append(f'<p class="prompt" id="prompt-2"><b>Prompt 2:</b> {esc(req["prompt_2"])}</p>')
    if req.get("negative_prompt"):
        parts.append(f'<p class="prompt" id="negative-prompt"><b>Negative:</b> {esc(req["negative_prompt"])}</p>')
    rows = "".join(f"<dt>{esc(label)}</dt><dd>{esc(value)}</dd>" for label, value in settings_rows(record))
    parts.append(f'<dl id="settings">{rows}</dl>')
    parts.append(
        f'<p class="actions"><a id="remix" href="/?remix={esc(token)}">Remix</a>'
        f'<a id="download" href="/share/{esc(token)}.png" download="flux-{esc(record.get("id"))}.png">'
        "Download PNG</a></p>"
    )
    return html_page(f"{summary or 'Shared image'} — Flux Studio", "".join(parts), head)


def register_share_routes(app: FastAPI, studio: Studio, share_base_url: str | None) -> None:
    """Add ``/share/<token>``, ``/share/<token>.png`` and ``/share?token=`` to ``app`` (before Gradio's mount)."""
    store = studio.store

    def resolve(token: str) -> dict[str, Any] | None:
        if not TOKEN.fullmatch(token):
            return None
        try:
            return store.resolve_share(token)
        except NotFound:
            return None

    def page(request: Request, token: str) -> Response:
        try:
            record = resolve(token)
        except StudioError as exc:
            return error_page(503, str(exc))
        if record is None:
            return error_page(404, "This share link is unknown or was revoked.")
        body = render_share_page(record, token, _base_url(request, share_base_url))
        return HTMLResponse(body, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    def png(token: str) -> Response:
        try:
            record = resolve(token)
        except StudioError as exc:
            return error_page(503, str(exc))
        path = image_file(store, record, 0) if record is not None else None
        if path is None:
            return error_page(404, "This share link is unknown or was revoked.")
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return FileResponse(path, media_type="image/png", headers=headers,
                            filename=f"flux-{record['id']}.png", content_disposition_type="inline")  # fmt: skip

    @app.get("/share", include_in_schema=False)
    def share_query(request: Request, token: str = "") -> Response:
        """``/share?token=…``: the share page, for hosts where only the query string reaches the app."""
        return page(request, token)

    @app.api_route("/share/{name:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def share_path(request: Request, name: str) -> Response:
        """``/share/<token>`` (page) or ``/share/<token>.png`` (image); anything else under /share is a 404."""
        if name.endswith(".png"):
            return png(name[: -len(".png")])
        return page(request, name)
