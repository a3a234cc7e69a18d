"""The served studio: /healthz, the Gradio API through gradio_client, and a real browser."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.server import AppServer

PROMPT = "a red circle in the top left on a white background"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("app-data")
    srv = AppServer(data_dir)
    yield srv
    srv.close()


def test_healthz_names_the_model(server):
    with urllib.request.urlopen(server.url + "/healthz") as resp:
        body = json.load(resp)
    assert body["status"] == "ok" and body["model"].endswith("flux-mini")


def test_gradio_client_generate_history_replay(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    out = client.predict(prompt=PROMPT, seed=3, api_name="/generate")
    assert out["seed"] == 3 and out["request"]["width"] == 128 and Path(out["images"][0]).is_file()
    history = client.predict(search="red circle", api_name="/history")
    assert out["id"] in [r["id"] for r in history["records"]]
    replay = client.predict(id=out["id"], api_name="/replay")
    assert replay["replay_of"] == out["id"]


def test_gradio_client_bad_input_gets_the_message_and_app_keeps_serving(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    with pytest.raises(Exception, match="multiple of 16"):
        client.predict(prompt=PROMPT, width=100, api_name="/generate")
    with urllib.request.urlopen(server.url + "/healthz") as resp:
        assert resp.status == 200


def chromium_or_skip():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required under CI (apt-get install -y chromium)")
        pytest.skip("Chromium not installed (apt-get install -y chromium)")
    return CHROMIUM


@contextlib.contextmanager
def browser_page(tmp_path: Path, viewport: dict | None = None):
    """A page in Debian's Chromium; a full-page screenshot lands in tmp_path when the block fails."""
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=viewport or {"width": 1400, "height": 1300})
        try:
            yield page
        except Exception:
            with contextlib.suppress(Exception):  # a hung page must not hide the real failure
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True, timeout=10_000)
            raise
        finally:
            browser.close()


def drag(page, target, to_x: float, to_y: float, steps: int) -> None:
    """Drag ``target`` from its centre to (to_x, to_y) pixels from its box's top-left corner."""
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + to_x, box["y"] + to_y, steps=steps)
    page.mouse.up()


def paint_stroke(page, editor, points: list[tuple[float, float]]) -> None:
    """Paint one brush stroke on a gr.ImageEditor through ``points`` (fractions of its canvas)."""
    editor.get_by_role("button", name="Brush").first.click()
    editor.scroll_into_view_if_needed()
    box = editor.locator("canvas").first.bounding_box()
    (x0, y0), rest = points[0], points[1:]
    page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y0)
    page.mouse.down()
    for x, y in rest:
        page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * y, steps=3)
    page.mouse.up()


@pytest.mark.browser
def test_browser_generate_then_reload_shows_history(server, tmp_path):
    from playwright.sync_api import expect

    with browser_page(tmp_path) as page:
        page.goto(server.url + "/")
        page.locator("#prompt textarea").fill("a blue square in the center on a yellow background")
        page.locator("#generate").click()
        expect(page.locator("#result img").first).to_be_visible(timeout=90_000)
        expect(page.locator("#status")).to_contain_text("Done", timeout=30_000)
        page.reload()
        expect(page.locator("#history img").first).to_be_visible(timeout=30_000)


def stop_and_expect_outcome(page, button: str, status: str, outcome: str) -> None:
    """Press a Stop/Cancel button; the job's outcome shows and stays (a late reply from the button must not
    overwrite it)."""
    from playwright.sync_api import expect

    page.locator(button).click()
    expect(page.locator(status)).to_contain_text(outcome, timeout=60_000)
    page.wait_for_timeout(1_000)
    expect(page.locator(status)).to_contain_text(outcome)


@pytest.mark.browser
def test_browser_cancel_mid_generation_says_cancelled_and_keeps_a_cancelled_record(server, tmp_path):
    from playwright.sync_api import expect

    with browser_page(tmp_path) as page:
        page.goto(server.url + "/")
        page.locator("#prompt textarea").fill("a green triangle in the center on a white background")
        page.locator("#steps input").fill("200")
        page.locator("#width input").fill("256")
        page.locator("#height input").fill("256")
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Step ", timeout=60_000)
        stop_and_expect_outcome(page, "#cancel", "#status", "Cancelled")
    record = latest_records(server, 1)[0]
    assert record["status"] == "cancelled" and record["images"] == []


