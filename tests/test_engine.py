"""The Engine and Studio on the embedded model: resident pipeline, records, cancel, replay, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core import settings as settings_mod
from studio.core.errors import ModelMissing, UnsupportedOnDevice
from studio.core.request import GenerationRequest
from studio.engine.engine import Engine

PROMPT = "a red circle in the top left on a white background"


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_defaults_come_from_the_model(studio):
    record = studio.generate(GenerationRequest(prompt=PROMPT, seed=1))
    request = record["request"]
    assert (request["width"], request["height"], request["steps"], request["guidance"]) == (128, 128, 4, 2.0)
    assert record["status"] == "done" and len(record["images"]) == 1
    assert Path(record["images"][0]["path"]).is_file()
    # flux-mini's guidance embedding is untrained (studio.json says so): the UI labels the channel as ignored
    assert studio.engine.defaults().guidance_distilled is False


def test_a_model_card_without_the_flag_is_guidance_distilled(tmp_path):
    from studio.models.catalog import ModelLocation, defaults_for

    (tmp_path / "studio.json").write_text('{"width": 64, "height": 64, "steps": 4, "guidance": 3.5}')
    assert defaults_for(ModelLocation("m", str(tmp_path), False), True).guidance_distilled is True


def test_second_generation_does_not_reload_weights(studio):
    before = studio.engine.load_count
    weights = studio.engine.pipe.transformer.x_embedder.weight
    studio.generate(GenerationRequest(prompt=PROMPT, seed=1))
    studio.generate(GenerationRequest(prompt="a blue square in the center on a black background", seed=2))
    assert studio.engine.load_count == before
    assert studio.engine.pipe.transformer.x_embedder.weight is weights


def test_same_request_gives_same_png_bytes_and_replay_same_pixels(studio):
    first = studio.generate(GenerationRequest(prompt=PROMPT, seed=11, batch_size=2))
    second = studio.generate(GenerationRequest(prompt=PROMPT, seed=11, batch_size=2))
    assert [i["sha256"] for i in first["images"]] == [i["sha256"] for i in second["images"]]
    assert [i["seed"] for i in first["images"]] == [11, 12]
    replay = studio.replay(first["id"])
    assert replay["replay_of"] == first["id"]
    for a, b in zip(first["images"], replay["images"]):
        assert np.array_equal(pixels(a["path"]), pixels(b["path"]))


def test_random_seed_is_resolved_and_stored(studio):
    record = studio.generate(GenerationRequest(prompt=PROMPT))
    assert isinstance(record["request"]["seed"], int)


def test_cancel_stops_within_one_step_and_stores_a_cancelled_record(studio):
    cancel = threading.Event()
    steps_seen = []

    def on_step(update):
        steps_seen.append(update.step)
        cancel.set()

    record = studio.generate(GenerationRequest(prompt=PROMPT, seed=3, steps=20), on_step=on_step, cancel=cancel)
    assert record["status"] == "cancelled" and record["images"] == []
    assert steps_seen == [1]
    stored = studio.store.get(record["id"])
    assert stored["status"] == "cancelled" and stored["request"]["seed"] == 3


def test_progress_previews_arrive(studio):
    updates = []
    studio.generate(GenerationRequest(prompt=PROMPT, seed=3, steps=4), on_step=updates.append)
    assert [u.step for u in updates] == [1, 2, 3, 4]
    assert updates[0].preview is not None and updates[0].preview.size == (128, 128)


def test_true_cfg_with_negative_prompt_changes_the_image(studio):
    plain = studio.generate(GenerationRequest(prompt=PROMPT, seed=5))
    cfg = studio.generate(GenerationRequest(prompt=PROMPT, seed=5, true_cfg=3.0, negative_prompt="blue"))
    assert plain["images"][0]["sha256"] != cfg["images"][0]["sha256"]


def test_a_missing_lora_is_refused_not_ignored(studio):
    from studio.core.errors import NotFound
    from studio.core.request import LoraSpec

    with pytest.raises(NotFound, match="no LoRA named 'no-such-lora'"):
        studio.generate(GenerationRequest(prompt=PROMPT, seed=1, loras=(LoraSpec("no-such-lora"),)))


def test_unknown_model_path_names_the_fix(tmp_path):
    settings = settings_mod.from_env({"STUDIO_MODEL": str(tmp_path / "nothing")})
    with pytest.raises(ModelMissing, match="STUDIO_MODEL"):
        Engine(settings).ensure()


def test_model_outside_the_model_folders_is_refused(engine, tmp_path):
    from studio.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="STUDIO_MODELS"):  # only the operator's models (STUDIO_MODELS) load
        engine.ensure(str(tmp_path))


def test_missing_weights_name_the_fix(tmp_path):
    import shutil

    from tests.conftest import MODEL

    broken = tmp_path / "broken"
    shutil.copytree(MODEL, broken)
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    settings = settings_mod.from_env({"STUDIO_MODEL": str(broken)})
    with pytest.raises(ModelMissing, match="missing or corrupt"):
        Engine(settings).ensure()


def test_hub_id_without_network_names_the_fix(tmp_path):
    env = {"STUDIO_MODEL": "black-forest-labs/FLUX.1-schnell", "HF_HUB_OFFLINE": "1"}
    settings = settings_mod.from_env(env)
    with pytest.raises(ModelMissing, match="Hugging Face Hub"):
        Engine(settings).ensure()


def test_cuda_only_memory_mode_is_refused_on_cpu():
    settings = settings_mod.from_env({"STUDIO_MEMORY": "sequential", "STUDIO_DEVICE": "cpu"})
    with pytest.raises(UnsupportedOnDevice, match="CUDA"):
        Engine(settings)


def write_random_lora(path: Path, transformer, rank: int, seed: int) -> None:
    """A small diffusers-format LoRA on three of the transformer's layers."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name in ("transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_v", "proj_out"):
        module = transformer.get_submodule(name)
        tensors[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=gen) * 0.1
        tensors[f"transformer.{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=gen) * 0.1
    save_file(tensors, str(path))


@pytest.mark.slow
def test_compiled_transformer_generates_and_switches_loras_like_eager(engine, tmp_path):
    from studio.core.request import LoraSpec
    from tests.conftest import MODEL

    loras = tmp_path / "loras"
    loras.mkdir()
    write_random_lora(loras / "style-a.safetensors", engine.pipe.transformer, rank=4, seed=1)
    write_random_lora(loras / "style-b.safetensors", engine.pipe.transformer, rank=8, seed=2)
    env = {"STUDIO_MODEL": str(MODEL), "STUDIO_DATA_DIR": str(tmp_path / "data"), "STUDIO_LORA_DIRS": str(loras)}
    eager = Engine(settings_mod.from_env(env, threads=1))
    compiled = Engine(settings_mod.from_env(env, threads=1).with_overrides(compile="force"))
    compiled.ensure()
    assert compiled.compiled and not eager.compiled
    assert compiled.pipe.transformer.transformer_blocks[0]._compiled_call_impl is not None
    request = GenerationRequest(prompt=PROMPT, seed=1, steps=2)
    for adapters in ((), (LoraSpec("style-a"),), (LoraSpec("style-b", weight=0.5),)):  # ~7 min on one busy core
        ours = np.asarray(compiled.generate(request.replace(loras=adapters)).images[0], dtype=np.int16)
        theirs = np.asarray(eager.generate(request.replace(loras=adapters)).images[0], dtype=np.int16)
        assert np.abs(ours - theirs).max() <= 2, adapters


def test_compile_is_off_on_cpu_unless_forced():
    import torch

    from studio.core.errors import StudioError
    from studio.engine.compiling import compile_wanted

    cpu = torch.device("cpu")
    assert not compile_wanted(cpu, "0") and not compile_wanted(cpu, "1")
    assert compile_wanted(cpu, "force") and compile_wanted(torch.device("cuda"), "1")
    with pytest.raises(StudioError, match="STUDIO_COMPILE"):
        compile_wanted(cpu, "maybe")
