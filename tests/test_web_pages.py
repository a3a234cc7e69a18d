"""The server-rendered pages' look (issue 27): the share page's OpenGraph image (≥ 512 px, the stored pixels enlarged
with nearest-neighbour), one stylesheet and header on every page, and in real Chromium: the share image large and
crisp at 1440×900, fitting a 390×844 phone, gallery cards showing the whole image, the detail page's image large.

The routes run on a plain FastAPI app (with the studio's security-header middleware) over a real SQLite Store whose
images are toy-world renders, so no model is loaded. Screenshots go to the test's tmp dir and the key ones to
``/tmp/web_pages_shots/``.
"""

from __future__ import annotations

import io
import re
import shutil
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.store.store import Store, default_url
from studio.toyworld.grammar import parse_prompt
from studio.toyworld.render import render_scene
from studio.web.share import SECURITY_HEADERS, og_scale, title_from_prompt
from studio.web.style import hero_width, image_tag
from tests.server import free_port
from tests.test_app import browser_page

PROMPT = "a red circle in the top left on a white background"
WIDE = "a blue square in the top right on a black background"
TALL = "a green triangle in the bottom left on a white background"
SHOTS = Path("/tmp/web_pages_shots")
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def request(prompt: str, width: int, height: int) -> dict:
    return {"prompt": prompt, "model": "assets/models/flux-mini", "mode": "txt2img", "width": width,
            "height": height, "steps": 4, "seed": 7, "guidance": 2.0, "true_cfg": 1.0, "regions": [], "controls": [],
            "loras": []}  # fmt: skip


def toy(prompt: str, width: int, height: int) -> Image.Image:
    """A toy-world render of ``prompt`` cropped to width × height (objects touch the edges: clipping shows)."""
    image = render_scene(parse_prompt(prompt), max(width, height), seed=3).image
    return Image.fromarray(image[:height, :width])


def make_app(store: Store):  # noqa: ANN201
    from fastapi import FastAPI

    from studio.web.gallery import register_gallery_routes
    from studio.web.headers import install_security_headers
    from studio.web.share import register_share_routes

    app = FastAPI()
    install_security_headers(app)
    studio = types.SimpleNamespace(store=store, replay=None)
    register_share_routes(app, studio, None)
    register_gallery_routes(app, studio, None)
    return app


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A Store with a square, a wide and a tall record (all shared), and the pages' app on it."""
    folder = tmp_path_factory.mktemp("web-pages")
    with Store(default_url(folder), folder) as store:
        records = {}
        for name, prompt, (w, h) in (("square", PROMPT, (128, 128)), ("wide", WIDE, (128, 64)),
                                     ("tall", TALL, (64, 128))):  # fmt: skip
            record = store.add(request=request(prompt, w, h), images=[toy(prompt, w, h)], seeds=[7], timings={})
            records[name] = {**record, "token": store.share(record["id"])}
        yield types.SimpleNamespace(store=store, records=records, app=make_app(store))


