"""The shipped flux-mini family: the base model follows held-out prompts, its union ControlNet and its "outlined"
LoRA (and kohya copy) load and work.

Floors are set well below the measured numbers (assets/models/README.md), so a broken weight file, a changed
loading path or a pipeline change is caught without flakiness.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.core.request import ControlSpec, GenerationRequest, LoraSpec, RegionSpec
from studio.lora.inspection import inspect
from studio.toyworld import render_scene, scene_prompt
from studio.toyworld.evaluate import control_obeyed, control_silhouette, evaluate_image, is_hollow
from studio.toyworld.grammar import Scene, ToyObject, is_held_out
from tests.conftest import ROOT

CONTROLNET = ROOT / "assets" / "models" / "flux-mini-controlnet-union"
LORA = ROOT / "assets" / "loras" / "outlined.safetensors"
KOHYA = ROOT / "assets" / "loras" / "kohya" / "outlined-kohya.safetensors"

# Held-out (colour, shape, position) objects of the toy world's split, one per scene
SCENES = [
    Scene((ToyObject("green", "square", "top right"),), "white"),
    Scene((ToyObject("blue", "circle", "bottom right"),), "yellow"),
    Scene((ToyObject("gray", "triangle", "top left"),), "black"),
    Scene((ToyObject("orange", "circle", "center"),), "purple"),
]
HOLLOW_ON_FLOOR = 3  # of these 4 scenes drawn hollow with the outlined LoRA at true CFG 3; measured 4 (see model card)
LORA_TRUE_CFG = 3.0


def test_the_base_model_follows_held_out_one_object_prompts(studio):
    from studio.toyeval import run_eval

    result = run_eval(studio, n=16, kind="one")  # 16 held-out prompts, 4 steps, guidance 2 (default), prompt k → seed k
    assert result["n"] == 16 and result["steps"] == 4
    assert result["background"] >= 0.9 and result["position"] >= 0.9 and result["color"] >= 0.8, result
    assert result["joint"] >= 0.75, result  # measured 1.0 here, 0.925 on 80 (model card); the 64-px weights 0.875


def test_the_vae_keeps_stick_figures_thin():
    """Decoded true 128-px scenes keep their thin limbs: the shipped 128-px decoder scores 1.0 here (the 64-px
    decoders at 64 px: regression-only 0.33, narrow GAN 0.625, wide 0.75)."""
    import torch
    from diffusers import AutoencoderKL

    from studio.toyworld import scene_set
    from studio.toyworld.grammar import STICK_FIGURE

    vae = AutoencoderKL.from_pretrained(ROOT / "assets" / "models" / "flux-mini" / "vae").eval()
    scenes = [s for s in scene_set("one", 200, seed=5, split="heldout") if s.objects[0].shape == STICK_FIGURE][:24]
    pixels = np.stack([render_scene(scene, 128, 60_000 + k).image for k, scene in enumerate(scenes)])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample
    decoded = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    assert len(scenes) == 24
    assert np.mean([evaluate_image(image, scene).joint for image, scene in zip(decoded, scenes, strict=True)]) >= 0.85


def test_the_scenes_are_held_out():
    assert all(is_held_out(scene.objects[0]) for scene in SCENES)


def test_controlnet_folder_loads_with_diffusers_and_fits_the_base(engine):
    from diffusers import FluxControlNetModel

    net = FluxControlNetModel.from_pretrained(CONTROLNET)
    assert net.config.num_mode == 10  # a union net: canny / depth / pose modes as Union-Pro
    for key in ("in_channels", "joint_attention_dim", "pooled_projection_dim"):
        assert net.config[key] == engine.pipe.transformer.config[key]


@pytest.mark.parametrize("kind", ["canny", "depth"])
def test_control_is_obeyed_and_beats_no_control(studio, kind):
    from benchmarks.controls import held_out_scenes

    with_control, without = [], []
    for k, scene in enumerate(held_out_scenes(kind, 8)):
        rendered = render_scene(scene, 128, 77_000 + k)
        control_map = rendered.control(kind)
        ref = studio.store.assets.put_image(Image.fromarray(control_map))
        silhouette = control_silhouette(control_map, kind)
        for controls, out in (((ControlSpec(f"{kind}-map", ref),), with_control), ((), without)):
            record = studio.generate(GenerationRequest(prompt=scene_prompt(scene), seed=k, controls=controls))
            image = np.asarray(Image.open(record["images"][0]["path"]).convert("RGB"))
            out.append(control_obeyed(image, silhouette, kind)[0])
    assert np.mean(with_control) >= 0.8  # mean IoU, measured 0.94 (canny) / 0.93 (depth); the 64-px pair ≈ 0.84
    assert np.mean(with_control) >= np.mean(without) + 0.2  # without control ≈ 0.45


def test_outlined_lora_and_its_kohya_copy_inspect_cleanly(engine):
    transformer = engine.pipe.transformer
    diffusers_info, kohya_info = inspect(LORA, transformer), inspect(KOHYA, transformer)
    assert diffusers_info.target == "flux" and diffusers_info.matched == diffusers_info.total > 0
    assert kohya_info.format == "kohya" and kohya_info.matched == kohya_info.total == diffusers_info.total
    assert "outlined" in diffusers_info.trigger_words and "outlined" in kohya_info.trigger_words


def test_outlined_lora_changes_the_image_and_the_kohya_copy_gives_the_same_pixels(studio):
    """The LoRA draws the held-out objects hollow, the kohya → diffusers conversion is exact, and with it off the
    objects stay filled (all at true CFG 3, how the undistilled base and its LoRA are meant to be sampled)."""
    hollow_off = hollow_on = 0
    for k, scene in enumerate(SCENES):
        styled = Scene(scene.objects, scene.background, "outlined")
        images = {}
        for name, prompt, loras in (
            ("off", scene_prompt(scene), ()),
            ("trigger only", scene_prompt(styled), ()),
            ("on", scene_prompt(styled), (LoraSpec("outlined"),)),
            ("kohya", scene_prompt(styled), (LoraSpec("kohya/outlined-kohya"),)),
        ):
            record = studio.generate(GenerationRequest(prompt=prompt, seed=k, loras=loras, true_cfg=LORA_TRUE_CFG))
            images[name] = np.asarray(Image.open(record["images"][0]["path"]).convert("RGB")).astype(int)
        found = evaluate_image(images["off"].astype(np.uint8), scene).objects[0]
        hollow_off += found.mask is not None and is_hollow(found.mask)
        styled_found = evaluate_image(images["on"].astype(np.uint8), scene).objects[0]
        hollow_on += styled_found.mask is not None and is_hollow(styled_found.mask)
        assert np.abs(images["on"] - images["trigger only"]).mean() > 2  # the LoRA changes the image
        assert np.abs(images["on"] - images["kohya"]).max() <= 2  # same LoRA through kohya → diffusers conversion
    assert hollow_off == 0
    assert hollow_on >= HOLLOW_ON_FLOOR, hollow_on


def test_two_painted_regions_bind_each_held_out_object_to_its_region(studio):
    """Two-object held-out prompts with each object's quadrant painted and given its one-object prompt (regions on
    for the first half of the steps, true CFG 2, as benchmarks.regions): most come out right in colour, shape and
    position, and not fewer than the text alone (measured 10 and 10 of these 12; 0.930 vs 0.875 on 128 prompts in
    the model card's "Regions"; one prompt of slack for other CPUs' arithmetic)."""
    from benchmarks.regions import quadrant_mask
    from studio.toyworld.grammar import object_prompt, scene_set

    scenes = scene_set("two", 12, seed=0, split="heldout")
    half = {"regions": [[0.0, 1.0], [0.5, 1.0], [0.501, 0.0], [1.0, 0.0]]}
    joint = {"text only": 0, "regions": 0}
    for k, scene in enumerate(scenes):
        specs = tuple(
            RegionSpec(
                studio.store.assets.put_image(quadrant_mask(obj.position, 128)), object_prompt(obj, scene.background)
            )
            for obj in scene.objects
        )
        for name, regions in (("text only", ()), ("regions", specs)):
            record = studio.generate(
                GenerationRequest(
                    prompt=scene_prompt(scene),
                    seed=k,
                    steps=8,
                    true_cfg=2.0,
                    regions=regions,
                    schedule=half if regions else None,
                )
            )
            image = np.asarray(Image.open(record["images"][0]["path"]).convert("RGB"))
            joint[name] += evaluate_image(image, scene).joint
    assert joint["regions"] >= 9 and joint["regions"] >= joint["text only"] - 1, joint
