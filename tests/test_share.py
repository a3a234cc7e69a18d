"""Share links and the gallery page: public /share pages and PNGs, path safety, escaping, search, pagination, auth.

One real app (``python app.py --auth u:p``) on the embedded model for the module; records are made through
gradio_client and shared through a second Store on the same SQLite file (WAL), as the CLI does.
"""

from __future__ import annotations

import html
import http.client
import re
import types
from base64 import b64encode
from pathlib import Path

import pytest

from tests.server import AppServer
from tests.test_app import CHROMIUM_ARGS, chromium_or_skip

PROMPT = "a red circle in the top left on a white background"
XSS_PROMPT = '<script>alert(1)</script> a blue square "in the center" & <b>bold</b>'
USER, PASSWORD = "u", "p"
CREDENTIALS = {"Authorization": "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def get(server: AppServer, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """GET ``path`` exactly as written (no client-side normalisation of ``..`` or ``%2f``); body is read."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    resp.body = resp.read()  # type: ignore[attr-defined]
    conn.close()
    return resp


def text(resp: http.client.HTTPResponse) -> str:
    return resp.body.decode()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("share-data")


@pytest.fixture(scope="module")
def server(data_dir):
    srv = AppServer(data_dir, "--auth", f"{USER}:{PASSWORD}")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def store(server, data_dir):
    """A second Store on the server's database, like ``python -m studio share`` uses."""
    from studio.store.store import Store, default_url

    st = Store(default_url(data_dir), data_dir)
    yield st
    st.close()


@pytest.fixture(scope="module")
def records(server) -> dict[str, dict]:
    """Two finished generations made through the Gradio API: a plain prompt and one full of HTML."""
    from gradio_client import Client

    client = Client(server.url, auth=(USER, PASSWORD), verbose=False)
    plain = client.predict(prompt=PROMPT, seed=3, api_name="/generate")
    xss = client.predict(prompt=XSS_PROMPT, negative_prompt="<img src=x onerror=alert(2)>", seed=4,
                         api_name="/generate")  # fmt: skip
    return {"plain": plain, "xss": xss}


# ---- /share ---------------------------------------------------------------------------------------------
def test_share_page_shows_prompt_settings_absolute_og_image_and_remix(server, store, records):
    record = records["plain"]
    token = store.share(record["id"])
    resp = get(server, f"/share/{token}")
    page = text(resp)
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/html")
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    assert PROMPT in page
    assert f'<meta property="og:image" content="{server.url}/share/{token}.og.png">' in page
    assert f'<meta name="twitter:image" content="{server.url}/share/{token}.og.png">' in page
    assert '<meta property="og:image:width" content="512">' in page
    assert f'href="/?remix={token}"' in page and ">Remix</a>" in page
    assert f'href="/share/{token}.png" download=' in page
    settings = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page))
    assert settings["Seed"] == "3" and settings["Size"] == "128 × 128" and settings["Model"].endswith("flux-mini")
    assert {"Steps", "Guidance", "True CFG"} <= settings.keys()
    alias = get(server, f"/share?token={token}")
    assert alias.status == 200 and text(alias) == page


def test_share_png_is_the_exact_file_with_its_metadata(server, store, records):
    record = records["plain"]
    token = store.share(record["id"])
    resp = get(server, f"/share/{token}.png")
    expected = Path(record["images"][0]).read_bytes()
    assert resp.status == 200 and resp.getheader("Content-Type") == "image/png"
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    assert resp.body == expected and b"flux_studio" in resp.body  # type: ignore[attr-defined]


def test_og_image_is_the_generated_image_enlarged_nearest_and_gone_after_revoke(server, store, records):
    import io

    import numpy as np
    from PIL import Image

    token = store.share(records["plain"]["id"])
    page = text(get(server, f"/share/{token}"))
    og_url = re.search(r'<meta property="og:image" content="([^"]+)">', page)[1]
    assert og_url == f"{server.url}/share/{token}.og.png"
    resp = get(server, og_url.removeprefix(server.url))
    assert resp.status == 200 and resp.getheader("Content-Type") == "image/png"
    assert resp.getheader("X-Content-Type-Options") == "nosniff" and resp.getheader("Cache-Control") == "no-cache"
    big = np.asarray(Image.open(io.BytesIO(resp.body)).convert("RGB"))  # type: ignore[attr-defined]
    small = np.asarray(Image.open(records["plain"]["images"][0]).convert("RGB"))
    assert big.shape[:2] == (512, 512) and np.array_equal(big, small.repeat(4, axis=0).repeat(4, axis=1))
    store.unshare(token)
    gone = get(server, f"/share/{token}.og.png")
    assert gone.status == 404 and gone.getheader("Cache-Control") == "no-store"
    assert not gone.body.startswith(b"\x89PNG")  # type: ignore[attr-defined]


