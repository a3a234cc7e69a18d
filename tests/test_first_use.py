"""First use of the studio page at 1440×900 in real Chromium (issue 27): the image whole and large, previews in the
same place, Ctrl+Enter, examples, the prompt builder, regions that paint on the first try in their own colours, the
gallery link, a LoRA's recommended settings, the queue position.

Screenshots go to the test's tmp dir and the key ones to ``/tmp/first_use_shots/`` for a person to look at.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.server import AppServer
from tests.test_app import browser_page, latest_records

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1440, "height": 900}
SHOTS = Path("/tmp/first_use_shots")
PROMPT = "a red circle in the top left on a white background"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("first-use-data")
    srv = AppServer(data_dir)
    yield srv
    srv.close()


def shot(page, tmp_path: Path, name: str, locator=None) -> Path:
    """A screenshot into the test's tmp dir, copied to /tmp/first_use_shots/."""
    path = tmp_path / name
    (locator or page).screenshot(path=str(path))
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / name)
    return path


def open_studio(page, server, query: str = "") -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/" + query)
    expect(page.locator("#generate")).to_be_visible(timeout=30_000)


def result_geometry(page) -> dict:
    """The shown result image: natural size, rendered box, its frame's box and how it is drawn."""
    return page.evaluate("""() => {
        const img = document.querySelector('#result img');
        const frame = document.querySelector('#result .fs-result');
        const r = img.getBoundingClientRect(), f = frame.getBoundingClientRect(), s = getComputedStyle(img);
        return {nw: img.naturalWidth, nh: img.naturalHeight, w: r.width, h: r.height, left: r.left, top: r.top,
                right: r.right, bottom: r.bottom, fl: f.left, ft: f.top, fr: f.right, fb: f.bottom,
                fit: s.objectFit, rendering: s.imageRendering, src: img.getAttribute('src'), complete: img.complete};
    }""")


def assert_whole_large_undistorted(g: dict, min_side: float = 384) -> None:
    assert g["complete"] and g["nw"] > 0 and g["nh"] > 0, g
    assert min(g["w"], g["h"]) >= min_side, f"the image is shown at {g['w']:.0f}×{g['h']:.0f} px: {g}"
    assert abs(g["w"] / g["h"] - g["nw"] / g["nh"]) < 0.02, f"distorted: {g}"  # box keeps the natural aspect
    assert g["left"] >= g["fl"] - 1 and g["top"] >= g["ft"] - 1, f"cropped at the top/left: {g}"
    assert g["right"] <= g["fr"] + 1 and g["bottom"] <= g["fb"] + 1, f"cropped at the bottom/right: {g}"
    assert g["fit"] == "contain" and g["rendering"] == "pixelated", g


def test_result_is_whole_large_undistorted_and_the_preview_stays(server, tmp_path):
    from playwright.sync_api import expect

    with browser_page(tmp_path, VIEWPORT) as page:
        open_studio(page, server)
        page.wait_for_timeout(1500)  # the page-load events (history, remix links) settle
        shot(page, tmp_path, "first_use_start.png")
        page.locator("#prompt textarea").fill(PROMPT)
        page.locator("#steps input").fill("150")  # long enough to catch a step preview on a busy machine
        page.locator("#generate").click()
        # the step preview shows in the result area while it runs (inline data: it is not stored)
        expect(page.locator('#result img[src^="data:image/png"]')).to_be_visible(timeout=90_000)
        assert_whole_large_undistorted(result_geometry(page))
        shot(page, tmp_path, "first_use_preview.png")
        expect(page.locator("#status")).to_contain_text("Done", timeout=180_000)
        expect(page.locator('#result img[src*="/gallery/image/"]')).to_be_visible(timeout=30_000)
        page.wait_for_timeout(1500)  # the final image stays (it used to empty when the run ended)
        geometry = result_geometry(page)
        assert "/gallery/image/" in geometry["src"]
        assert_whole_large_undistorted(geometry)
        shot(page, tmp_path, "first_use_result.png")

        page.get_by_label("16:9").check()  # a wide preset at the model's pixel budget
        expect(page.locator("#width input")).to_have_value("176")
        expect(page.locator("#height input")).to_have_value("96")
        page.locator("#steps input").fill("4")
        before = latest_records(server, 1)[0]["id"]
        page.locator("#generate").click()
        expect(page.locator("#status")).not_to_contain_text(before, timeout=90_000)
        expect(page.locator("#status")).to_contain_text("Done", timeout=90_000)
        expect(page.locator('#result img[src*="/gallery/image/"]')).to_be_visible(timeout=30_000)
        page.wait_for_timeout(500)
        wide = result_geometry(page)
        assert (wide["nw"], wide["nh"]) == (176, 96)
        assert_whole_large_undistorted(wide, min_side=300)
        assert wide["w"] >= 384
        shot(page, tmp_path, "first_use_wide.png")


