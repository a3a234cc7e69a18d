"""The gallery in a real browser (Debian Chromium) against the real app: generate, find it by a word, favourite,
share, open the link with no session (image + OpenGraph tags), remix, replay, revoke → 404."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.server import AppServer
from tests.test_app import CHROMIUM_ARGS, chromium_or_skip

PROMPT = "a green triangle in the center on a white background, zeppelin"
LOAD_MS = 120_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = AppServer(tmp_path_factory.mktemp("gallery-browser"))
    yield srv
    srv.close()


@pytest.mark.browser
def test_browser_generate_find_favourite_share_remix_replay_revoke(server, tmp_path):
    executable = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        owner = browser.new_context(viewport={"width": 1400, "height": 1300})
        page = owner.new_page()
        stranger = None
        try:
            page.goto(server.url + "/")
            # the panels stay disabled until the page's load events (remix, history) ran: slow on a busy machine
            expect(page.locator("#prompt textarea")).to_be_editable(timeout=LOAD_MS)
            page.locator("#prompt textarea").fill(PROMPT)
            page.locator("#seed input").fill("7")
            page.locator("#generate").click()
            expect(page.locator("#status")).to_contain_text("Done", timeout=90_000)

            page.goto(server.url + "/gallery")  # find it by searching a word of the prompt
            page.locator('input[name="q"]').fill("ZEPPELIN")
            page.locator('#filters button[type="submit"]').click()
            expect(page.locator(".card")).to_have_count(1)
            record_id = page.locator(".card").first.get_attribute("data-id")
            page.locator(".card a").first.click()
            page.wait_for_url(f"**/gallery/{record_id}")
            expect(page.locator("#settings")).to_contain_text("Seed")
            assert page.locator("img.hero").evaluate("img => img.complete && img.naturalWidth") > 0

            page.locator("#action-favourite").click()  # favourite
            expect(page.locator("#prompt")).to_contain_text("★")
            page.goto(server.url + "/gallery?fav=1")
            expect(page.locator(f'.card[data-id="{record_id}"]')).to_have_count(1)

            page.goto(f"{server.url}/gallery/{record_id}")  # share
            page.locator("#action-share").click()
            expect(page.locator("#share-link a")).to_be_visible()
            share_path = page.locator("#share-link a").get_attribute("href")
            share_url = server.url + share_path

            stranger = browser.new_context()  # a fresh browser: no cookies, no session
            other = stranger.new_page()
            assert other.goto(share_url).status == 200
            expect(other.locator("#prompt")).to_contain_text("zeppelin")
            assert other.locator("img.hero").evaluate("img => img.complete && img.naturalWidth") > 0
            og_image = other.locator('meta[property="og:image"]').get_attribute("content")
            assert og_image == f"{share_url}.og.png"
            assert other.locator('meta[name="twitter:card"]').get_attribute("content") == "summary_large_image"
            with urllib.request.urlopen(og_image) as resp:
                assert resp.headers["Content-Type"] == "image/png" and resp.read(8) == b"\x89PNG\r\n\x1a\n"
            assert other.goto(f"{server.url}/gallery/{record_id}").status == 200  # single-user: one gallery

            other.goto(share_url)
            other.locator("#remix").click()  # the studio opens with the record's settings
            expect(other.locator("#prompt textarea")).to_have_value(PROMPT, timeout=LOAD_MS)
            expect(other.locator("#seed input")).to_have_value("7")

            page.goto(f"{server.url}/gallery/{record_id}")  # replay: a new record of the same request
            page.locator("#action-replay").click()
            page.wait_for_url(lambda url: record_id not in url and "/gallery/" in url, timeout=90_000)
            expect(page.locator("#settings")).to_contain_text(record_id)  # "Replay of"

            page.goto(f"{server.url}/gallery/{record_id}")  # revoke: the link and its image are gone
            page.locator("#action-unshare").click()
            expect(page.locator("#action-share")).to_be_visible()
            assert other.goto(share_url).status == 404
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(og_image)
            assert err.value.code == 404
        except Exception:
            page.screenshot(path=str(tmp_path / "owner.png"), full_page=True)
            raise
        finally:
            browser.close()
