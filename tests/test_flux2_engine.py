"""FLUX.2 through the engine, on the random-weight flux2-mini ([klein] architecture, 128 px, offline).

The studio runs diffusers' Flux2KleinPipeline (``studio.engine.flux2``) with its own seeding, progress, cancel and
LoRA handling, so its pixels equal a direct pipeline call; records, PNG metadata and replay come from the Studio.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.errors import InvalidRequest, StudioError
from studio.core.request import CacheSpec, ControlSpec, GenerationRequest, LoraSpec, RegionSpec

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "assets" / "models" / "flux2-mini"
PROMPT = "a red circle in the top left on a white background"
OTHER = "a blue square in the bottom right on a black background"
SIZE, STEPS, SEED = 128, 3, 11
TOLERANCE = 3  # uint8 levels
REF = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random diffusers-format FLUX.2 LoRA for flux2-mini's transformer (rank 4 on the attention projections)."""
    from diffusers import Flux2KleinPipeline, Flux2Transformer2DModel
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    folder = tmp_path_factory.mktemp("loras")
    transformer = Flux2Transformer2DModel.from_pretrained(FOLDER / "transformer")
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    torch.manual_seed(0)
    inject_adapter_in_model(config, transformer)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.5)
    layers = get_peft_model_state_dict(transformer)
    Flux2KleinPipeline.save_lora_weights(folder, transformer_lora_layers=layers, weight_name="mini-style.safetensors")
    return folder


@pytest.fixture(scope="module")
def f2studio(tmp_path_factory: pytest.TempPathFactory, lora_dir: Path):
    """A Studio whose engine holds flux2-mini."""
    from studio.core import settings as settings_mod
    from studio.service import Studio

    data_dir = tmp_path_factory.mktemp("data")
    env = {"STUDIO_MODEL": str(FOLDER), "STUDIO_DATA_DIR": str(data_dir), "STUDIO_LORA_DIRS": str(lora_dir)}
    studio = Studio(settings_mod.from_env(env, threads=1))
    yield studio
    studio.store.close()


@pytest.fixture(scope="module")
def reference_images() -> list[Image.Image]:
    from studio.toyworld.grammar import Scene, ToyObject
    from studio.toyworld.render import render_scene

    scenes = [Scene((ToyObject("blue", "square", "bottom right"),), "yellow"),
              Scene((ToyObject("green", "triangle", "top left"),), "white")]  # fmt: skip
    return [Image.fromarray(render_scene(scene, SIZE, seed=3).image) for scene in scenes]


