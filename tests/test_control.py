"""ControlNet path on the embedded model: a FluxControlNetModel folder, scales per step, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core import settings as settings_mod
from studio.core.errors import StudioError
from studio.core.request import ControlSpec, GenerationRequest
from studio.engine.conditioning.control import step_scales
from studio.engine.engine import Engine
from studio.service import Studio
from studio.store.store import Store
from tests.conftest import MODEL

PROMPT = "a red circle in the top left on a white background"


def make_controlnet(transformer, folder, joint_dim=None):
    from diffusers import FluxControlNetModel

    net = FluxControlNetModel.from_transformer(
        transformer,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=transformer.config.attention_head_dim,
        num_attention_heads=transformer.config.num_attention_heads,
    )
    if joint_dim is not None:
        config = dict(net.config)
        config["joint_attention_dim"] = joint_dim
        net = FluxControlNetModel.from_config(config)
    torch.manual_seed(0)
    with torch.no_grad():  # an untrained net is zero-initialised (no effect); give it some
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    net.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def control_studio(tmp_path_factory, engine):
    tmp = tmp_path_factory.mktemp("control")
    canny = make_controlnet(engine.pipe.transformer, tmp / "canny")
    wrong = make_controlnet(engine.pipe.transformer, tmp / "wrong", joint_dim=64)
    env = {
        "STUDIO_MODEL": str(MODEL),
        "STUDIO_DATA_DIR": str(tmp / "data"),
        "STUDIO_CONTROLNET_CANNY": str(canny),
        "STUDIO_CONTROLNET_DEPTH": str(wrong),
    }
    settings = settings_mod.from_env(env, threads=1)
    studio = Studio(settings, engine=Engine(settings), store=Store(settings.db_url, settings.data_dir))
    yield studio
    studio.close()


def pixels(record):
    return np.asarray(Image.open(record["images"][0]["path"]).convert("RGB"))


def edge_image(studio):
    img = Image.new("RGB", (64, 64), "white")
    img.paste((220, 40, 40), (8, 8, 28, 28))
    return studio.store.assets.put_image(img)


def test_control_changes_the_image_and_zero_strength_or_curve_does_not(control_studio):
    studio = control_studio
    ref = edge_image(studio)
    plain = studio.generate(GenerationRequest(prompt=PROMPT, seed=3))
    loads = studio.engine.load_count
    controlled = studio.generate(GenerationRequest(prompt=PROMPT, seed=3, controls=(ControlSpec("canny", ref),)))
    assert not np.array_equal(pixels(controlled), pixels(plain))
    assert studio.engine.load_count == loads  # the base model is not reloaded for ControlNet mode
    off = studio.generate(GenerationRequest(prompt=PROMPT, seed=3, controls=(ControlSpec("canny", ref, True, 0.0),)))
    assert np.array_equal(pixels(off), pixels(plain))
    curve_off = studio.generate(
        GenerationRequest(
            prompt=PROMPT, seed=3, controls=(ControlSpec("canny", ref),), schedule={"control": [[0, 0.0], [1, 0.0]]}
        )
    )
    assert np.array_equal(pixels(curve_off), pixels(plain))
    replay = studio.replay(controlled["id"])
    assert np.array_equal(pixels(replay), pixels(controlled))


def test_step_window_and_curve_give_per_step_scales():
    assert step_scales(0.8, 0.0, 0.5, [1.0] * 5) == [0.8, 0.8, 0.8, 0.0, 0.0]
    assert step_scales(1.0, 0.0, 1.0, [1.0, 0.5, 0.0]) == [1.0, 0.5, 0.0]


def test_mismatched_controlnet_is_refused_before_generating(control_studio):
    ref = edge_image(control_studio)
    with pytest.raises(StudioError, match="does not fit the loaded model"):
        control_studio.generate(GenerationRequest(prompt=PROMPT, seed=1, controls=(ControlSpec("depth-map", ref),)))


def test_missing_controlnet_and_annotator_weights_name_the_fix(control_studio, tmp_path):
    from studio.engine.conditioning.control import controlnet_source
    from studio.models.catalog import ModelLocation

    bare = tmp_path / "model-without-controlnets"  # a local folder whose studio.json names no ControlNets
    bare.mkdir()
    (bare / "studio.json").write_text('{"name": "bare"}')
    with pytest.raises(StudioError, match="STUDIO_CONTROLNET_POSE"):
        controlnet_source("pose", {"canny": "x"}, ModelLocation("bare", str(bare), False), "bare")
    # flux-mini's own studio.json names its union ControlNet: pose resolves to it in union mode 4
    source, mode = controlnet_source("pose", {}, ModelLocation("flux-mini", str(MODEL), False), "flux-mini")
    assert source.endswith("flux-mini-controlnet-union") and mode == 4
    ref = edge_image(control_studio)
    with pytest.raises(StudioError, match="STUDIO_ANNOTATORS"):
        control_studio.generate(GenerationRequest(prompt=PROMPT, seed=1, controls=(ControlSpec("depth", ref),)))


def test_overlay_of_a_record_draws_its_control_maps_over_the_result(control_studio):
    from studio.engine.conditioning import overlay
    from studio.ui.controls_panel import record_overlay

    studio = control_studio
    ref = edge_image(studio)
    record = studio.generate(GenerationRequest(prompt=PROMPT, seed=4, controls=(ControlSpec("canny", ref),)))
    result = Image.open(record["images"][0]["path"]).convert("RGB").resize((256, 256), Image.Resampling.NEAREST)
    stored = studio.store.get(record["id"])  # the UI draws the overlay of a record it looked up in the store
    outlined = np.asarray(record_overlay(stored, "outline", studio))
    changed = (outlined != np.asarray(result)).any(axis=2)
    assert changed.any() and (outlined[changed] == overlay.HIGHLIGHTS[0]).all(axis=1).all()
    edges = np.asarray(studio.control_map("canny", studio.store.assets.load(ref)).resize((256, 256)))
    assert changed[edges.any(axis=2)].mean() > 0.5  # the outline follows the canny edges
    blended = np.asarray(record_overlay(stored, "blend", studio))
    assert blended.shape == (256, 256, 3) and not np.array_equal(blended, outlined)
    assert record_overlay(stored, "off", studio) is None
    plain = studio.generate(GenerationRequest(prompt=PROMPT, seed=4))
    assert record_overlay(studio.store.get(plain["id"]), "blend", studio) is None


def tiny_depth_anything(folder):
    """A randomly initialised Depth-Anything in transformers' folder layout (the real one is a download)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(0)
    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=56,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=False).save_pretrained(folder)


