"""Pose editor: keypoints JSON → OpenPose map, presets, mirror, add/remove, overlay; a real browser drags a point."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import StudioError
from studio.engine.conditioning import overlay, pose
from studio.toyworld.figure import OPENPOSE_COLOURS, place_keypoints, pose_keypoints, pose_map
from studio.ui import pose_editor
from tests.conftest import ROOT

PROMPT = "a red stick figure in the center on a white background"


def doc(*figures: pose.Figure) -> str:
    return pose.dump_pose(list(figures))


def close(a: pose.Figure, b: pose.Figure) -> bool:
    return np.allclose(np.array(a, dtype=float), np.array(b, dtype=float), atol=1e-4)  # the JSON keeps 4 decimals


def test_keypoints_land_on_their_pixels_in_their_openpose_colours():
    figure: pose.Figure = [None] * 18
    figure[1], figure[2] = (0.25, 0.5), (0.75, 0.5)  # neck and right shoulder: one limb, two dots
    image = np.asarray(pose.render_pose_map(pose.parse_pose(doc(figure)), 96, 64))
    assert image.shape == (64, 96, 3)
    assert tuple(image[32, 24]) == OPENPOSE_COLOURS[1] and tuple(image[32, 72]) == OPENPOSE_COLOURS[2]
    assert tuple(image[32, 48]) == tuple(int(c * 0.6) for c in OPENPOSE_COLOURS[0])  # limb (1, 2): colour 0 x 0.6
    assert not image[:20].any() and not image[45:].any()  # black elsewhere


@pytest.mark.parametrize("name", ["standing", "arms up", "walking", "waving"])
def test_square_maps_are_the_toy_worlds_pose_maps(name):
    kp = place_keypoints(pose_keypoints(name), (30.0, 34.0), 44.0)
    figures = [[(x / 64, y / 64) for x, y in kp]]
    assert np.array_equal(pose.pose_map_array(figures, 64, 64), pose_map([kp], 64))


def test_presets_are_valid_18_point_figures_inside_the_image():
    assert {"standing", "arms up", "walking", "sitting"} <= set(pose.PRESETS)
    for name in pose.PRESETS:
        for w, h in ((64, 64), (128, 64), (64, 128)):
            figure = pose.preset_figure(name, w, h)
            assert len(figure) == 18 and all(0 <= v <= 1 for p in figure for v in p)
            assert pose.parse_pose(doc(figure)) == pose.parse_pose(doc(figure))
            assert np.asarray(pose.render_pose_map([figure], w, h)).any()
    heights = {side: np.ptp(np.array(pose.preset_figure("standing", side, side))[:, 1]) for side in (64, 512)}
    assert heights[64] == pytest.approx(0.45 * 0.875) and heights[512] == pytest.approx(0.8 * 0.875)  # toy size at 64
    with pytest.raises(StudioError, match="unknown preset pose 'dancing'"):
        pose.preset_figure("dancing", 64, 64)


def test_switching_presets_keeps_the_figure_in_place():
    small = pose.preset_figure("standing", 128, 128, (0.3, 0.6), 0.5)
    moved = pose.apply_preset([small], 0, "arms up", 128, 128)
    back = pose.apply_preset(moved, 0, "standing", 128, 128)
    assert close(back[0], small)


def test_mirror_swaps_sides_and_twice_gives_the_figure_back():
    waving = pose.preset_figure("waving", 64, 64, (0.4, 0.5), 0.8)
    mirrored = pose.mirror_figure(waving)
    assert close(pose.mirror_figure(mirrored), waving)
    assert mirrored[4][1] == pytest.approx(waving[7][1])  # the raised left wrist is now the right one
    assert mirrored[4][0] < 0.4 < waving[7][0]  # ... on the other side of the figure
    standing = pose.preset_figure("standing", 64, 64)
    assert close(pose.mirror_figure(standing), standing)  # symmetric poses are unchanged
    raised = np.asarray(pose.render_pose_map([waving], 64, 64))[:16].any(axis=2).nonzero()[1]
    raised_m = np.asarray(pose.render_pose_map([mirrored], 64, 64))[:16].any(axis=2).nonzero()[1]
    neck = waving[1][0] * 64
    assert raised.mean() > neck > raised_m.mean()  # the raised arm's pixels moved to the other side of the neck


def test_add_and_remove_figures():
    one = [pose.preset_figure("standing", 64, 64)]
    two = pose.add_figure(one, 64, 64)
    assert len(two) == 2 and two[0] == one[0]
    assert pose.remove_figure(two, 0) == [two[1]] and pose.remove_figure([], 0) == []
    full = [one[0]] * pose.MAX_FIGURES
    with pytest.raises(StudioError, match="at most 8 figures"):
        pose.add_figure(full, 64, 64)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"people": []}', 'must be a JSON object {"figures"'),
        ('{"figures": [[[0.5, 0.5]]]}', "figure 1 has 1 points"),
        (json.dumps({"figures": [[[0.5, 0.5]] * 17 + [["a", 1]]]}), r"figure 1, left ear: expected \[x, y\]"),
        (
            json.dumps({"figures": [[[0.5, 0.5]] * 3 + [[1.5, 0.2]] + [[0.5, 0.5]] * 14]}),
            r"right elbow: \[1.5, 0.2\] is outside",
        ),
        (json.dumps({"figures": [[[0.5, 0.5]] * 18] * 9}), "at most 8"),
    ],
)
def test_bad_pose_json_is_refused_with_the_problem(text, message):
    with pytest.raises(StudioError, match=message):
        pose.parse_pose(text)


def test_missing_keypoints_skip_their_limbs():
    figure = pose.preset_figure("standing", 64, 64)
    without_arm = [None if i in (3, 4) else p for i, p in enumerate(figure)]
    full, partial = (np.asarray(pose.render_pose_map([f], 64, 64)).any(axis=2).sum() for f in (figure, without_arm))
    assert 0 < partial < full
    assert pose.parse_pose(doc(without_arm))[0][3] is None


def test_editor_actions_round_trip_and_size_change_does_not_feed():
    start = pose_editor.initial_value(64, 64)
    state, text, image = pose_editor.edit(start, "preset", "arms up", 64, 64, (64, 64))
    assert json.loads(state)["feed"] is True and image.size == (64, 64)
    assert close(pose.parse_pose(text)[0], pose.preset_figure("arms up", 64, 64))
    state, _, _ = pose_editor.edit(state, "add", None, 64, 64, (64, 64))
    assert json.loads(state)["selected"] == 1 and len(json.loads(state)["figures"]) == 2
    state, _, image = pose_editor.edit(state, "size", None, 128, 96, (64, 64))
    assert json.loads(state)["feed"] is False and image.size == (128, 96)
    state, _, _ = pose_editor.edit(state, "remove", None, 128, 96, (64, 64))
    assert len(json.loads(state)["figures"]) == 1
    with pytest.raises(StudioError, match="not valid JSON"):
        pose_editor.from_json("[[1, 2", state, 64, 64, (64, 64))
    with pytest.raises(StudioError, match="pick a preset pose first"):
        pose_editor.edit(state, "preset", None, 64, 64, (64, 64))
    assert pose_editor.output_size(None, "x", (64, 48)) == (64, 48) and pose_editor.output_size(9999, 32) == (4096, 32)


def test_edits_feed_the_picked_unit_and_a_resize_only_a_pose_map_unit():
    moved, clicked = json.dumps({"feed": True}), json.dumps({"feed": False})
    kinds = ["canny", "pose-map", "off"]
    assert pose_editor.fed_unit("preset", clicked, "Control 1", kinds) == 0
    assert pose_editor.fed_unit("redraw", moved, "Control 3", kinds) == 2
    assert pose_editor.fed_unit("redraw", clicked, "Control 3", kinds) is None  # a click only selects a figure
    assert pose_editor.fed_unit("size", clicked, "Control 1", kinds) is None  # never takes over a canny unit
    assert pose_editor.fed_unit("size", clicked, "Control 2", kinds) == 1  # keeps a pose-map unit at the output size
    assert pose_editor.fed_unit("mirror", moved, "none", kinds) is None


def test_overlay_blends_or_outlines_the_map_on_the_result():
    result = Image.new("RGB", (64, 64), (245, 245, 245))
    control = pose.render_pose_map([pose.preset_figure("standing", 64, 64)], 64, 64)
    drawn = np.asarray(control.resize((256, 256), Image.Resampling.NEAREST)).any(axis=2)
    blended = np.asarray(overlay.overlay_maps(result, [control], "blend"))
    assert blended.shape == (256, 256, 3)
    assert (blended[~drawn] == 245).all() and (blended[drawn] != 245).any(axis=1).all()
    outlined = np.asarray(overlay.overlay_maps(result, [control], "outline"))
    changed = (outlined != 245).any(axis=2)
    assert changed.any() and (changed & drawn).sum() > 0.5 * changed.sum()  # on the skeleton, mostly
    edges = Image.new("RGB", (64, 64))
    edges.paste((255, 255, 255), (16, 16, 48, 48))  # a grey-level map gets a highlight colour
    assert tuple(np.asarray(overlay.overlay_maps(result, [edges], "outline"))[64, 128]) == overlay.HIGHLIGHTS[0]
    with pytest.raises(StudioError, match="unknown overlay mode"):
        overlay.overlay_maps(result, [control], "sparkle")


def test_the_pose_editor_and_overlay_do_not_import_torch():
    code = (
        "import sys, studio.ui.controls_panel, studio.ui.pose_editor; "
        "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def pose_server(tmp_path_factory):
    """The app on the embedded model with its own union ControlNet (named in flux-mini's studio.json)."""
    from tests.server import AppServer

    tmp = tmp_path_factory.mktemp("pose-app")
    (tmp / "data").mkdir()
    srv = AppServer(tmp / "data")
    yield srv
    srv.close()


@pytest.mark.browser
def test_browser_preset_drag_map_then_generate_with_the_pose(pose_server, tmp_path):
    from gradio_client import Client
    from playwright.sync_api import expect

    from tests.test_app import browser_page, drag, record_image

    with browser_page(tmp_path, {"width": 1400, "height": 1600}) as page:
        page.goto(pose_server.url + "/")
        page.locator("#prompt textarea").fill(PROMPT)
        page.locator("#seed input").fill("3")
        page.get_by_role("tab", name="Structure", exact=True).click()
        editor = page.locator("#pose_editor")
        expect(editor.locator("circle.kp")).to_have_count(18, timeout=20_000)
        page.locator("#pose_add").click()
        expect(editor.locator("circle.kp")).to_have_count(36, timeout=20_000)
        page.locator("#pose_remove").click()  # the added figure is the selected one
        expect(editor.locator("circle.kp")).to_have_count(18, timeout=20_000)
        preview = page.locator("#pose_map img")
        first = preview.get_attribute("src")

        page.locator("#pose_preset input").click()
        page.get_by_role("option", name="arms up").click()
        expect(preview).not_to_have_attribute("src", first, timeout=20_000)
        expect(page.locator("#control_0_kind input")).to_have_value("pose-map", timeout=20_000)
        preset_src = preview.get_attribute("src")

        drag(page, editor.locator('circle.kp[data-i="4"]'), 40, 120, steps=6)
        expect(preview).not_to_have_attribute("src", preset_src, timeout=20_000)

        page.get_by_text("Keypoints (JSON)").click()
        keypoints = page.locator("#pose_json textarea")
        expect(keypoints).to_be_visible(timeout=10_000)
        figures = pose.parse_pose(keypoints.input_value())
        arms_up = pose.preset_figure("arms up", 128, 128)
        assert figures[0][4][1] > arms_up[4][1] + 0.1 and close(figures[0][5:], arms_up[5:])  # only the wrist moved

        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=120_000)
        expect(page.locator("#result img").first).to_be_visible(timeout=30_000)
        expect(page.locator("#control_overlay img")).to_be_visible(timeout=30_000)

    record = Client(pose_server.url, verbose=False).predict(limit=1, api_name="/history")["records"][0]
    (control,) = record["request"]["controls"]
    assert control["kind"] == "pose-map" and control["strength"] == 1.0
    stored = pose_server.log_path.parent / "assets" / f"{control['image'].removeprefix('sha256:')}.png"
    expected = pose.pose_map_array(figures, 128, 128)
    assert np.array_equal(np.asarray(Image.open(stored).convert("RGB")), expected)  # the map, bit for bit

    # the image follows the pose: flux-mini's ControlNet draws the figure on the skeleton, the prompt alone does not
    from studio.toyworld.evaluate import control_obeyed, control_silhouette

    silhouette = control_silhouette(expected, "pose")
    posed = np.asarray(record_image(pose_server, record).convert("RGB"))
    plain = Client(pose_server.url, verbose=False).predict(prompt=PROMPT, seed=3, api_name="/generate")
    unposed = np.asarray(record_image(pose_server, plain).convert("RGB"))
    iou_posed, obeyed = control_obeyed(posed, silhouette, "pose")
    iou_plain, _ = control_obeyed(unposed, silhouette, "pose")
    assert obeyed and iou_posed >= iou_plain + 0.1, (iou_posed, iou_plain)
