"""The gallery page: ``/gallery?q=&page=&per_page=`` (server-rendered grid) and ``/gallery/image/<id>/<k>``.

No JavaScript: a search form, a grid of records (thumbnail, prompt, date, status) and page links. With
``--auth user:pass`` both routes require HTTP Basic auth with the same credentials (Gradio's own login covers
only the Gradio routes).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from studio.errors import NotFound, StudioError
from studio.share import SECURITY_HEADERS, error_page, esc, html_page, image_file, when

if TYPE_CHECKING:
    from studio.service import Studio

PER_PAGE = 48
MAX_PER_PAGE = 200
MAX_PAGE = 1_000_000
RECORD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
IMAGE_INDEX = re.compile(r"[0-9]{1,4}")


class AuthRequired(Exception):
    """Raised by the Basic-auth dependency; answered with a 401 and a Basic challenge."""


def _whole(text: str | None, default: int, low: int, high: int) -> int:
    """``text`` as an int clamped to [low, high]; ``default`` when missing or not a number."""
    try:
        value = int(text) if text is not None and text.strip() else default
    except ValueError:
        value = default
    return max(low, min(high, value))


def basic_auth(auth: tuple[str, str] | None) -> Callable[..., None]:
    """A dependency that checks HTTP Basic credentials against ``auth`` (a no-op when ``auth`` is None)."""
    security = HTTPBasic(auto_error=False, realm="Flux Studio")

    def check(credentials: HTTPBasicCredentials | None = Depends(security)) -> None:
        if auth is None:
            return
        if credentials is None:
            raise AuthRequired
        user_ok = secrets.compare_digest(credentials.username.encode(), auth[0].encode())
        pass_ok = secrets.compare_digest(credentials.password.encode(), auth[1].encode())
        if not (user_ok & pass_ok):
            raise AuthRequired

    return check


def _card(record: dict[str, Any]) -> str:
    """One grid cell: thumbnail (or a placeholder), prompt, date and status."""
    rid = esc(record["id"])
    req = record.get("request") or {}
    prompt = str(req.get("prompt") or "")
    if record.get("images"):
        src = f"/gallery/image/{rid}/0"
        thumb = (f'<a href="{src}"><img src="{src}" alt="{esc(prompt[:200])}" loading="lazy" decoding="async"'
                 f' width="{esc(req.get("width"))}" height="{esc(req.get("height"))}"></a>')  # fmt: skip
    else:
        thumb = '<div class="none">no image</div>'
    return (
        f'<div class="card" data-id="{rid}">{thumb}<p class="prompt">{esc(prompt)}</p>'
        f'<p class="muted"><time datetime="{esc(record.get("created_at"))}">{esc(when(record.get("created_at")))}'
        f'</time> · <span class="status">{esc(record.get("status"))}</span>'
        f" · {len(record.get('images') or [])} image(s)</p></div>"
    )


def _pages(query: str, page: int, per_page: int, total: int, where: str, filters: dict[str, str]) -> str:
    """The pagination bar (``where`` = top/bottom): total count, previous/next links."""
    last = max(1, -(-total // per_page))

    def link(target: int, label: str, rel: str) -> str:
        pairs = (("q", query), ("page", target), ("per_page", per_page), *filters.items())
        params = urlencode({k: v for k, v in pairs if v != ""})
        return f'<a rel="{rel}" href="/gallery?{esc(params)}">{label}</a>'

    parts = [f'<span class="total">{total} record{"" if total == 1 else "s"}</span>',
             f'<span class="page">page {page} of {last}</span>']  # fmt: skip
    if page > 1:
        parts.append(link(min(page - 1, last), "← newer", "prev"))
    if page < last:
        parts.append(link(page + 1, "older →", "next"))
    return f'<nav class="pages" id="pages-{where}">{"".join(parts)}</nav>'


def render_gallery(
    records: list[dict[str, Any]], total: int, query: str, page: int, per_page: int,
    filters: dict[str, str] | None = None,
) -> str:
    """The whole gallery page."""
    filters = filters or {}
    statuses = "".join(
        f'<option value="{v}"{" selected" if filters.get("status", "") == v else ""}>{label}</option>'
        for v, label in (("", "any status"), ("done", "done"), ("cancelled", "cancelled"), ("failed", "failed"))
    )
    checked = " checked" if filters.get("fav") == "1" else ""
    form = (
        '<form method="get" action="/gallery" role="search">'
        f'<input type="search" name="q" value="{esc(query)}" placeholder="search prompts" aria-label="search">'
        f'<input type="hidden" name="per_page" value="{per_page}"> '
        f'<select name="status" aria-label="status">{statuses}</select> '
        f'<label><input type="checkbox" name="fav" value="1"{checked}> favourites</label> '
        '<button type="submit">Search</button></form>'
    )
    grid = "".join(_card(r) for r in records) or '<p id="empty">No records here.</p>'
    top, bottom = (_pages(query, page, per_page, total, where, filters) for where in ("top", "bottom"))
    body = f'<h1>Gallery</h1><p><a href="/">← Studio</a></p>{form}{top}<div class="grid">{grid}</div>{bottom}'
    return html_page("Gallery — Flux Studio", body)


def register_gallery_routes(app: FastAPI, studio: Studio, auth: tuple[str, str] | None = None) -> None:
    """Add ``/gallery`` and ``/gallery/image/<id>/<k>`` to ``app`` (before Gradio's mount)."""
    store = studio.store
    guard = [Depends(basic_auth(auth))]

    @app.exception_handler(AuthRequired)
    def _challenge(_request: Any, _exc: AuthRequired) -> Response:
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-store", "WWW-Authenticate": 'Basic realm="Flux Studio"'}
        body = html_page("401 — Flux Studio", "<h1>401</h1><p>Log in with the studio's user and password.</p>")
        return HTMLResponse(body, status_code=401, headers=headers)

    @app.get("/gallery", dependencies=guard, include_in_schema=False)
    def gallery(
        q: str = "", page: str | None = None, per_page: str | None = None, status: str = "", fav: str = ""
    ) -> Response:
        """Records newest first, filtered by a prompt substring, status and favourites, ``per_page`` to a page."""
        size = _whole(per_page, PER_PAGE, 1, MAX_PER_PAGE)
        number = _whole(page, 1, 1, MAX_PAGE)
        filters = {"status": status, "fav": "1" if fav == "1" else ""}
        try:
            records, total = store.list(search=q or None, limit=size, offset=(number - 1) * size,
                                        status=status or None, favourite=True if fav == "1" else None)
        except StudioError as exc:
            return error_page(400, str(exc))
        body = render_gallery(records, total, q, number, size, filters)
        return HTMLResponse(body, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    @app.get("/gallery/image/{rest:path}", dependencies=guard, include_in_schema=False)
    def gallery_image(rest: str) -> Response:
        """``<record_id>/<k>``: that record's image ``k``; anything else under /gallery/image is a 404."""
        record_id, _, k = rest.partition("/")
        if not RECORD_ID.fullmatch(record_id) or not IMAGE_INDEX.fullmatch(k):
            return error_page(404, "No such image.")
        try:
            record = store.get(record_id)
        except NotFound:
            return error_page(404, "No such image.")
        except StudioError as exc:
            return error_page(503, str(exc))
        path = image_file(store, record, int(k))
        if path is None:
            return error_page(404, "No such image.")
        return FileResponse(path, media_type="image/png", headers={**SECURITY_HEADERS, "Cache-Control": "private"})