@pytest.fixture(scope="module")
def client(site):
    from fastapi.testclient import TestClient

    return TestClient(site.app, base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def live(site):
    """The app served by uvicorn on a free loopback port (for the browser)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(site.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def meta(page: str, key: str) -> str:
    match = re.search(rf'<meta (?:property|name)="{re.escape(key)}" content="([^"]*)">', page)
    assert match, key
    return match[1]


def stored_pixels(site, name: str) -> np.ndarray:
    return np.asarray(Image.open(site.records[name]["images"][0]["path"]).convert("RGB"))


# ---- OpenGraph image -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["square", "wide", "tall"])
def test_og_image_is_the_stored_image_enlarged_nearest_to_512(site, client, name):
    token = site.records[name]["token"]
    page = client.get(f"/share/{token}").text
    og = meta(page, "og:image")
    assert og == f"http://127.0.0.1/share/{token}.og.png" and meta(page, "twitter:image") == og
    resp = client.get(og.removeprefix("http://127.0.0.1"))
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert resp.headers["cache-control"] == "no-cache" and resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    image = Image.open(io.BytesIO(resp.content))
    assert min(image.size) >= 512 and max(image.size) <= 2048, image.size
    assert (meta(page, "og:image:width"), meta(page, "og:image:height")) == tuple(map(str, image.size))
    small = stored_pixels(site, name)
    k = image.width // small.shape[1]
    assert k >= 4 and image.size == (small.shape[1] * k, small.shape[0] * k)
    assert np.array_equal(np.asarray(image.convert("RGB")), small.repeat(k, axis=0).repeat(k, axis=1))


def test_og_image_is_404_after_revoke_and_for_unknown_tokens(site, client):
    record = site.store.add(request=request(PROMPT, 128, 128), images=[toy(PROMPT, 128, 128)], seeds=[7], timings={})
    token = site.store.share(record["id"])
    assert client.get(f"/share/{token}.og.png").status_code == 200
    site.store.unshare(token)
    for path in (f"/share/{token}.og.png", "/share/" + "A" * 32 + ".og.png", f"/share/{record['id']}.og.png",
                 "/share/..%2Fstudio.db.og.png", "/share/.og.png"):  # fmt: skip
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert resp.headers["cache-control"] == "no-store" and not resp.content.startswith(b"\x89PNG"), path


def test_og_scale_and_sizes():
    assert og_scale(128, 128) == 4 and og_scale(128, 64) == 8 and og_scale(1024, 1024) == 1
    assert og_scale(2048, 16) == 1  # the long side is capped: never past 2048 px
    assert og_scale(512, 16) == 4
    assert hero_width(128, 128) == 640 and hero_width(64, 128) == 320 and hero_width(1024, 1024) == 768
    assert "px" in image_tag("/a.png", "x", 128, 128).split('"')[1]  # enlarged 5×: crisp pixels
    assert "px" not in image_tag("/a.png", "x", 1024, 1024).split('"')[1]  # shown smaller: smooth


def test_title_from_prompt():
    assert title_from_prompt(PROMPT) == "A red circle in the top left on a white background"
    long = "a photo of " + "very " * 40 + "large cat"
    title = title_from_prompt(long)
    assert len(title) <= 80 and title.endswith("…") and title.startswith("A photo of very")
    assert title_from_prompt("  first line\nsecond line") == "First line" and title_from_prompt("") == ""


# ---- one look, one header --------------------------------------------------------------------------------------
def test_every_page_has_the_header_and_the_shared_stylesheet(site, client):
    rid, token = site.records["square"]["id"], site.records["square"]["token"]
    pages = {path: client.get(path) for path in (f"/share/{token}", "/gallery", f"/gallery/{rid}", "/share/nope")}
    styles = set()
    for path, resp in pages.items():
        page = resp.text
        assert '<header class="fs-top">' in page and 'href="/">Studio</a>' in page, path
        assert 'href="/gallery"' in page and ">Gallery</a>" in page, path
        assert "prefers-color-scheme: dark" in page and "--fs-bg:" in page, path
        styles.add(re.search(r"<style>(.*?)</style>", page, re.S)[1])
        csp = resp.headers["content-security-policy"]
        assert "style-src 'unsafe-inline'" in csp and "frame-ancestors 'none'" in csp, path
        assert "script" not in csp and "<script" not in page, path
    assert len(styles) == 1  # one stylesheet for every page


def test_share_page_shows_title_prompt_settings_and_actions(site, client):
    token = site.records["square"]["token"]
    page = client.get(f"/share/{token}").text
    assert '<h1 id="title">A red circle in the top left on a white background</h1>' in page
    assert f'<p class="prompt" id="prompt">{PROMPT}</p>' in page
    assert f'id="remix" href="/?remix={token}">Remix</a>' in page and f'href="/share/{token}.png" download=' in page
    assert '<img class="hero px"' in page and 'style="--hero-w:640px"' in page
    assert "<dt>Seed</dt><dd>7</dd>" in page and "<dt>Size</dt><dd>128 × 128</dd>" in page


# ---- in a real browser ------------------------------------------------------------------------------------------
def shot(page, tmp_path: Path, name: str, full_page: bool = False) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=full_page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / name)
    return path


IMAGE_BOX = """img => { const r = img.getBoundingClientRect(), s = getComputedStyle(img);
    return {w: r.width, h: r.height, left: r.left, right: r.right, top: r.top, bottom: r.bottom,
            nw: img.naturalWidth, nh: img.naturalHeight, rendering: s.imageRendering, fit: s.objectFit,
            complete: img.complete}; }"""


def loaded_box(page, selector: str) -> dict:
    image = page.locator(selector).first
    image.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=15_000)
    return image.evaluate(IMAGE_BOX)


@pytest.mark.browser
def test_browser_share_page_image_is_large_and_crisp_on_desktop_and_fits_a_phone(site, live, tmp_path):
    token = site.records["square"]["token"]
    with browser_page(tmp_path, DESKTOP) as page:
        page.goto(f"{live}/share/{token}", wait_until="load")
        box = loaded_box(page, "img.hero")
        assert box["nw"] == 128 and box["w"] >= 512 and abs(box["w"] - box["h"]) < 1, box
        assert box["rendering"] == "pixelated", box
        assert box["bottom"] <= DESKTOP["height"], box  # the whole image is on the first screen
        assert page.locator("#title").is_visible() and page.locator("#remix").is_visible()
        assert page.locator("#download").is_visible()
        shot(page, tmp_path, "share_desktop.png")
        page.emulate_media(color_scheme="dark")
        dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert dark == "rgb(15, 15, 17)", dark  # Gradio's dark neutral-950
        shot(page, tmp_path, "share_desktop_dark.png")
        page.set_viewport_size(PHONE)
        page.emulate_media(color_scheme="light")
        page.goto(f"{live}/share/{token}", wait_until="load")
        box = loaded_box(page, "img.hero")
        assert box["left"] >= 0 and box["right"] <= PHONE["width"] and box["w"] >= 300, box
        assert box["rendering"] == "pixelated", box
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
        shot(page, tmp_path, "share_phone.png", full_page=True)


@pytest.mark.browser
def test_browser_gallery_cards_show_the_whole_image_and_the_detail_page_shows_it_large(site, live, tmp_path):
    with browser_page(tmp_path, DESKTOP) as page:
        page.goto(f"{live}/gallery", wait_until="load")
        cards = page.locator(".card")
        assert cards.count() >= 3
        for k in range(cards.count()):
            frame = cards.nth(k).locator(".thumb")
            box = loaded_box(page, f'.card[data-id="{cards.nth(k).get_attribute("data-id")}"] .thumb img')
            outer = frame.bounding_box()
            assert box["fit"] == "contain", box
            assert abs(box["w"] / box["h"] - box["nw"] / box["nh"]) < 0.02, box  # the box is the whole image
            assert box["left"] >= outer["x"] - 0.5 and box["right"] <= outer["x"] + outer["width"] + 0.5, box
            assert box["top"] >= outer["y"] - 0.5 and box["bottom"] <= outer["y"] + outer["height"] + 0.5, box
            assert max(box["w"], box["h"]) >= min(outer["width"], outer["height"]) - 1, box  # and fills the frame
            assert box["rendering"] == "pixelated", box
        page.evaluate("window.scrollTo(0, 0)")
        shot(page, tmp_path, "gallery_desktop.png")

        page.goto(f"{live}/gallery/{site.records['square']['id']}", wait_until="load")
        box = loaded_box(page, "img.hero")
        assert box["w"] >= 512 and box["rendering"] == "pixelated", box
        assert page.locator("#settings").is_visible() and page.locator("#action-replay").is_visible()
        shot(page, tmp_path, "detail_desktop.png")