def open_more_settings(page) -> None:
    """Open the settings accordion that holds the T5 prompt, step cache, live mode and the PNG drop."""
    page.get_by_text("More: T5 prompt").click()


def latest_records(server, n: int) -> list[dict]:
    from gradio_client import Client

    return Client(server.url, verbose=False).predict(limit=n, api_name="/history")["records"]


def record_image(server, record: dict, k: int = 0):
    """Image ``k`` of a record from the API: a downloaded file, or (history records) its owner-checked URL."""
    import io

    from PIL import Image

    entry = record["images"][k]
    if isinstance(entry, str):
        return Image.open(entry)
    if entry.get("path"):
        return Image.open(entry["path"])
    with urllib.request.urlopen(server.url + entry["url"]) as resp:
        return Image.open(io.BytesIO(resp.read()))


@pytest.mark.browser
def test_browser_dragging_a_schedule_point_changes_the_stored_schedule_and_the_image(server, tmp_path):
    from playwright.sync_api import expect

    with browser_page(tmp_path, {"width": 1400, "height": 1300}) as page:
        page.goto(server.url + "/")
        page.locator("#prompt textarea").fill(PROMPT)
        page.locator("#seed input").fill("5")
        page.get_by_label("Preset").click()
        page.get_by_role("option", name="compose early").click()
        handle = page.locator('#schedule_editor circle[data-ch="guidance"][data-i="0"]')
        expect(handle).to_be_visible(timeout=10_000)
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
        before = latest_records(server, 1)[0]

        drag(page, handle, 5, 90, steps=5)
        expect(page.locator("#schedule_passes")).to_contain_text("Transformer passes")
        page.wait_for_timeout(1000)
        page.locator("#generate").click()
        expect(page.locator("#status")).not_to_contain_text(before["id"], timeout=60_000)
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
        after = latest_records(server, 1)[0]
    first, second = before["request"]["schedule"]["guidance"], after["request"]["schedule"]["guidance"]
    assert first[0][1] > second[0][1]  # dragged down: less guidance at the start
    assert first[1:] == second[1:]
    assert record_image(server, before).tobytes() != record_image(server, after).tobytes()


def paint_area(page, editor, colour: str, left: float, top: float, right: float, bottom: float) -> None:
    """Fill a box with brush strokes in one of the region palette's colours. The box is in fractions of the image,
    taken as the square centred in the editor's canvas with 0.8 of its shorter side (how the editor fits it)."""
    editor.get_by_role("button", name="Brush").first.click()
    editor.get_by_role("button", name="Color").click()
    editor.locator(f'menu.swatch button.color[style*="{colour}"]').click()
    editor.get_by_role("button", name="Color").click()  # close the swatches again
    box = editor.locator("canvas").first.bounding_box()
    side = 0.8 * min(box["width"], box["height"])
    x0, y0 = (box["width"] - side) / 2 / box["width"], (box["height"] - side) / 2 / box["height"]
    fx, fy = side / box["width"], side / box["height"]
    for r in range(9):
        y = y0 + fy * (top + (bottom - top) * r / 8)
        paint_stroke(page, editor, [(x0 + fx * (left + (right - left) * t / 10), y) for t in range(11)])


@pytest.mark.browser
def test_browser_two_painted_regions_put_each_object_in_its_region(server, tmp_path):
    from playwright.sync_api import expect

    from studio.toyworld.evaluate import evaluate_image

    prompt = "a red circle in the top left and a blue square in the bottom right on a white background"
    red = "a red circle in the top left on a white background"
    blue = "a blue square in the bottom right on a white background"
    with browser_page(tmp_path, {"width": 1400, "height": 1300}) as page:
        page.goto(server.url + "/")
        page.locator("#prompt textarea").fill(prompt)
        page.locator("#seed input").fill("2")
        page.get_by_role("tab", name="Regions").click()
        editor = page.locator("#region_editor")
        paint_area(page, editor, "rgb(255, 0, 0)", 0.08, 0.08, 0.4, 0.4)
        paint_area(page, editor, "rgb(0, 0, 255)", 0.6, 0.6, 0.92, 0.92)
        page.locator("#region_prompt_red textarea").fill(red)
        page.locator("#region_prompt_blue textarea").fill(blue)
        page.locator("#region_prompt_blue textarea").blur()
        expect(page.locator("#region_overlay img")).to_be_visible(timeout=20_000)
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    record = latest_records(server, 1)[0]
    assert [r["prompt"] for r in record["request"]["regions"]] == [red, blue]
    assert all(r["mask"].startswith("sha256:") for r in record["request"]["regions"])
    found = evaluate_image(record_image(server, record), prompt).objects  # each object where its region is
    assert [(o.colour_ok, o.position_ok) for o in found] == [(True, True), (True, True)], found


