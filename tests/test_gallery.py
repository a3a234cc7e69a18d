"""The gallery routes on a plain FastAPI app over a real SQLite Store: filters in the query string, the detail view,
inputs served by content hash, POST actions (same-site only), owner scoping, and Hugging Face OAuth owners."""

from __future__ import annotations

import html
import types
from pathlib import Path

import pytest
from PIL import Image

from studio.store.store import Store, default_url

PROMPT = "a red circle in the top left on a white background"
SAME_SITE = {"Origin": "http://testserver"}


def request(prompt: str, **fields: object) -> dict:
    return {"prompt": prompt, "model": "m", "mode": "txt2img", "width": 16, "height": 16, "steps": 2, "seed": 1,
            "guidance": 3.5, "true_cfg": 1.0, "regions": [], "controls": [], "loras": [], **fields}  # fmt: skip


class Replays:
    """A stand-in for Studio.replay that records a new generation of the same request (no model needed)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def replay(self, record_id: str, owner: str | None = None) -> dict:
        record = self.store.get(record_id, owner)
        return self.store.add(request=record["request"], images=[Image.new("RGB", (16, 16), "red")], seeds=[1], timings={}, replay_of=record_id,
                              owner=owner)  # fmt: skip


def make_client(store: Store, owner_of=None):  # noqa: ANN001, ANN201
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from studio.web.gallery import register_gallery_routes
    from studio.web.share import register_share_routes

    app = FastAPI()
    studio = types.SimpleNamespace(store=store, replay=Replays(store).replay)
    register_share_routes(app, studio, None)
    register_gallery_routes(app, studio, None, owner_of=owner_of)
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def store(tmp_path: Path):
    with Store(default_url(tmp_path), tmp_path) as st:
        yield st


@pytest.fixture
def rich(store: Store) -> dict:
    """A record with a schedule, a LoRA, a painted region and a control map (inputs stored by hash)."""
    mask = store.assets.put_image(Image.new("L", (16, 16), 255))
    edges = store.assets.put_image(Image.new("RGB", (16, 16), "white"))
    req = request("a <b>castle</b> & a moat", negative_prompt="blurry", model="black-forest-labs/FLUX.1-dev",
                  schedule={"guidance": [[0, 4.0], [1, 2.0]]},
                  loras=[{"name": "pixel-art", "sha256": "ab" * 32, "weight": 0.8}],
                  regions=[{"mask": mask, "prompt": "a <i>tower</i>"}],
                  controls=[{"kind": "canny", "image": edges, "preprocess": False, "strength": 0.7, "start": 0.0,
                             "end": 0.5}])  # fmt: skip
    return store.add(request=req, images=[Image.new("RGB", (16, 16), "blue")], seeds=[1], timings={"total_s": 1.25})


def cards(page: str) -> list[str]:
    import re

    return re.findall(r'class="card" data-id="([^"]+)"', page)


def test_gallery_filters_come_from_the_query_string_and_stay_in_page_links(store: Store, rich: dict) -> None:
    plain = store.add(request=request(PROMPT), images=[Image.new("RGB", (16, 16))], seeds=[1], timings={})
    client = make_client(store)
    assert set(cards(client.get("/gallery").text)) == {plain["id"], rich["id"]}
    for query, expected in (
        ("model=black-forest-labs/FLUX.1-dev", [rich["id"]]), ("lora=PIXEL", [rich["id"]]),
        ("regions=1", [rich["id"]]), ("regions=0", [plain["id"]]), ("controls=1&regions=1", [rich["id"]]),
        ("controls=0", [plain["id"]]), ("sort=oldest", [rich["id"], plain["id"]]),
        ("from=2000-01-01&to=2000-01-31", []), ("q=castle&lora=nope", []), ("fav=1", []),
    ):  # fmt: skip
        assert cards(client.get(f"/gallery?{query}").text) == expected, query
    page = client.get("/gallery?per_page=1&lora=pixel&sort=oldest&regions=1").text
    assert 'value="pixel"' in page and '<option value="oldest" selected>' in page
    first = client.get("/gallery?per_page=1&sort=oldest").text
    assert 'href="/gallery?page=2&amp;per_page=1&amp;sort=oldest"' in first
    assert '<option value="black-forest-labs/FLUX.1-dev">FLUX.1-dev</option>' in first  # the model picker
    for bad in ("from=yesterday", "regions=maybe", "sort=random", "from=2025-02-01&to=2025-01-01"):
        resp = client.get(f"/gallery?{bad}")
        assert resp.status_code == 400 and "Traceback" not in resp.text, bad
    assert "YYYY-MM-DD" in client.get("/gallery?from=yesterday").text


def test_filter_values_are_escaped(store: Store, rich: dict) -> None:
    client = make_client(store)
    page = client.get('/gallery?lora="><script>alert(1)</script>&tag=<b>x</b>&model=<img src=x>').text
    assert "<script>alert(1)" not in page and "<b>x</b>" not in page and "<img src=x>" not in page
    assert html.escape('"><script>alert(1)</script>') in page


def test_detail_view_shows_every_setting_and_the_stored_inputs(store: Store, rich: dict) -> None:
    client = make_client(store)
    assert f'href="/gallery/{rich["id"]}"' in client.get("/gallery").text  # cards link to the detail view
    resp = client.get(f"/gallery/{rich['id']}")
    page = resp.text
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    assert html.escape("a <b>castle</b> & a moat") in page and "<b>castle</b>" not in page
    assert "<dt>Model</dt><dd>black-forest-labs/FLUX.1-dev</dd>" in page and "<dt>Total time</dt><dd>1.25 s" in page
    assert 'id="schedule"' in page and "pixel-art · weight 0.8" in page
    assert html.escape("a <i>tower</i>") in page and "canny" in page and "0.0–0.5" in page
    assert f'id="reuse" href="/?reuse={rich["id"]}"' in page and 'id="action-replay"' in page
    assert f'src="/gallery/image/{rich["id"]}/0"' in page
    for ref in (rich["request"]["regions"][0]["mask"], rich["request"]["controls"][0]["image"]):
        digest = ref.removeprefix("sha256:")
        assert f"/gallery/{rich['id']}/input/{digest}" in page
        got = client.get(f"/gallery/{rich['id']}/input/{digest}")
        assert got.status_code == 200 and got.content == store.assets.path(ref).read_bytes()


def test_inputs_are_served_only_by_hashes_this_record_references(store: Store, rich: dict, tmp_path: Path) -> None:
    other = store.assets.put_image(Image.new("RGB", (16, 16), "green")).removeprefix("sha256:")
    plain = store.add(request=request(PROMPT), images=[Image.new("RGB", (16, 16))], seeds=[1], timings={})
    mask = rich["request"]["regions"][0]["mask"].removeprefix("sha256:")
    client = make_client(store)
    for path in (
        f"/gallery/{rich['id']}/input/{other}",  # stored, but not this record's
        f"/gallery/{plain['id']}/input/{mask}",  # another record's input
        f"/gallery/{rich['id']}/input/../studio.db", f"/gallery/{rich['id']}/input/%2e%2e%2fstudio.db",
        f"/gallery/{rich['id']}/input/{mask[:-1]}", f"/gallery/{rich['id']}/input/{mask.upper()}",
        f"/gallery/nope/input/{mask}", "/gallery/../studio.db", "/gallery/%2e%2e", "/gallery/image",
    ):  # fmt: skip
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert not resp.content.startswith(b"\x89PNG") and b"SQLite" not in resp.content, path


def test_actions_favourite_tag_share_revoke_replay_delete(store: Store, rich: dict) -> None:
    client = make_client(store)
    rid = rich["id"]

    def post(action: str, **data: str):  # noqa: ANN202
        resp = client.post(f"/gallery/{rid}/{action}", data=data, headers=SAME_SITE)
        assert resp.status_code == 303, (action, resp.text)
        return resp.headers["location"]

    assert post("favourite") == f"/gallery/{rid}" and store.get(rid)["favourite"] is True
    assert cards(client.get("/gallery?fav=1").text) == [rid]
    post("tags", tags=" best , portrait,best ")
    assert (
        store.get(rid)["tags"] == ["best", "portrait"]
        and 'value="best, portrait"' in client.get(f"/gallery/{rid}").text
    )
    assert cards(client.get("/gallery?tag=Portrait").text) == [rid]
    post("share")
    token = store.active_share(rid)
    page = client.get(f"/gallery/{rid}").text
    assert token and f'href="/share/{token}"' in page and 'id="action-unshare"' in page
    assert client.get(f"/share/{token}").status_code == 200
    post("unshare")
    assert store.active_share(rid) is None and client.get(f"/share/{token}").status_code == 404
    replay_location = post("replay")
    replay_id = replay_location.rsplit("/", 1)[1]
    assert store.get(replay_id)["replay_of"] == rid and f"<dd>{rid}</dd>" in client.get(replay_location).text
    assert post("delete") == "/gallery" and client.get(f"/gallery/{rid}").status_code == 404
    assert client.post(f"/gallery/{rid}/favourite", headers=SAME_SITE).status_code == 404
    resp = client.post(f"/gallery/{replay_id}/tags", data={"tags": "x" * 100}, headers=SAME_SITE)
    assert resp.status_code == 400 and "too long" in resp.text


def test_actions_from_other_sites_are_refused(store: Store, rich: dict) -> None:
    client = make_client(store)
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        resp = client.post(f"/gallery/{rich['id']}/favourite", headers=headers)
        assert resp.status_code == 403, headers
    assert store.get(rich["id"])["favourite"] is False
    assert client.post(f"/gallery/{rich['id']}/favourite", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 303
    assert client.post(f"/gallery/{rich['id']}/explode", headers=SAME_SITE).status_code == 404


def test_multi_user_galleries_show_only_the_visitors_own_records(store: Store) -> None:
    def by_header(req) -> str | None:  # noqa: ANN001
        return req.headers.get("x-visitor")

    alice = store.add(
        request=request("alice's castle"), images=[Image.new("RGB", (16, 16))], seeds=[1], timings={}, owner="alice"
    )
    bob = store.add(
        request=request("bob's castle"), images=[Image.new("RGB", (16, 16))], seeds=[1], timings={}, owner="bob"
    )
    client = make_client(store, owner_of=by_header)
    as_alice, as_bob = {"x-visitor": "alice"}, {"x-visitor": "bob"}
    assert cards(client.get("/gallery?q=castle", headers=as_alice).text) == [alice["id"]]
    assert cards(client.get("/gallery", headers=as_bob).text) == [bob["id"]]
    assert cards(client.get("/gallery").text) == []  # no identity yet: nothing
    for path in (f"/gallery/{alice['id']}", f"/gallery/image/{alice['id']}/0"):
        assert client.get(path, headers=as_alice).status_code == 200
        assert client.get(path, headers=as_bob).status_code == 404
    for action in ("favourite", "share", "delete", "replay"):
        resp = client.post(f"/gallery/{alice['id']}/{action}", headers={**as_bob, **SAME_SITE})
        assert resp.status_code == 404, action
    assert store.get(alice["id"])["favourite"] is False and store.active_share(alice["id"]) is None


# ---- owners: Hugging Face OAuth, else the browser cookie -----------------------------------------------
SPACE_ENV = {"SPACE_ID": "someone/flux-studio", "OAUTH_CLIENT_ID": "cid", "OAUTH_CLIENT_SECRET": "s3cret"}


def gradio_session_cookie(session: dict, secret: str = "s3cret") -> str:
    """The cookie Gradio's OAuth SessionMiddleware (Starlette) sets for ``session``, made by Starlette itself."""
    import hashlib

    from starlette.applications import Starlette
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    def login(req):  # noqa: ANN001, ANN202
        req.session.update(session)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", login)])
    app.add_middleware(SessionMiddleware, secret_key=hashlib.sha256((secret + "-v4").encode()).hexdigest())
    return TestClient(app).get("/").cookies["session"]


