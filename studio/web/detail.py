"""The gallery detail view ``/gallery/<id>``: the images, every setting, the stored inputs, and actions.

Inputs (region masks, control maps, init image, inpaint mask) are served by ``/gallery/<id>/input/<sha256>`` only
when that hash is referenced by this record's request — a content hash, never a path. Actions are POST forms
(``favourite``, ``tags``, ``share``, ``unshare``, ``replay``, ``delete``) that answer with a redirect; a POST
must come from this site (an allowed ``Host``, then ``Origin`` or ``Sec-Fetch-Site``), so other sites, DNS-rebinding
names included, cannot trigger them. "Reuse settings" links to ``/?reuse=<id>`` (the studio fills every panel from
the record, for its owner only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from studio.core.errors import InvalidRequest, NotFound, StudioError
from studio.web.access import RECORD_ID, owned_record
from studio.web.headers import policy_of
from studio.web.share import SECURITY_HEADERS, error_page, esc, html_page, settings_rows, title_from_prompt
from studio.web.style import hero_width, image_tag, whole

if TYPE_CHECKING:
    from studio.service import Studio
    from studio.store.records import Record

DIGEST = re.compile(r"([0-9a-f]{64})(?:\.png)?")
ACTIONS = ("favourite", "tags", "share", "unshare", "replay", "delete")
PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store", "Referrer-Policy": "same-origin"}


def input_refs(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, ``sha256:<hex>``) of every stored input the request references, in panel order."""
    refs: list[tuple[str, str]] = []
    for k, region in enumerate(request.get("regions") or []):
        refs.append((f"region {k + 1} mask", region.get("mask")))
    for k, control in enumerate(request.get("controls") or []):
        refs.append((f"control {k + 1} ({control.get('kind')})", control.get("image")))
    refs += [("init image", request.get("init_image")), ("inpaint mask", request.get("mask"))]
    refs += [(f"reference {k + 1}", ref) for k, ref in enumerate(request.get("references") or [])]
    return [(label, ref) for label, ref in refs if isinstance(ref, str) and ref.startswith("sha256:")]


def same_site(request: Request) -> bool:
    """Whether a POST came from a page of this site. The ``Host`` must be an allowed host name (not merely the one
    the browser sent: DNS rebinding), then ``Sec-Fetch-Site: same-origin`` or an ``Origin`` that is that host or a
    configured public name (``--share-base-url``, ``--allowed-hosts``; ``studio.web.headers.HostPolicy``)."""
    policy = policy_of(request)
    host = request.headers.get("host")
    if not policy.host_allowed(host):
        return False
    if request.headers.get("sec-fetch-site") == "same-origin":
        return True
    return policy.origin_allowed(request.headers.get("origin"), host)


def _dl(rows: list[tuple[str, str]], ident: str) -> str:
    items = "".join(f"<dt>{esc(label)}</dt><dd>{esc(value)}</dd>" for label, value in rows)
    return f'<dl id="{ident}">{items}</dl>'


def _extra_rows(record: Record) -> list[tuple[str, str]]:
    """Rows the share page does not show: status, batch, strength, cache, quantization, timings, replay."""
    req = record.request
    cache = req.get("cache") or {}
    total_s = record.timings.get("total_s")
    rows = [("Status", record.status), ("Batch", req.get("batch_size")), ("Strength", req.get("strength")),
            ("Cache", f"{cache.get('kind')} {cache.get('threshold') or ''}".strip() if cache else None),
            ("Quantization", req.get("quant")), ("Replay of", record.replay_of),
            ("Total time", f"{total_s:.2f} s" if total_s is not None else None), ("Error", record.error)]  # fmt: skip
    return [(label, str(value)) for label, value in rows if value not in (None, "")]