@pytest.mark.browser
def test_browser_pick_lora_insert_trigger_words_and_generate_and_the_style_appears(server, tmp_path):
    """The shipped style LoRA zwx-orange (trained by the Train LoRA code: objects drawn orange) applied from the
    picker: the trigger word goes into the prompt and the generated object is orange; without it, green."""
    from gradio_client import Client
    from playwright.sync_api import expect

    from studio.toyworld.evaluate import evaluate_image

    prompt = "a green square in the center on a white background"
    with browser_page(tmp_path, {"width": 1400, "height": 1300}) as page:
        page.goto(server.url + "/")
        page.locator("#prompt textarea").fill(prompt)
        page.locator("#seed input").fill("4")  # orange with the LoRA at 128 px (6 of seeds 0-11)
        page.get_by_role("tab", name="LoRA", exact=True).click()
        page.locator("#lora_refresh").click()
        expect(page.locator("#lora_table")).to_contain_text("zwx-orange", timeout=20_000)
        page.locator("#lora_0_name input").click()
        page.get_by_role("option", name="zwx-orange").click()
        expect(page.locator("#lora_0_info")).to_contain_text("zwx", timeout=20_000)
        page.locator("#lora_insert_triggers").click()
        expect(page.locator("#prompt textarea")).to_have_value("zwx, " + prompt, timeout=20_000)
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    record = latest_records(server, 1)[0]
    assert record["request"]["loras"][0]["name"] == "zwx-orange" and record["request"]["seed"] == 4
    assert len(record["request"]["loras"][0]["sha256"]) == 64
    styled = evaluate_image(record_image(server, record), prompt).objects[0]
    plain = Client(server.url, verbose=False).predict(prompt=prompt, seed=4, api_name="/generate")
    unstyled = evaluate_image(record_image(server, plain), prompt).objects[0]
    assert (styled.colour, unstyled.colour) == ("orange", "green")


@pytest.mark.browser
def test_browser_dropping_a_png_fills_the_panel(server, tmp_path):
    from gradio_client import Client
    from playwright.sync_api import expect

    made = Client(server.url, verbose=False).predict(
        prompt="a green triangle in the bottom left on a black background",
        seed=77,
        steps=3,
        guidance=2.5,
        api_name="/generate",
    )
    with browser_page(tmp_path, {"width": 1400, "height": 1300}) as page:
        page.goto(server.url + "/")
        open_more_settings(page)
        page.locator("#import_png input[type=file]").set_input_files(made["images"][0])
        expect(page.locator("#prompt textarea")).to_have_value(
            "a green triangle in the bottom left on a black background", timeout=20_000
        )
        expect(page.locator("#seed input")).to_have_value("77")
        expect(page.locator("#steps input")).to_have_value("3")


@pytest.mark.browser
def test_browser_live_mode_regenerates_as_you_type(server, tmp_path):
    import time

    from playwright.sync_api import expect

    with browser_page(tmp_path, {"width": 1400, "height": 1300}) as page:
        page.goto(server.url + "/")
        open_more_settings(page)
        page.locator("#live input").check()
        before = len(latest_records(server, 100))
        started = time.perf_counter()
        page.locator("#prompt textarea").press_sequentially("a red circle", delay=30)
        expect(page.locator("#status")).to_contain_text("Live", timeout=30_000)
        expect(page.locator("#result img").first).to_be_visible(timeout=30_000)
        print(f"keystrokes to image: {time.perf_counter() - started:.2f}s (typing took ~0.4s)")
    assert len(latest_records(server, 100)) == before  # live previews are not saved