def test_ctrl_enter_in_the_prompt_generates(server, tmp_path):
    from playwright.sync_api import expect

    with browser_page(tmp_path, VIEWPORT) as page:
        open_studio(page, server)
        before = len(latest_records(server, 100))
        prompt = page.locator("#prompt textarea")
        prompt.fill("a green square in the center on a black background")
        prompt.press("Control+Enter")
        expect(page.locator("#status")).to_contain_text("Done", timeout=90_000)
    records = latest_records(server, 100)
    assert len(records) == before + 1
    assert records[0]["request"]["prompt"] == "a green square in the center on a black background"


def test_an_example_chip_fills_the_prompt_and_generates(server, tmp_path):
    from playwright.sync_api import expect

    from studio.toyworld.grammar import parse_prompt
    from studio.ui.prompt_guide import toy_examples

    two = next(e for e in toy_examples() if e.label == "two objects")
    with browser_page(tmp_path, VIEWPORT) as page:
        open_studio(page, server)
        chip = page.locator("#examples button", has_text="two objects")
        expect(chip).to_be_visible()
        chip.click()
        expect(page.locator("#prompt textarea")).to_have_value(two.prompt, timeout=20_000)
        expect(page.locator("#status")).to_contain_text("Done", timeout=90_000)
        expect(page.locator('#result img[src*="/gallery/image/"]')).to_be_visible(timeout=30_000)
        shot(page, tmp_path, "first_use_example.png")
    record = latest_records(server, 1)[0]
    assert record["request"]["prompt"] == two.prompt and record["request"]["true_cfg"] == 2.0
    assert len(parse_prompt(record["request"]["prompt"]).objects) == 2