def _inputs(record: Record) -> str:
    """The stored inputs as thumbnails with captions (regions also show their prompt)."""
    req = record.request
    rid = esc(record.id)
    prompts = {f"region {k + 1} mask": r.get("prompt") for k, r in enumerate(req.get("regions") or [])}
    controls = {f"control {k + 1} ({c.get('kind')})": c for k, c in enumerate(req.get("controls") or [])}
    figures = []
    for label, ref in input_refs(req):
        digest = esc(ref.removeprefix("sha256:"))
        caption = esc(label)
        if label in prompts:
            caption += f': <span class="region-prompt">{esc(prompts[label])}</span>'
        if label in controls:
            c = controls[label]
            caption += esc(f" · strength {c.get('strength')} · {c.get('start')}–{c.get('end')}"
                           f"{' · preprocessed' if c.get('preprocess') else ' · map'}")  # fmt: skip
        figures.append(f'<figure><img src="/gallery/{rid}/input/{digest}" alt="{esc(label)}" loading="lazy">'
                       f"<figcaption>{caption}</figcaption></figure>")  # fmt: skip
    if not figures:
        return ""
    return f'<h2>Inputs</h2><div class="inputs" id="inputs">{"".join(figures)}</div>'


def _button(rid: str, action: str, label: str, extra: str = "", cls: str = "") -> str:
    style = f' class="{cls}"' if cls else ""
    return (f'<form class="inline" method="post" action="/gallery/{rid}/{action}">{extra}'
            f'<button type="submit" id="action-{action}"{style}>{esc(label)}</button></form>')  # fmt: skip


def render_detail(record: Record, share_token: str | None) -> str:
    """The detail page of ``record`` (everything escaped here): the images large beside the prompt, the actions and
    every setting; the schedule, LoRAs and stored inputs below."""
    req = record.request
    rid = esc(record.id)
    prompt = str(req.get("prompt") or "")
    width, height = whole(req.get("width"), 128), whole(req.get("height"), 128)
    count = len(record.images)
    srcs = [f"/gallery/image/{record.id}/{k}" for k in range(count)]
    images = "".join(f'<a href="{esc(src)}">{image_tag(src, prompt[:200], width, height)}</a>' for src in srcs)
    images = images or '<p class="none">no image</p>'
    tags = ", ".join(record.tags)
    fav = "★ Unfavourite" if record.favourite else "☆ Favourite"
    actions = [f'<a class="btn primary" id="reuse" href="/?reuse={rid}">Reuse settings</a>',
               _button(rid, "favourite", fav), _button(rid, "replay", "Replay")]  # fmt: skip
    if record.has_images:
        actions.append(_button(rid, "unshare", "Revoke share link") if share_token else _button(rid, "share", "Share"))
    actions.append(_button(rid, "delete", "Delete", cls="danger"))
    info = [
        f'<h1 id="title">{esc(title_from_prompt(prompt) or record.id)}</h1>',
        '<p class="label">Prompt</p>',
        f'<p class="prompt" id="prompt">{"★ " if record.favourite else ""}{esc(prompt)}</p>',
    ]
    for key, label in (("prompt_2", "Prompt 2"), ("negative_prompt", "Negative")):
        if req.get(key):
            info.append(f'<p class="prompt sub" id="{key.replace("_", "-")}"><b>{label}:</b> {esc(req[key])}</p>')
    info.append(f'<div class="actions" id="actions">{"".join(actions)}</div>')
    if share_token:
        link = f"/share/{esc(share_token)}"
        info.append(f'<p id="share-link">Shared: <a href="{link}">{link}</a> — anyone with the link can see it</p>')
    info.append(
        f'<form method="post" action="/gallery/{rid}/tags" id="tags-form"><label for="tags">Tags</label>'
        f'<input type="text" name="tags" value="{esc(tags)}" id="tags" placeholder="comma-separated">'
        '<button type="submit" id="action-tags">Save tags</button></form>'
    )
    info.append(_dl(settings_rows(record) + _extra_rows(record), "settings"))
    many = " many" if count > 1 else ""
    parts = [
        '<p class="back"><a href="/gallery">← Gallery</a></p>',
        f'<div class="layout" style="--hero-w:{hero_width(width, height)}px"><div class="stage images{many}">{images}'
        f'</div><div class="info">{"".join(info)}</div></div>',
    ]
    if req.get("schedule"):
        curves = "\n".join(f"{name}: {json.dumps(curve)}" for name, curve in req["schedule"].items() if curve)
        parts.append(f'<h2>Schedule</h2><pre id="schedule">{esc(curves)}</pre>')
    if req.get("loras"):
        rows = "".join(f"<li>{esc(lo.get('name'))} · weight {esc(lo.get('weight'))} · "
                       f"<code>{esc(str(lo.get('sha256') or '')[:12])}</code></li>" for lo in req["loras"])  # fmt: skip
        parts.append(f'<h2>LoRAs</h2><ul id="loras">{rows}</ul>')
    parts.append(_inputs(record))
    return html_page(f"{prompt[:80] or record.id} — Flux Studio", "".join(parts), current="gallery")