@pytest.mark.browser
def test_browser_favourite_share_and_delete_from_the_history_strip(server, tmp_path):
    from playwright.sync_api import expect

    with browser_page(tmp_path) as page:
        page.goto(server.url + "/")
        page.locator("#prompt textarea").fill("a purple circle in the center on a white background")
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
        made = latest_records(server, 1)[0]
        page.locator("#history img").first.click()
        page.locator("#favourite").click()
        page.wait_for_timeout(1500)
        page.locator("#share").click()
        expect(page.locator("#share_link")).to_contain_text("/share/", timeout=20_000)
        link = page.locator("#share_link a").first.get_attribute("href")
        with urllib.request.urlopen(link) as resp:
            assert "a purple circle" in resp.read().decode()
        assert latest_records(server, 1)[0]["favourite"] is True
        page.locator("#delete").click()
        page.wait_for_timeout(2000)
    assert made["id"] not in [r["id"] for r in latest_records(server, 100)]
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(link)  # deleting the record revokes its link


@pytest.mark.browser
def test_browser_train_a_tiny_lora_then_use_it(server, tmp_path):
    from playwright.sync_api import expect

    from studio.toyworld.grammar import random_scene, scene_prompt
    from studio.toyworld.render import render_scene

    rng = __import__("numpy").random.default_rng(0)
    files, captions = [], []
    for k in range(6):
        scene = random_scene(rng, 1, style="outlined")
        path = tmp_path / f"img{k}.png"
        __import__("PIL.Image", fromlist=["Image"]).fromarray(render_scene(scene, 64, k).image).save(path)
        files.append(str(path))
        captions.append(scene_prompt(scene))
    with browser_page(tmp_path) as page:
        page.goto(server.url + "/")
        page.get_by_role("tab", name="Train LoRA").click()
        page.locator("#train_images input[type=file]").set_input_files(files)
        page.locator("#train_captions textarea").fill("\n".join(captions))
        page.locator("#train_name textarea").fill("tab-trained")
        page.locator("#train_steps input").fill("6")
        page.locator("#train_start").click()
        expect(page.locator("#train_status")).to_contain_text("Done", timeout=120_000)
        page.get_by_role("tab", name="LoRA", exact=True).click()
        page.locator("#lora_refresh").click()
        expect(page.locator("#lora_table")).to_contain_text("tab-trained", timeout=20_000)
        page.locator("#lora_0_name input").click()
        page.get_by_role("option", name="tab-trained").click()
        page.locator("#prompt textarea").fill("zwx " + PROMPT)
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    assert latest_records(server, 1)[0]["request"]["loras"][0]["name"] == "tab-trained"


@pytest.mark.browser
def test_browser_train_from_history_images_then_stop_halfway(server, tmp_path):
    from gradio_client import Client
    from playwright.sync_api import expect

    client = Client(server.url, verbose=False)
    prompts = [f"a {c} square in the center on a white background" for c in ("red", "green", "blue", "yellow")]
    made = [client.predict(prompt=p, seed=k, api_name="/generate")["id"] for k, p in enumerate(prompts)]
    loras = Path(server.data_dir) / "loras"
    with browser_page(tmp_path) as page:
        page.goto(server.url + "/")
        page.get_by_role("tab", name="Train LoRA").click()
        page.locator("#train_history_refresh").click()
        for gen_id in made:
            page.locator("#train_history input").click()
            page.get_by_role("option", name=re.compile(gen_id)).click()
        page.keyboard.press("Escape")  # close the option list
        expect(page.locator("#train_history_preview img")).to_have_count(4, timeout=20_000)
        page.locator("#train_name textarea").fill("stopped-halfway")
        page.locator("#train_steps input").fill("5000")
        page.locator("#train_start").click()
        expect(page.locator("#train_status")).to_contain_text("Training: step", timeout=60_000)
        stop_and_expect_outcome(page, "#train_stop", "#train_status", "Stopped")
        page.get_by_role("tab", name="LoRA", exact=True).click()
        page.locator("#lora_refresh").click()
        page.wait_for_timeout(1500)
        expect(page.locator("#lora_table")).not_to_contain_text("stopped-halfway")
    assert not list(loras.glob("stopped-halfway*"))  # nothing half-written
