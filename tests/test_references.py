"""Reference images: FLUX.1 Kontext reference tokens in the studio's own sampling loop, stored and replayed.

A temporary Kontext folder is flux-mini's components under a ``FluxKontextPipeline`` model index: diffusers'
FluxKontextPipeline loads it as is, so the studio's pixels can be compared with diffusers' own Kontext loop.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core.errors import InvalidRequest
from studio.core.request import GenerationRequest
from studio.toyworld.grammar import Scene, ToyObject
from studio.toyworld.render import render_scene
from tests.conftest import MODEL, ROOT

PROMPT = "a red circle in the top left on a white background"
SIZE, STEPS, SEED = 128, 3, 7
TOLERANCE = 3  # uint8 levels


@pytest.fixture(scope="module")
def kontext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """flux-mini's components (symlinked) under a model index naming FluxKontextPipeline."""
    folder = tmp_path_factory.mktemp("models") / "flux-mini-kontext"
    folder.mkdir()
    for entry in MODEL.iterdir():
        if entry.name != "model_index.json":
            (folder / entry.name).symlink_to(entry.resolve())
    index = json.loads((MODEL / "model_index.json").read_text())
    index["_class_name"] = "FluxKontextPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def kontext_studio(kontext_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A Studio whose engine holds the Kontext folder."""
    from studio.core import settings as settings_mod
    from studio.engine.engine import Engine
    from studio.service import Studio
    from studio.store.store import Store

    data_dir = tmp_path_factory.mktemp("data")
    settings = settings_mod.from_env({"STUDIO_MODEL": str(kontext_dir), "STUDIO_DATA_DIR": str(data_dir)}, threads=1)
    store = Store(settings.db_url, settings.data_dir)
    yield Studio(settings, engine=Engine(settings), store=store)
    store.close()


@pytest.fixture(scope="module")
def reference_image() -> Image.Image:
    scene = Scene((ToyObject("blue", "square", "bottom right"),), "yellow")
    return Image.fromarray(render_scene(scene, SIZE, seed=3).image)


def pixels(record: dict) -> np.ndarray:
    return np.asarray(Image.open(record["images"][0]["path"]).convert("RGB")).astype(int)


def request(**changes) -> GenerationRequest:
    return GenerationRequest(prompt=PROMPT, width=SIZE, height=SIZE, steps=STEPS, seed=SEED, **changes)


@pytest.fixture(scope="module")
def with_reference(kontext_studio, reference_image) -> dict:
    ref = kontext_studio.store.assets.put_image(reference_image)
    return kontext_studio.generate(request(references=(ref,)))


def test_kontext_folder_is_detected(kontext_dir: Path) -> None:
    from studio.models import kinds as model_kinds
    from studio.models.inspection import diffusers_report

    assert model_kinds.is_kontext(kontext_dir)
    found = diffusers_report(kontext_dir)
    assert (found["family"], found["loadable"]) == ("flux1-kontext", True) and "--reference" in found["reason"]
    assert not model_kinds.is_kontext(MODEL)
    assert not model_kinds.is_kontext(None)