def pick(page, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_the_prompt_builder_writes_a_prompt_the_toy_grammar_parses(server, tmp_path):
    from playwright.sync_api import expect

    from studio.toyworld.grammar import parse_prompt

    with browser_page(tmp_path, VIEWPORT) as page:
        open_studio(page, server)
        page.get_by_text("Prompt builder").click()
        pick(page, "#builder_colour", "blue")
        pick(page, "#builder_shape", "triangle")
        pick(page, "#builder_position", "center")
        pick(page, "#builder_background", "yellow")
        prompt = page.locator("#prompt textarea")
        expect(prompt).to_have_value("a blue triangle in the center on a yellow background", timeout=20_000)
        scene = parse_prompt(prompt.input_value())
        assert [(o.colour, o.shape, o.position) for o in scene.objects] == [("blue", "triangle", "center")]
        pick(page, "#builder_position", "top left")
        pick(page, "#builder_colour_2", "green")  # a second object: both in corners, true CFG 2
        expect(prompt).to_have_value(re.compile("and a green square in the bottom right"), timeout=20_000)
        expect(page.locator("#true_cfg input[type=number]")).to_have_value("2", timeout=20_000)
        scene = parse_prompt(prompt.input_value())
        assert [o.colour for o in scene.objects] == ["blue", "green"] and scene.background == "yellow"
        shot(page, tmp_path, "first_use_builder.png", page.locator("#canvas_column"))


def paint_box(page, editor, colour: str, left: float, top: float, right: float, bottom: float) -> None:
    """Pick ``colour`` in the palette pop-up and fill a box with strokes — without ever pressing the Brush button.
    The box is in fractions of the image (the square centred in the canvas at 0.8 of its shorter side)."""
    from playwright.sync_api import expect

    editor.get_by_role("button", name="Color").click()
    editor.locator(f'menu.swatch button.color[style*="{colour}"]').click()
    expect(editor.locator("menu.swatch")).to_have_count(0, timeout=5_000)  # the pop-up closes by itself
    box = editor.locator("canvas").first.bounding_box()
    side = 0.8 * min(box["width"], box["height"])
    x0, y0 = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
    for r in range(9):
        y = y0 + side * (top + (bottom - top) * r / 8)
        page.mouse.move(x0 + side * left, y)
        page.mouse.down()
        page.mouse.move(x0 + side * right, y, steps=6)
        page.mouse.up()


def colour_share(png: Path, rgb: tuple[int, int, int], tolerance: int = 40) -> float:
    """Share of the image's pixels within ``tolerance`` of ``rgb``."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return float((np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance).mean())


def test_two_regions_paint_on_the_first_try_and_the_overlay_shows_each_in_its_own_colour(server, tmp_path):
    from playwright.sync_api import expect

    with browser_page(tmp_path, VIEWPORT) as page:
        open_studio(page, server)
        page.get_by_role("tab", name="Regions").click()
        editor = page.locator("#region_editor")
        expect(editor.get_by_role("button", name="Brush", exact=True)).to_have_class(
            re.compile("highlight"), timeout=20_000
        )  # ready to paint
        paint_box(page, editor, "rgb(255, 0, 0)", 0.08, 0.08, 0.4, 0.4)
        paint_box(page, editor, "rgb(0, 0, 255)", 0.6, 0.6, 0.92, 0.92)
        page.locator("#region_prompt_red textarea").fill("a red circle in the top left on a white background")
        page.locator("#region_prompt_blue textarea").fill("a blue square in the bottom right on a white background")
        page.locator("#region_prompt_blue textarea").blur()
        overlay = page.locator("#region_overlay img")
        expect(overlay).to_be_visible(timeout=30_000)
        for _ in range(30):  # one overlay per stroke and per prompt: wait for the last one to be drawn
            page.wait_for_timeout(1000)
            png = shot(page, tmp_path, "first_use_regions_overlay.png", overlay)
            red, blue, green = (colour_share(png, c) for c in ((255, 0, 0), (0, 0, 255), (0, 192, 0)))
            if red > 0.04 and blue > 0.04:
                break
        shot(page, tmp_path, "first_use_regions.png", page.locator("#side_column"))
    assert red > 0.04 and blue > 0.04, (red, blue)  # both painted on the first try, each in its own colour
    assert green < 0.002, f"blue drawn as green: {green}"


def test_the_gallery_link_opens_the_gallery(server, tmp_path):
    with browser_page(tmp_path, VIEWPORT) as page:
        open_studio(page, server)
        link = page.locator("#gallery_link")
        assert link.is_visible()
        with page.context.expect_page() as opened:
            link.click()
        gallery = opened.value
        gallery.wait_for_load_state()
        assert gallery.url.rstrip("/").endswith("/gallery"), gallery.url
        assert "Flux Studio" in gallery.content() or "gallery" in gallery.title().lower()


def test_picking_the_outlined_lora_applies_its_recommended_steps_and_true_cfg(server, tmp_path):
    from playwright.sync_api import expect

    with browser_page(tmp_path, VIEWPORT) as page:
        open_studio(page, server)
        page.locator("#prompt textarea").fill("a purple outlined circle in the center on a white background")
        page.get_by_role("tab", name="LoRA", exact=True).click()
        pick(page, "#lora_0_name", "outlined")
        expect(page.locator("#steps input")).to_have_value("8", timeout=20_000)
        expect(page.locator("#true_cfg input[type=number]")).to_have_value("3", timeout=20_000)
        expect(page.locator("#settings_note")).to_contain_text("recommended", timeout=20_000)
        expect(page.locator("#lora_0_info")).to_contain_text("8 steps")
        expect(page.locator("#lora_0_preview")).to_be_hidden()  # no preview image: no empty box
        shot(page, tmp_path, "first_use_lora.png")
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=120_000)
    request = latest_records(server, 1)[0]["request"]
    assert (request["steps"], request["true_cfg"]) == (8, 3.0)
    assert request["loras"][0]["name"] == "outlined" and request["loras"][0]["weight"] == 1.0


def test_a_waiting_visitor_sees_the_queue_position_on_the_result(server, tmp_path):
    from playwright.sync_api import expect

    with browser_page(tmp_path, VIEWPORT) as first:
        second = first.context.browser.new_page(viewport=VIEWPORT)
        open_studio(first, server)
        open_studio(second, server)
        first.locator("#prompt textarea").fill(PROMPT)
        first.locator("#steps input").fill("200")
        first.locator("#width input").fill("256")
        first.locator("#height input").fill("256")
        first.locator("#generate").click()
        expect(first.locator("#status")).to_contain_text("Step ", timeout=60_000)
        second.locator("#prompt textarea").fill(PROMPT)
        second.locator("#generate").click()
        # Gradio's own "queue: 1/2" when its queue holds the event, else the page's line ("In the queue — 1 …")
        queue = second.locator("#result").get_by_text(re.compile(r"queue(: \d+/\d+| — \d+ generation)", re.I))
        expect(queue.first).to_be_visible(timeout=30_000)
        expect(second.locator("#status")).to_contain_text("queue", timeout=10_000)
        shot(second, tmp_path, "first_use_queue.png")
        first.locator("#cancel").click()
        expect(second.locator("#status")).to_contain_text("Done", timeout=120_000)


def test_dark_theme_keeps_the_page_readable(server, tmp_path):
    from playwright.sync_api import expect

    with browser_page(tmp_path, VIEWPORT) as page:
        open_studio(page, server, "?__theme=dark")
        page.locator("#prompt textarea").fill(PROMPT)
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=90_000)
        expect(page.locator('#result img[src*="/gallery/image/"]')).to_be_visible(timeout=30_000)
        assert page.evaluate(
            "document.body.classList.contains('dark') || document.documentElement.classList.contains('dark')"
        )
        shot(page, tmp_path, "first_use_dark.png")