def test_revoked_token_is_404_for_page_and_png(server, store, records):
    record_id = records["plain"]["id"]
    token = store.share(record_id)
    assert get(server, f"/share/{token}.png").status == 200
    store.unshare(token)
    for path in (f"/share/{token}", f"/share/{token}.png", f"/share?token={token}"):
        resp = get(server, path)
        assert resp.status == 404, path
        assert resp.getheader("Cache-Control") == "no-store" and resp.getheader("X-Content-Type-Options") == "nosniff"
        assert PROMPT not in text(resp)
    fresh = store.share(record_id)
    assert fresh != token and get(server, f"/share/{fresh}").status == 200


def test_unknown_malformed_and_path_like_tokens_are_404(server, store, records):
    record_id = records["plain"]["id"]
    store.share(record_id)
    paths = [
        "/share/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/share/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.png",
        "/share/../etc/passwd",
        "/share/../studio.db",
        "/share/%2e%2e%2fetc%2fpasswd",
        "/share/%2e%2e%2f%2e%2e%2fetc%2fpasswd.png",
        "/share/..%2Fstudio.db",
        "/share/..%2Fimages%2F" + record_id + "-0.png",
        "/share//etc/passwd",
        "/share/%2Fetc%2Fpasswd.png",
        f"/share/{record_id}",
        f"/share/{record_id}.png",
        "/share/" + "a" * 200,
        "/share/" + "a" * 200 + ".png",
        "/share/",
        "/share",
        "/share?token=../studio.db",
        "/share?token=" + "a" * 200,
    ]
    for path in paths:
        resp = get(server, path)
        assert resp.status == 404, path
        assert resp.getheader("Cache-Control") == "no-store", path
        assert not resp.body.startswith(b"\x89PNG") and b"SQLite" not in resp.body, path  # type: ignore[attr-defined]


def test_script_in_prompt_is_escaped_in_share_page_and_gallery(server, store, records):
    token = store.share(records["xss"]["id"])
    page = text(get(server, f"/share/{token}"))
    gallery = text(get(server, "/gallery?q=blue+square", headers=CREDENTIALS))
    for raw in (page, gallery):
        assert "<script" not in raw and "<b>bold</b>" not in raw and "<img src=x" not in raw
        assert html.escape(XSS_PROMPT) in raw
    assert html.escape("<img src=x onerror=alert(2)>") in page


def loaded_width(page, image) -> int:
    """The natural width of ``image`` once the browser has loaded it (gallery cards load lazily)."""
    image.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=15_000)
    return image.evaluate("img => img.naturalWidth")


@pytest.mark.browser
def test_browser_share_page_and_gallery_run_no_script_from_prompts(server, store, records, tmp_path):
    executable = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    token = store.share(records["xss"]["id"])
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        try:
            page.goto(f"{server.url}/share/{token}", wait_until="load")
            expect(page.locator("#prompt")).to_contain_text("<script>alert(1)</script>")
            assert loaded_width(page, page.locator("img.hero")) == 128
            expect(page.locator("#remix")).to_have_attribute("href", f"/?remix={token}")
            page.goto(f"{server.url}/gallery?q=blue+square", wait_until="load")
            expect(page.locator(".card .prompt").first).to_contain_text("<b>bold</b>")
            assert loaded_width(page, page.locator(".card img").first) == 128  # lazy-loaded: waited for
            page.wait_for_timeout(500)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            browser.close()
    assert dialogs == []


# ---- /gallery -------------------------------------------------------------------------------------------
def test_gallery_lists_searches_and_paginates(server, store, records):
    total = store.list()[1]
    ids = {r["id"] for r in records.values()}
    page = text(get(server, "/gallery", headers=CREDENTIALS))
    assert all(f'data-id="{i}"' in page for i in ids) and f"{total} records" in page
    assert f"/gallery/image/{records['plain']['id']}/0" in page and PROMPT in page

    narrowed = text(get(server, "/gallery?q=RED+circle", headers=CREDENTIALS))
    assert f'data-id="{records["plain"]["id"]}"' in narrowed and f'data-id="{records["xss"]["id"]}"' not in narrowed
    assert narrowed.count('class="card"') == store.list(search="red circle")[1]

    first = text(get(server, "/gallery?per_page=1", headers=CREDENTIALS))
    second = text(get(server, "/gallery?per_page=1&page=2", headers=CREDENTIALS))
    for number, body in ((1, first), (2, second)):
        assert body.count('class="card"') == 1
        assert f'<span class="total">{total} records</span><span class="page">page {number} of {total}</span>' in body
    assert re.search(r'data-id="([^"]+)"', first)[1] != re.search(r'data-id="([^"]+)"', second)[1]
    assert 'rel="next" href="/gallery?page=2&amp;per_page=1"' in first
    beyond = text(get(server, "/gallery?page=999&per_page=nonsense", headers=CREDENTIALS))
    assert 'id="empty"' in beyond and f"{total} records" in beyond