def register_detail_routes(
    app: FastAPI, studio: Studio, guard: list[Any], owner: Callable[[Request], str | None]
) -> None:
    """Add ``/gallery/<id>``, ``/gallery/<id>/input/<sha256>`` and ``POST /gallery/<id>/<action>``."""
    store = studio.store

    @app.get("/gallery/{record_id}", dependencies=guard, include_in_schema=False)
    def detail(request: Request, record_id: str) -> Response:
        """Everything about one record of the visitor's."""
        if not RECORD_ID.fullmatch(record_id):
            return error_page(404, "No such record.")
        try:
            record = store.get(record_id, owner=owner(request))
            token = store.active_share(record_id, owner=owner(request))
        except NotFound:
            return error_page(404, "No such record — it may have been deleted.")
        except StudioError as exc:
            return error_page(503, str(exc))
        return HTMLResponse(render_detail(record, token), headers=PAGE_HEADERS)

    @app.get("/gallery/{record_id}/input/{name}", dependencies=guard, include_in_schema=False)
    def stored_input(request: Request, record_id: str, name: str) -> Response:
        """A stored input of this record, by content hash; anything the record does not reference is a 404."""
        match = DIGEST.fullmatch(name)
        if match is None:
            return error_page(404, "No such input.")
        record = owned_record(store, record_id, owner(request), "No such input.")
        if isinstance(record, Response):
            return record
        ref = f"sha256:{match.group(1)}"
        path = store.assets.path(ref).resolve()
        referenced = ref in {r for _, r in input_refs(record.request)}
        if not referenced or not path.is_relative_to(store.assets.root.resolve()) or not path.is_file():
            return error_page(404, "No such input.")
        return FileResponse(path, media_type="image/png", headers={**SECURITY_HEADERS, "Cache-Control": "private"})

    @app.get("/gallery/{record_id}/{rest:path}", include_in_schema=False)
    def elsewhere(record_id: str, rest: str) -> Response:
        """Anything else under a record (e.g. a normalised ``input/../x``) is a 404, not a 405."""
        return error_page(404, "No such page.")

    @app.post("/gallery/{record_id}/{action}", dependencies=guard, include_in_schema=False)
    def act(request: Request, record_id: str, action: str, tags: str = Form("")) -> Response:
        """Run one action on the visitor's record, then go back to its page (or to the gallery after delete)."""
        if not same_site(request):
            return error_page(403, "This action must come from the studio's own gallery page — open it there.")
        if not RECORD_ID.fullmatch(record_id) or action not in ACTIONS:
            return error_page(404, "No such record or action.")
        visitor = owner(request)
        target = f"/gallery/{record_id}"
        try:
            if action == "favourite":
                record = store.get(record_id, owner=visitor)
                store.set_favourite(record_id, not record.favourite, owner=visitor)
            elif action == "tags":
                store.set_tags(record_id, [t for t in tags.split(",")], owner=visitor)
            elif action == "share":
                store.share(record_id, owner=visitor)
            elif action == "unshare":
                token = store.active_share(record_id, owner=visitor)
                if token is not None:
                    store.unshare(token)
            elif action == "replay":
                target = f"/gallery/{studio.replay(record_id, owner=visitor)['id']}"
            else:
                store.delete(record_id, owner=visitor)
                target = "/gallery"
        except NotFound:
            return error_page(404, "No such record — it may have been deleted.")
        except InvalidRequest as exc:
            return error_page(400, str(exc))
        except StudioError as exc:
            return error_page(503, str(exc))
        return RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)