def starlette_request(cookies: dict[str, str], session: dict | None = None):  # noqa: ANN201
    from starlette.requests import Request

    header = "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"cookie", header)] if cookies else []}
    if session is not None:
        scope["session"] = session
    return Request(scope)


def test_owner_is_the_hugging_face_user_with_oauth_else_the_browser_cookie() -> None:
    from studio.web import visitors

    token = visitors.new_token()
    browser = visitors.owner_key(token)  # the cookie's one-way key: the raw cookie is never an owner
    userinfo = {"oauth_info": {"userinfo": {"preferred_username": "alice-hf"}, "expires_at": 4_102_444_800}}
    cookie = gradio_session_cookie(userinfo)
    signed_in = starlette_request({visitors.COOKIE: token, "session": cookie})
    assert visitors.owner(signed_in, SPACE_ENV) == "hf:alice-hf"  # the signed Gradio session cookie
    assert visitors.owner(starlette_request({}, userinfo), SPACE_ENV) == "hf:alice-hf"  # a session in scope
    assert visitors.owner(signed_in, {}) == browser  # OAuth off (not a Space): the browser
    assert visitors.owner(signed_in, {**SPACE_ENV, "OAUTH_CLIENT_SECRET": "other"}) == browser  # forged/stale
    assert visitors.owner(starlette_request({visitors.COOKIE: token}), SPACE_ENV) == browser  # not logged in
    expired = {"oauth_info": {"userinfo": {"preferred_username": "alice-hf"}, "expires_at": 1}}
    assert visitors.owner(starlette_request({visitors.COOKIE: token}, expired), SPACE_ENV) == browser
    odd = {"oauth_info": {"userinfo": {"preferred_username": "../x y"}}}
    assert visitors.owner(starlette_request({}, odd), SPACE_ENV) is None
    gradio_like = types.SimpleNamespace(username="bob", request=starlette_request({}))
    assert visitors.owner(gradio_like, SPACE_ENV) == "hf:bob"  # gr.Request.username
    assert visitors.owner(starlette_request({visitors.COOKIE: "short"}), {}) is None


def test_cli_history_takes_the_gallery_filters(store: Store, rich: dict, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    plain = store.add(request=request(PROMPT), images=[Image.new("RGB", (16, 16))], seeds=[1], timings={})
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path), "STUDIO_THREADS": "1"}

    def history(*flags: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "studio", "history", "--json", *flags], env=env,
                              capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])  # fmt: skip
        return {"code": done.returncode, **json.loads(done.stdout)}

    found = history("--lora", "pixel", "--has-regions", "yes", "--model", "black-forest-labs/FLUX.1-dev",
                    "--has-controls", "yes", "--since", "2000-01-01", "--sort", "oldest")  # fmt: skip
    assert found["code"] == 0 and [r["id"] for r in found["records"]] == [rich["id"]] and plain["id"]
    bad = history("--until", "tomorrow")
    assert bad["code"] == 2 and "YYYY-MM-DD" in bad["error"]