def test_gallery_image_serves_record_files_only(server, records):
    record = records["plain"]
    resp = get(server, f"/gallery/image/{record['id']}/0", headers=CREDENTIALS)
    assert resp.status == 200 and resp.getheader("Content-Type") == "image/png"
    assert resp.body == Path(record["images"][0]).read_bytes()  # type: ignore[attr-defined]
    for path in [
        "/gallery/image/../../x",
        "/gallery/image/../studio.db",
        "/gallery/image/%2e%2e/%2e%2e/studio.db",
        f"/gallery/image/{record['id']}/1",
        f"/gallery/image/{record['id']}/-1",
        f"/gallery/image/{record['id']}/0/../../../studio.db",
        f"/gallery/image/{record['id']}-0.png/0",
        "/gallery/image/" + "a" * 200 + "/0",
        "/gallery/image/images/0",
    ]:
        resp = get(server, path, headers=CREDENTIALS)
        assert resp.status == 404, path
        assert not resp.body.startswith(b"\x89PNG") and b"SQLite" not in resp.body, path  # type: ignore[attr-defined]


def test_auth_guards_gallery_but_share_and_healthz_stay_public(server, store, records):
    record_id = records["plain"]["id"]
    wrong = {"Authorization": "Basic " + b64encode(b"u:wrong").decode()}
    for path in ("/gallery", f"/gallery/image/{record_id}/0"):
        for headers in (None, wrong):
            resp = get(server, path, headers=headers)
            assert resp.status == 401, (path, headers)
            assert resp.getheader("WWW-Authenticate", "").startswith("Basic")
        assert get(server, path, headers=CREDENTIALS).status == 200
    token = store.share(record_id)
    assert get(server, f"/share/{token}").status == 200
    assert get(server, f"/share/{token}.png").status == 200
    assert get(server, "/healthz").status == 200


# ---- no server: the routes on a bare FastAPI app ----------------------------------------------------------
@pytest.fixture
def bare(tmp_path):
    """The share and gallery routes on a plain FastAPI app over a fresh Store with one shared record."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from PIL import Image

    from studio.store.store import Store, default_url
    from studio.web.gallery import register_gallery_routes
    from studio.web.share import register_share_routes

    st = Store(default_url(tmp_path), tmp_path)
    request = {"prompt": PROMPT, "model": "m", "width": 16, "height": 16, "steps": 2, "seed": 1,
               "guidance": 3.5, "true_cfg": 1.0, "schedule": {"guidance": [[0, 4.0], [1, 2.0]]}}  # fmt: skip
    record = st.add(request=request, images=[Image.new("RGB", (16, 16), "red")], seeds=[1], timings={})
    app = FastAPI()
    studio = types.SimpleNamespace(store=st)
    register_share_routes(app, studio, "https://studio.example.org/")
    register_gallery_routes(app, studio, None)
    yield TestClient(app), st, record
    st.close()


def test_share_base_url_makes_og_image_and_schedule_is_shown(bare):
    client, st, record = bare
    token = st.share(record["id"])
    page = client.get(f"/share/{token}").text
    assert f'<meta property="og:image" content="https://studio.example.org/share/{token}.og.png">' in page
    assert f'<meta property="og:url" content="https://studio.example.org/share/{token}">' in page
    assert "<dt>Schedule</dt>" in page and html.escape('{"guidance":[[0,4.0],[1,2.0]]}') in page


def test_a_record_pointing_outside_the_images_folder_is_never_served(bare, tmp_path):
    client, st, record = bare
    token = st.share(record["id"])
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    import sqlite3

    with sqlite3.connect(tmp_path / "studio.db") as db:
        db.execute("UPDATE generation SET images = ? WHERE id = ?",
                   ('[{"file": "secret.png", "sha256": "", "seed": 1}]', record["id"]))  # fmt: skip
    assert client.get(f"/share/{token}.png").status_code == 404
    assert client.get(f"/gallery/image/{record['id']}/0").status_code == 404
    assert client.get("/gallery").status_code == 200  # no auth configured
