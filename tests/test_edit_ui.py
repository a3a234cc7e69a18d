"""The Edit tab: send a result to img2img, then inpaint a painted area, in a real browser; and its pure helpers."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.errors import InvalidRequest
from studio.ui.edit_panel import edit_fields
from tests.test_app import PROMPT, browser_page, latest_records, paint_stroke, server  # noqa: F401  (server is a fixture)


def _put(store: list):
    def put(image):
        store.append(image)
        return f"sha256:{len(store):064x}"

    return put


def test_edit_fields_off_img2img_inpaint_and_clear_errors():
    stored: list = []
    background = np.zeros((32, 32, 4), np.uint8)
    background[..., 3] = 255
    assert edit_fields("off", {"background": background}, 0.5, _put(stored)) == {}
    fields = edit_fields("img2img", {"background": background, "layers": []}, 0.4, _put(stored))
    assert fields["mode"] == "img2img" and fields["strength"] == 0.4 and fields["init_image"].startswith("sha256:")
    layer = np.zeros((32, 32, 4), np.uint8)
    layer[8:16, 8:16] = 255
    fields = edit_fields("inpaint", {"background": background, "layers": [layer]}, 0.9, _put(stored))
    mask = np.asarray(stored[-1])
    assert fields["mode"] == "inpaint" and mask[10, 10] == 255 and mask[0, 0] == 0
    with pytest.raises(InvalidRequest, match="needs an init image"):
        edit_fields("img2img", {"background": None, "layers": []}, 0.5, _put(stored))
    with pytest.raises(InvalidRequest, match="needs a mask"):
        edit_fields("inpaint", {"background": background, "layers": []}, 0.5, _put(stored))


@pytest.mark.browser
def test_browser_send_result_to_img2img_then_inpaint(server, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    with browser_page(tmp_path, {"width": 1400, "height": 1400}) as page:
        page.goto(server.url + "/")
        page.locator("#prompt textarea").fill(PROMPT)
        page.locator("#seed input").fill("3")
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
        first = latest_records(server, 1)[0]

        page.locator("#send_to_edit").click()
        expect(page.get_by_role("tab", name="Edit", exact=True)).to_have_attribute(
            "aria-selected", "true", timeout=10_000
        )
        expect(page.locator("#edit_mode input[value=img2img]")).to_be_checked(timeout=10_000)
        expect(page.locator("#edit_editor canvas").first).to_be_visible(timeout=10_000)
        page.wait_for_timeout(1000)
        page.locator("#generate").click()
        expect(page.locator("#status")).not_to_contain_text(first["id"], timeout=60_000)
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
        img2img = latest_records(server, 1)[0]

        page.locator("#edit_mode").get_by_text("inpaint").click()
        paint_stroke(page, page.locator("#edit_editor"), [(0.4, 0.4)] + [(0.4 + 0.02 * t, 0.45) for t in range(8)])
        page.wait_for_timeout(1000)
        page.locator("#generate").click()
        expect(page.locator("#status")).not_to_contain_text(img2img["id"], timeout=60_000)
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
        inpaint = latest_records(server, 1)[0]

        page.goto(server.url + f"/?reuse={first['id']}")  # the gallery detail page's "Reuse settings" link
        expect(page.locator("#prompt textarea")).to_have_value(PROMPT, timeout=30_000)
        expect(page.locator("#seed input")).to_have_value("3")
    assert img2img["request"]["mode"] == "img2img" and img2img["request"]["init_image"].startswith("sha256:")
    assert img2img["request"]["strength"] == pytest.approx(0.6)
    assert inpaint["request"]["mode"] == "inpaint" and inpaint["request"]["mask"].startswith("sha256:")
    assert inpaint["request"]["init_image"] == img2img["request"]["init_image"]