def test_depth_preprocessing_runs_the_depth_anything_found_in_the_annotator_folder(tmp_path, engine):
    from studio.engine.conditioning.annotators import WHAT_TO_GET, annotate_with_weights, depth_detector_name

    folder = tmp_path / "annotators"
    folder.mkdir()
    assert depth_detector_name(folder) is None
    with pytest.raises(StudioError, match="depth-anything"):
        annotate_with_weights("depth", Image.new("RGB", (64, 64)), folder)
    tiny_depth_anything(folder / "depth-anything")
    assert depth_detector_name(folder) == "depth-anything" and "ZoeD_M12_N.pt" in WHAT_TO_GET["depth"]
    env = {"STUDIO_MODEL": str(MODEL), "STUDIO_DATA_DIR": str(tmp_path / "data"), "STUDIO_ANNOTATORS": str(folder)}
    settings = settings_mod.from_env(env, threads=1)
    studio = Studio(settings, engine=Engine(settings), store=Store(settings.db_url, settings.data_dir))
    try:
        photo = Image.new("RGB", (64, 64), "white")
        photo.paste((200, 30, 30), (8, 8, 40, 40))
        ref = studio.store.assets.put_image(photo)
        depth = studio.generate(GenerationRequest(prompt=PROMPT, seed=1, controls=(ControlSpec("depth", ref),)))
        plain = studio.generate(GenerationRequest(prompt=PROMPT, seed=1))
        assert not np.array_equal(pixels(depth), pixels(plain))  # the depth map went into the union ControlNet
        assert np.array_equal(pixels(studio.replay(depth["id"])), pixels(depth))
        assert len(studio.engine._control_maps) == 1  # the replay reused the annotated map (keyed by input hash)
    finally:
        studio.close()


def test_a_canny_map_without_edges_is_refused_naming_the_fix(control_studio):
    from studio.engine.conditioning.control import require_edges

    studio = control_studio
    blank = studio.store.assets.put_image(Image.new("RGB", (64, 64), "black"))
    flat = studio.store.assets.put_image(Image.new("RGB", (64, 64), (40, 160, 60)))
    for spec in (ControlSpec("canny-map", blank), ControlSpec("canny", flat)):
        with pytest.raises(StudioError, match="no edges.*lower its thresholds"):
            studio.generate(GenerationRequest(prompt=PROMPT, seed=1, controls=(spec,)))
    # one-pixel lines of a 1024-px map scaled down to the model's size are faint, not missing
    big = np.zeros((1024, 1024, 3), np.uint8)
    big[200:800, 200] = big[200, 200:800] = 255
    faint = Image.fromarray(big).resize((128, 128), Image.Resampling.LANCZOS)
    assert np.asarray(faint).max() < 128 and require_edges("canny-map", faint) is faint
    black = Image.new("RGB", (64, 64), "black")
    assert require_edges("depth-map", black) is black  # an all-far depth map is a map