@pytest.fixture(scope="module")
def direct_pipe():
    from diffusers import Flux2KleinPipeline

    pipe = Flux2KleinPipeline.from_pretrained(FOLDER, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def first(f2studio) -> dict:
    events: list = []
    record = f2studio.generate(request(), on_step=events.append)
    record["_events"] = events
    return record


def request(**changes) -> GenerationRequest:
    return GenerationRequest(
        **{"prompt": PROMPT, "width": SIZE, "height": SIZE, "steps": STEPS, "seed": SEED, **changes}
    )


def pixels(record: dict, k: int = 0) -> np.ndarray:
    return np.asarray(Image.open(record["images"][k]["path"]).convert("RGB")).astype(int)


def direct(pipe, **kwargs) -> np.ndarray:
    out = pipe(
        prompt=PROMPT,
        height=SIZE,
        width=SIZE,
        num_inference_steps=STEPS,
        max_sequence_length=64,
        generator=torch.Generator().manual_seed(SEED),
        **kwargs,
    )
    return np.asarray(out.images[0].convert("RGB")).astype(int)


def test_the_folder_is_flux2_klein_without_loading():
    from studio.models import families

    assert families.folder_family(FOLDER) == "flux2-klein"
    assert families.hub_family("black-forest-labs/FLUX.2-klein-4B") == "flux2-klein"
    assert families.hub_family("black-forest-labs/FLUX.2-dev") == "flux2"
    assert families.hub_family("black-forest-labs/FLUX.1-Kontext-dev") == "flux1-kontext"
    assert families.folder_family(ROOT / "assets" / "models" / "flux-mini") == "flux1"


def test_hub_defaults_follow_the_family():
    from studio.core import settings as settings_mod
    from studio.models.catalog import FLUX2_DEV, KLEIN, KLEIN_BASE, defaults_for, locate

    settings = settings_mod.from_env({}, threads=1)
    assert defaults_for(locate("black-forest-labs/FLUX.2-klein-4B", settings), False) == KLEIN
    assert defaults_for(locate("black-forest-labs/FLUX.2-dev", settings), True) == FLUX2_DEV
    base = settings_mod.from_env({"STUDIO_MODEL": "black-forest-labs/FLUX.2-klein-base-4B"}, threads=1)
    assert defaults_for(locate(base.model, base), False) == KLEIN_BASE


def test_text_to_image_is_stored_with_png_metadata_and_progress(f2studio, first):
    from studio.store.pngmeta import read_png_request

    assert first["status"] == "done" and len(first["images"]) == 1
    assert type(f2studio.engine.pipe).__name__ == "Flux2KleinPipeline"
    stored = first["request"]
    assert stored["seed"] == SEED and stored["steps"] == STEPS and stored["model"] == str(FOLDER)
    assert read_png_request(Path(first["images"][0]["path"]))["prompt"] == PROMPT
    events = first["_events"]
    assert [e.step for e in events] == list(range(1, STEPS + 1)) and {e.total for e in events} == {STEPS}
    assert events[0].preview is not None and events[0].preview.size == (SIZE, SIZE)
    assert pixels(first).std() > 1


def test_replay_gives_identical_pixels(f2studio, first):
    replay = f2studio.replay(first["id"])
    assert replay["status"] == "done" and replay["replay_of"] == first["id"]
    assert np.array_equal(pixels(replay), pixels(first))


def test_the_studio_matches_diffusers_klein_pipeline(direct_pipe, first):
    assert np.abs(pixels(first) - direct(direct_pipe)).max() <= TOLERANCE


def test_a_batch_seeds_each_image_as_seed_plus_k(f2studio, first):
    batch = f2studio.generate(request(batch_size=2))
    assert [image["seed"] for image in batch["images"]] == [SEED, SEED + 1]
    assert np.abs(pixels(batch, 0) - pixels(first)).max() <= TOLERANCE  # batched matmuls: rounding only
    again = f2studio.generate(request(seed=SEED + 1))
    assert np.abs(pixels(batch, 1) - pixels(again)).max() <= TOLERANCE


def test_reference_editing_with_one_and_two_references(f2studio, direct_pipe, first, reference_images):
    refs = tuple(f2studio.store.assets.put_image(image) for image in reference_images)
    one = f2studio.generate(request(references=refs[:1]))
    two = f2studio.generate(request(references=refs))
    assert one["status"] == two["status"] == "done" and two["request"]["references"] == list(refs)
    assert np.abs(pixels(one) - direct(direct_pipe, image=reference_images[0])).max() <= TOLERANCE
    assert np.abs(pixels(two) - direct(direct_pipe, image=reference_images)).max() <= TOLERANCE
    assert np.abs(pixels(one) - pixels(first)).mean() > 0.5
    assert np.abs(pixels(two) - pixels(one)).mean() > 0.5
    assert np.array_equal(pixels(f2studio.replay(two["id"])), pixels(two))


def test_cancel_mid_run_keeps_a_cancelled_record(f2studio):
    cancel = threading.Event()
    seen: list[int] = []

    def on_step(update) -> None:
        seen.append(update.step)
        if update.step == 1:
            cancel.set()

    record = f2studio.generate(request(steps=4), on_step=on_step, cancel=cancel)
    assert record["status"] == "cancelled" and record["images"] == [] and seen == [1]
    assert record["request"]["seed"] == SEED and record["request"]["model"] == str(FOLDER)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"regions": (RegionSpec(REF, "a cat"),)}, "regional prompts"),
        ({"controls": (ControlSpec("canny", REF),)}, "ControlNets"),
        ({"cache": CacheSpec("fbcache")}, "14280"),
        ({"prompt_2": "more"}, "prompt 2"),
        ({"true_cfg": 3.0}, "true CFG"),
        ({"negative_prompt": "blurry"}, "negative prompt"),
        ({"mode": "img2img", "init_image": REF}, "reference image"),
        ({"schedule": {"guidance": [[0.0, 1.0], [1.0, 2.0]]}}, "schedule"),
    ],
)
def test_what_does_not_apply_to_flux2_is_refused_with_the_reason(f2studio, changes, fragment):
    with pytest.raises(InvalidRequest, match=fragment):
        f2studio.generate(request(**changes))


@pytest.mark.parametrize("cache", [CacheSpec("taylorseer", 2.0), CacheSpec("magcache")])
def test_taylorseer_and_magcache_run(f2studio, cache):
    record = f2studio.generate(request(steps=4, cache=cache))
    assert record["status"] == "done" and record["request"]["cache"]["kind"] == cache.kind


def test_a_flux2_lora_changes_the_image_and_is_recorded(f2studio, first):
    with_lora = f2studio.generate(request(loras=(LoraSpec("mini-style", weight=1.0),)))
    loras = with_lora["request"]["loras"]
    assert loras[0]["name"].startswith("mini-style") and len(loras[0]["sha256"]) == 64
    assert np.abs(pixels(with_lora) - pixels(first)).mean() > 0.5
    assert np.array_equal(pixels(f2studio.replay(with_lora["id"])), pixels(with_lora))
    without = f2studio.generate(request())  # the adapter is switched off again
    assert np.abs(pixels(without) - pixels(first)).max() <= TOLERANCE


def test_a_flux1_lora_is_refused_naming_the_family(f2studio, tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "flux1.safetensors"
    save_file({"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 3072),
               "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(3072, 4)}, bad)  # fmt: skip
    with pytest.raises(StudioError, match="FLUX.2"):
        from studio.engine import flux2

        flux2.activate_loras(f2studio.engine.pipe, request(loras=(LoraSpec(str(bad)),)), _library_with(bad))


def _library_with(path: Path):
    from studio.lora.library import LoraLibrary

    return LoraLibrary((path.parent,))


def test_inspect_names_the_klein_family():
    out = subprocess.run(
        [sys.executable, "-m", "studio", "model", "inspect", str(FOLDER), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["family"] == "flux2-klein" and found["loadable"] is True
    assert found["format"] == "diffusers" and "FLUX.2" in (found["reason"] or "")