@pytest.fixture(scope="module")
def kontext_pipe(kontext_dir: Path):
    """diffusers' own FluxKontextPipeline on the same folder, loaded as is."""
    from diffusers import FluxKontextPipeline

    pipe = FluxKontextPipeline.from_pretrained(kontext_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_pixels(pipe, studio, reference_image, record: dict, **kwargs) -> np.ndarray:
    """FluxKontextPipeline's image for the record's request, the reference at the output size."""
    image = pipe(
        prompt=PROMPT,
        image=reference_image,
        height=SIZE,
        width=SIZE,
        max_area=SIZE * SIZE,
        _auto_resize=False,
        num_inference_steps=STEPS,
        guidance_scale=record["request"]["guidance"],
        generator=[torch.Generator("cpu").manual_seed(SEED)],
        max_sequence_length=studio.engine._defaults.max_sequence_length,
        **kwargs,
    ).images[0]
    return np.asarray(image.convert("RGB")).astype(int)


def test_studio_matches_diffusers_kontext_pipeline(kontext_pipe, kontext_studio, reference_image, with_reference):
    expected = diffusers_pixels(kontext_pipe, kontext_studio, reference_image, with_reference)
    diff = np.abs(pixels(with_reference) - expected)
    assert diff.max() <= TOLERANCE, f"max difference {diff.max()} levels"


def test_true_cfg_with_a_reference_matches_diffusers(kontext_pipe, kontext_studio, reference_image, with_reference):
    ref = with_reference["request"]["references"][0]
    record = kontext_studio.generate(request(references=(ref,), true_cfg=2.5, negative_prompt="a blue square"))
    expected = diffusers_pixels(
        kontext_pipe, kontext_studio, reference_image, record, true_cfg_scale=2.5, negative_prompt="a blue square"
    )
    diff = np.abs(pixels(record) - expected)
    assert diff.max() <= TOLERANCE, f"max difference {diff.max()} levels"


def test_step_cache_previews_and_schedules_run_with_a_reference(kontext_studio, with_reference):
    from studio.core.request import CacheSpec

    ref = with_reference["request"]["references"][0]
    steps: list[int] = []
    schedule = {"guidance": [[0, 3.0], [1, 1.0]]}
    record = kontext_studio.generate(
        request(references=(ref,), cache=CacheSpec("fbcache"), schedule=schedule),
        on_step=lambda update: steps.append(update.step),
    )
    assert record["status"] == "done" and steps == list(range(1, STEPS + 1))
    assert record["request"]["references"] == [ref]


def test_the_reference_changes_the_image(kontext_studio, with_reference):
    without = kontext_studio.generate(request())
    assert np.abs(pixels(with_reference) - pixels(without)).mean() > 1.0


def test_record_png_and_replay_carry_the_reference(kontext_studio, with_reference):
    from studio.store.pngmeta import read_png_request

    refs = with_reference["request"]["references"]
    assert len(refs) == 1 and refs[0].startswith("sha256:")
    assert read_png_request(Path(with_reference["images"][0]["path"]))["references"] == refs
    replay = kontext_studio.replay(with_reference["id"])
    assert replay["request"]["references"] == refs
    assert np.array_equal(pixels(replay), pixels(with_reference))


def test_older_records_without_references_read_as_none() -> None:
    data = request().to_dict()
    assert data["references"] == []
    del data["references"]
    assert GenerationRequest.from_dict(data).references == ()


def test_a_malformed_reference_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="reference image"):
        request(references=("look.png",)).validate()
    with pytest.raises(InvalidRequest, match="references must be a list"):
        GenerationRequest.from_dict({**request().to_dict(), "references": "sha256:" + "0" * 64})


def test_kontext_takes_one_reference_in_txt2img(kontext_studio, with_reference):
    ref = with_reference["request"]["references"][0]
    with pytest.raises(InvalidRequest, match="one reference image"):
        kontext_studio.generate(request(references=(ref, ref)))


def test_a_model_without_references_refuses_them_through_the_cli(data_dir: Path, reference_image, tmp_path):
    image = tmp_path / "look.png"
    reference_image.save(image)
    env = {**os.environ, "STUDIO_DATA_DIR": str(data_dir), "STUDIO_MODEL": str(MODEL), "STUDIO_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "studio", "generate", "--prompt", PROMPT, "--steps", "1", "--reference", str(image)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "flux-mini cannot use reference images — load a FLUX.1 Kontext or FLUX.2 model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_memory_estimate_counts_reference_tokens(kontext_studio) -> None:
    from studio.engine import memory_estimate

    kontext_studio.engine.ensure()
    shape = memory_estimate.shape_of(kontext_studio.engine.pipe, 32)
    plain = memory_estimate.denoise_bytes(shape, 1024, 1024)
    assert memory_estimate.denoise_bytes(shape, 1024, 1024, references=1) > 1.8 * plain
    dev = dataclasses.replace(shape, width=3072, heads=24, text_tokens=512)  # FLUX.1-dev's transformer: denoise peaks
    budget = memory_estimate.estimate_bytes(dev, 1024, 1024)
    assert memory_estimate.estimate_bytes(dev, 1024, 1024, references=1) > budget
    assert memory_estimate.largest_square(dev, budget, references=1) < memory_estimate.largest_square(dev, budget)
