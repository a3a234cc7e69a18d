"""--multi-user: each browser has a private history and gallery; the API is an owner of its own."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.server import AppServer
from tests.test_app import CHROMIUM_ARGS, chromium_or_skip

PROMPT = "a blue square in the center on a yellow background"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = AppServer(tmp_path_factory.mktemp("multi"), "--multi-user")
    yield srv
    srv.close()


def test_gallery_shows_a_stranger_nothing_and_api_history_is_separate(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    made = client.predict(prompt=PROMPT, seed=1, api_name="/generate")
    records = client.predict(api_name="/history")["records"]
    assert [r["id"] for r in records] == [made["id"]] and "owner" not in records[0]
    with urllib.request.urlopen(server.url + "/gallery") as resp:  # no visitor cookie: an empty gallery
        page = resp.read().decode()
    assert 'id="empty"' in page and made["id"] not in page
    for path in (f"/gallery/{made['id']}", f"/gallery/image/{made['id']}/0"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + path)
        assert err.value.code == 404


@pytest.mark.browser
def test_two_browsers_do_not_see_each_others_work(server, tmp_path):
    executable = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        alice, bob = browser.new_context(), browser.new_context()
        a, b = alice.new_page(), bob.new_page()
        try:
            a.goto(server.url + "/")
            expect(a.locator("#prompt textarea")).to_be_editable(timeout=120_000)  # load events ran (busy machine)
            a.locator("#prompt textarea").fill(PROMPT)
            a.locator("#generate").click()
            expect(a.locator("#status")).to_contain_text("Done", timeout=60_000)
            a.reload()
            expect(a.locator("#history img").first).to_be_visible(timeout=30_000)  # alice keeps hers
            b.goto(server.url + "/")
            b.wait_for_timeout(3000)
            expect(b.locator("#history img")).to_have_count(0)  # bob sees nothing of alice's (nor the API's)
            a.goto(server.url + "/gallery?q=blue+square")
            expect(a.locator(".card")).to_have_count(1)  # alice's gallery has hers
            mine = a.locator(".card").first.get_attribute("data-id")
            a.goto(f"{server.url}/gallery/{mine}")
            expect(a.locator("#prompt")).to_contain_text("blue square")
            b.goto(server.url + "/gallery?q=blue+square")
            expect(b.locator("#empty")).to_be_visible()  # bob's gallery does not
            assert b.goto(f"{server.url}/gallery/{mine}").status == 404
        except Exception:
            a.screenshot(path=str(tmp_path / "alice.png"), full_page=True)
            b.screenshot(path=str(tmp_path / "bob.png"), full_page=True)
            raise
        finally:
            browser.close()
