"""The gallery page: ``/gallery?q=&page=&per_page=&…filters`` (server-rendered grid) and ``/gallery/image/<id>/<k>``.

No JavaScript: a search and filter form (status, favourites, model, LoRA, tag, date range, has regions/controls,
sort), a grid of records (thumbnail linking to the detail view, prompt, date, status) and page links; every filter
lives in the query string. With ``--auth user:pass`` the routes require HTTP Basic auth with the same credentials
(Gradio's own login covers only the Gradio routes). In multi-user mode ``owner_of(request)`` scopes every route to
the visitor's own records. The detail view and its actions are in ``gallery_detail``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from studio.core.errors import InvalidRequest, StudioError
from studio.store.query import parse_day
from studio.store.records import iso
from studio.web.access import owned_record
from studio.web.share import SECURITY_HEADERS, error_page, esc, html_page, image_file, when
from studio.web.style import image_tag, whole

if TYPE_CHECKING:
    from studio.service import Studio
    from studio.store.records import Record

PER_PAGE = 48
MAX_PER_PAGE = 200
MAX_PAGE = 1_000_000
IMAGE_INDEX = re.compile(r"[0-9]{1,4}")
FILTER_KEYS = ("status", "fav", "model", "lora", "tag", "from", "to", "regions", "controls", "sort")
NOBODY = "!nobody"  # the owner of a multi-user visitor without an identity yet: matches no record
OwnerOf = Callable[[Request], str | None]
LoggedIn = Callable[[Request], str | None]


class AuthRequired(Exception):
    """Raised by the Basic-auth dependency; answered with a 401 and a Basic challenge."""


def _whole(text: str | None, default: int, low: int, high: int) -> int:
    """``text`` as an int clamped to [low, high]; ``default`` when missing or not a number."""
    try:
        value = int(text) if text is not None and text.strip() else default
    except ValueError:
        value = default
    return max(low, min(high, value))


def basic_auth(auth: tuple[str, str] | None, logged_in: LoggedIn | None = None) -> Callable[..., None]:
    """A dependency that checks HTTP Basic credentials against ``auth`` (a no-op when ``auth`` is None).

    ``logged_in(request)`` names the user of the studio's own (Gradio) login session: that is accepted too, so a
    user logged in to the studio sees the gallery and the studio's images without a second login.
    """
    security = HTTPBasic(auto_error=False, realm="Flux Studio")

    def check(request: Request, credentials: HTTPBasicCredentials | None = Depends(security)) -> None:
        if auth is None:
            return
        if logged_in is not None and logged_in(request):
            return
        if credentials is None:
            raise AuthRequired
        user_ok = secrets.compare_digest(credentials.username.encode(), auth[0].encode())
        pass_ok = secrets.compare_digest(credentials.password.encode(), auth[1].encode())
        if not (user_ok & pass_ok):
            raise AuthRequired

    return check


def filters_from_query(params: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(``Store.list`` keyword arguments, the normalised query values to echo into the form and page links).

    ``fav``/``regions``/``controls``: ``1`` yes, ``0`` no, empty any; ``from``/``to``: days (YYYY-MM-DD, UTC,
    both inclusive); ``sort``: ``newest`` (default) or ``oldest``. Bad values raise InvalidRequest naming the fix.
    """
    echo = {key: str(params.get(key) or "").strip() for key in FILTER_KEYS}
    kwargs: dict[str, Any] = {}
    for key, arg in (("status", "status"), ("model", "model"), ("lora", "lora"), ("tag", "tag")):
        if echo[key]:
            kwargs[arg] = echo[key]
    for key, arg in (("fav", "favourite"), ("regions", "has_regions"), ("controls", "has_controls")):
        if echo[key] not in ("", "0", "1"):
            raise InvalidRequest(f"{key}={echo[key][:20]!r} is not understood — use {key}=1, {key}=0 or leave it out")
        if echo[key]:
            kwargs[arg] = echo[key] == "1"
    if echo["from"]:
        kwargs["since"] = parse_day(echo["from"])
    if echo["to"]:
        kwargs["until"] = parse_day(echo["to"], end=True)
    if echo["sort"] and echo["sort"] != "newest":
        kwargs["sort"] = echo["sort"]
    else:
        echo["sort"] = ""
    return kwargs, echo


def _card(record: Record) -> str:
    """One grid cell: the whole image (or a placeholder) linking to the detail view, prompt, date and status."""
    rid = esc(record.id)
    req = record.request
    prompt = str(req.get("prompt") or "")
    if record.images:
        width, height = whole(req.get("width"), 128), whole(req.get("height"), 128)
        img = image_tag(f"/gallery/image/{record.id}/0", prompt[:200], width, height, "card-img", lazy=True)
        thumb = f'<a class="thumb" href="/gallery/{rid}">{img}</a>'
    else:
        thumb = f'<a class="none" href="/gallery/{rid}">no image</a>'
    star = '<span class="fav" title="favourite">★</span> ' if record.favourite else ""
    created = iso(record.created_at)
    return (
        f'<div class="card" data-id="{rid}">{thumb}<p class="prompt">{star}{esc(prompt)}</p>'
        f'<p class="muted"><time datetime="{esc(created)}">{esc(when(created))}'
        f'</time> · <span class="status">{esc(record.status)}</span>'
        f" · {len(record.images)} image(s)</p></div>"
    )


def _pages(query: str, page: int, per_page: int, total: int, where: str, filters: dict[str, str]) -> str:
    """The pagination bar (``where`` = top/bottom): total count, previous/next links."""
    last = max(1, -(-total // per_page))

    def link(target: int, label: str, rel: str) -> str:
        pairs = (("q", query), ("page", target), ("per_page", per_page), *sorted(filters.items()))
        params = urlencode({k: v for k, v in pairs if v != ""})
        return f'<a rel="{rel}" href="/gallery?{esc(params)}">{label}</a>'

    parts = [f'<span class="total">{total} record{"" if total == 1 else "s"}</span>',
             f'<span class="page">page {page} of {last}</span>']  # fmt: skip
    if page > 1:
        parts.append(link(min(page - 1, last), "← newer", "prev"))
    if page < last:
        parts.append(link(page + 1, "older →", "next"))
    return f'<nav class="pages" id="pages-{where}">{"".join(parts)}</nav>'


def _select(name: str, label: str, options: list[tuple[str, str]], current: str) -> str:
    """A ``<select>`` whose option ``current`` is selected (values and labels escaped here)."""
    opts = "".join(f'<option value="{esc(v)}"{" selected" if v == current else ""}>{esc(text)}</option>'
                   for v, text in options)  # fmt: skip
    return f'<select name="{name}" aria-label="{label}" id="f-{name}">{opts}</select> '


def _form(query: str, per_page: int, filters: dict[str, str], models: list[str]) -> str:
    """The search and filter form (GET, so every view is a link)."""
    f = filters.get
    yes_no = [("", "any"), ("1", "yes"), ("0", "no")]
    model_options = [("", "any model"), *((m, m.rsplit("/", 1)[-1] or m) for m in models)]
    if f("model") and f("model") not in models:
        model_options.append((f("model") or "", f("model") or ""))
    checked = " checked" if f("fav") == "1" else ""
    return (
        '<form method="get" action="/gallery" role="search" id="filters">'
        f'<input type="search" name="q" value="{esc(query)}" placeholder="search prompts" aria-label="search">'
        f'<input type="hidden" name="per_page" value="{per_page}"> '
        + _select(
            "status",
            "status",
            [("", "any status"), ("done", "done"), ("cancelled", "cancelled"), ("failed", "failed")],
            f("status") or "",
        )
        + f'<label><input type="checkbox" name="fav" value="1"{checked}> favourites</label> '
        + _select("model", "model", model_options, f("model") or "")
        + f'<input type="text" name="lora" value="{esc(f("lora"))}" placeholder="LoRA name" aria-label="LoRA"> '
        f'<input type="text" name="tag" value="{esc(f("tag"))}" placeholder="tag" aria-label="tag"> '
        f'<label>from <input type="date" name="from" value="{esc(f("from"))}"></label> '
        f'<label>to <input type="date" name="to" value="{esc(f("to"))}"></label> '
        + "<label>regions "
        + _select("regions", "has regions", yes_no, f("regions") or "")
        + "</label>"
        + "<label>controls "
        + _select("controls", "has controls", yes_no, f("controls") or "")
        + "</label>"
        + _select("sort", "sort", [("", "newest first"), ("oldest", "oldest first")], f("sort") or "")
        + '<button type="submit" class="primary">Search</button> <a href="/gallery">clear</a></form>'
    )


def render_gallery(
    records: list[Record],
    total: int,
    query: str,
    page: int,
    per_page: int,
    filters: dict[str, str] | None = None,
    models: list[str] | None = None,
) -> str:
    """The whole gallery page."""
    filters = filters or {}
    form = _form(query, per_page, filters, models or [])
    grid = "".join(_card(r) for r in records) or '<p id="empty">No records here.</p>'
    top, bottom = (_pages(query, page, per_page, total, where, filters) for where in ("top", "bottom"))
    body = f'<h1>Gallery</h1>{form}{top}<div class="grid">{grid}</div>{bottom}'
    return html_page("Gallery — Flux Studio", body, current="gallery")


def register_gallery_routes(
    app: FastAPI,
    studio: Studio,
    auth: tuple[str, str] | None = None,
    owner_of: OwnerOf | None = None,
    logged_in: LoggedIn | None = None,
) -> None:
    """Add ``/gallery``, ``/gallery/image/<id>/<k>`` and the detail routes to ``app`` (before Gradio's mount).

    ``owner_of`` (multi-user mode) names the visitor of a request; then every route shows only their records.
    """
    from studio.web.detail import register_detail_routes

    store = studio.store
    guard = [Depends(basic_auth(auth, logged_in))]

    def owner(request: Request) -> str | None:
        return None if owner_of is None else (owner_of(request) or NOBODY)

    @app.exception_handler(AuthRequired)
    def _challenge(_request: Any, _exc: AuthRequired) -> Response:
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-store", "WWW-Authenticate": 'Basic realm="Flux Studio"'}
        body = html_page("401 — Flux Studio", "<h1>401</h1><p>Log in with the studio's user and password.</p>")
        return HTMLResponse(body, status_code=401, headers=headers)

    @app.get("/gallery", dependencies=guard, include_in_schema=False)
    def gallery(request: Request, q: str = "", page: str | None = None, per_page: str | None = None) -> Response:
        """Records filtered by a prompt substring and the FILTER_KEYS of the query string, ``per_page`` a page."""
        size = _whole(per_page, PER_PAGE, 1, MAX_PER_PAGE)
        number = _whole(page, 1, 1, MAX_PAGE)
        visitor = owner(request)
        try:
            kwargs, filters = filters_from_query(dict(request.query_params))
            records, total = store.list(search=q or None, limit=size, offset=(number - 1) * size, owner=visitor,
                                        **kwargs)  # fmt: skip
            models = store.models(owner=visitor)
        except InvalidRequest as exc:
            return error_page(400, str(exc))
        except StudioError as exc:
            return error_page(503, str(exc))
        body = render_gallery(records, total, q, number, size, {k: v for k, v in filters.items() if v}, models)
        return HTMLResponse(body, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    @app.get("/gallery/image/{rest:path}", dependencies=guard, include_in_schema=False)
    def gallery_image(request: Request, rest: str) -> Response:
        """``<record_id>/<k>``: that record's image ``k``; anything else under /gallery/image is a 404."""
        record_id, _, k = rest.partition("/")
        if not IMAGE_INDEX.fullmatch(k):
            return error_page(404, "No such image.")
        record = owned_record(store, record_id, owner(request), "No such image.")
        if isinstance(record, Response):
            return record
        path = image_file(store, record, int(k))
        if path is None:
            return error_page(404, "No such image.")
        return FileResponse(path, media_type="image/png", headers={**SECURITY_HEADERS, "Cache-Control": "private"})

    register_detail_routes(app, studio, guard, owner)
