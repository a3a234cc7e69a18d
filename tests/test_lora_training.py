"""LoRA training on the resident flux-mini: a file with metadata that inspect accepts, a falling loss, base weights
untouched, the new LoRA changes generations, cancel leaves nothing in the LoRA folder, resume, and refusals."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from studio.core.errors import Cancelled, InvalidRequest
from studio.core.request import GenerationRequest, LoraSpec
from studio.lora.checkpoints import checkpoint_path
from studio.lora.files import LoraLibrary, read_header
from studio.lora.inspection import inspect
from studio.lora.training import train_lora
from studio.lora.training_inputs import TrainingConfig, TrainingExample, with_trigger
from studio.toyworld.grammar import random_scene, scene_prompt
from studio.toyworld.render import render_scene

TRIGGER = "zwx"


def toy_examples(n: int = 8, size: int = 64, seed: int = 0) -> list[TrainingExample]:
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        scene = random_scene(rng, 1)
        examples.append(TrainingExample(Image.fromarray(render_scene(scene, size, i).image), scene_prompt(scene)))
    return examples


def snapshot(transformer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in transformer.state_dict().items()}


def pixels(record) -> np.ndarray:
    return np.asarray(Image.open(record["images"][0]["path"]).convert("RGB"))


@pytest.fixture(scope="module", autouse=True)
def remove_adapters_afterwards(engine):
    """Other test modules share the engine: leave its transformer as we found it."""
    engine.lora_adapters.clear()
    yield
    engine.lora_adapters.clear()


def test_trained_lora_is_written_checked_and_changes_the_image(studio):
    engine = studio.engine
    engine.lora_adapters.clear()
    before = snapshot(engine.pipe.transformer)
    folder = studio.settings.data_dir / "loras"
    losses: list[float] = []
    busy: list[bool] = []

    def progress(step: int, total: int, loss: float) -> None:
        assert total == 24 and step == len(losses) + 1
        losses.append(loss)
        busy.append(engine.busy)

    config = TrainingConfig("zwx-style", TRIGGER, rank=4, steps=24, learning_rate=1e-2, seed=0)
    path = train_lora(engine, config, toy_examples(), folder, on_progress=progress)
    assert path == folder / "zwx-style.safetensors" and path.is_file()
    assert all(busy), "the engine lock is held for the whole run"
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses

    after = engine.pipe.transformer.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)

    info = inspect(path, engine.pipe.transformer)
    assert (info.format, info.target, info.rank, info.trigger_words) == ("diffusers", "flux", 4, (TRIGGER,))
    assert info.matched == info.total == 14  # to_q/k/v/out.0 in 2 double blocks, to_q/k/v in 2 single
    meta = read_header(path).metadata
    training = json.loads(meta["flux_studio.training"])
    assert training["steps"] == 24 and training["rank"] == 4 and training["images"] == 8
    assert meta["flux_studio.base_model"] == engine.model_name
    assert all(
        k.startswith("transformer.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in load_file(path)
    )
    entry = LoraLibrary([folder]).describe(LoraLibrary([folder]).resolve("zwx-style"))
    assert entry["trigger_words"] == [TRIGGER] and entry["error"] is None

    prompt = f"{TRIGGER}, a red circle in the top left on a white background"
    base = studio.generate(GenerationRequest(prompt=prompt, seed=3))
    styled = studio.generate(GenerationRequest(prompt=prompt, seed=3, loras=(LoraSpec("zwx-style"),)))
    assert not np.array_equal(pixels(base), pixels(styled))
    assert engine.lora_adapters.active[0].info.matched == 14


def test_cancel_writes_nothing_and_a_rerun_resumes_to_the_same_weights(engine, tmp_path):
    folder = tmp_path / "loras"
    cancel = threading.Event()
    seen: list[int] = []

    def stop_at_6(step: int, total: int, loss: float) -> None:
        seen.append(step)
        if step == 6:
            cancel.set()

    config = TrainingConfig("halfway", TRIGGER, rank=2, steps=10, learning_rate=1e-2, batch_size=2)
    examples = toy_examples(4)
    with pytest.raises(Cancelled, match="nothing was written"):
        train_lora(engine, config, examples, folder, on_progress=stop_at_6, cancel=cancel, checkpoint_every=4)
    assert seen == [1, 2, 3, 4, 5, 6]
    assert not folder.exists() or not any(folder.iterdir())
    assert LoraLibrary([folder]).scan() == []
    assert checkpoint_path(folder, "halfway").is_file()

    resumed: list[int] = []
    path = train_lora(engine, config, examples, folder, on_progress=lambda step, total, loss: resumed.append(step))
    assert resumed == [5, 6, 7, 8, 9, 10]
    assert not checkpoint_path(folder, "halfway").exists()
    straight = train_lora(
        engine,
        TrainingConfig("straight", TRIGGER, rank=2, steps=10, learning_rate=1e-2, batch_size=2),
        examples,
        folder,
    )
    a, b = load_file(path), load_file(straight)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    with pytest.raises(InvalidRequest, match="already exists"):
        train_lora(engine, config, examples, folder)


@pytest.mark.parametrize(
    ("changes", "n", "message"),
    [
        ({}, 3, "use 10–30 images"),
        ({"name": "../evil"}, 8, "not a safe file name"),
        ({"name": "a/b"}, 8, "not a safe file name"),
        ({"trigger_word": " "}, 8, "trigger word"),
        ({"rank": 0}, 8, "rank 0"),
        ({"steps": 6000}, 8, "steps 6000"),
        ({"learning_rate": float("nan")}, 8, "learning rate"),
        ({"resolution": 72}, 8, "multiple of 16"),
        ({"layers": "everything"}, 8, "layers 'everything' is not one of attention, double_attention"),
        ({"guidance": -1.0}, 8, "training guidance -1.0"),
        ({"sampler_sigma_share": 1.5}, 8, "sampler σ share 1.5"),
        ({"distilled_guidance_max": 0.5}, 8, "distilled guidance max 0.5"),
    ],
)
def test_bad_input_is_refused_before_touching_the_model(engine, tmp_path, changes, n, message):
    config = TrainingConfig(**{"name": "ok", "trigger_word": TRIGGER, **changes})
    with pytest.raises(InvalidRequest, match=message):
        train_lora(engine, config, toy_examples(n), tmp_path / "loras")
    assert not (tmp_path / "loras").exists()


def test_empty_caption_refused_and_mixed_sizes_are_cropped(engine, tmp_path):
    examples = toy_examples(4)
    with pytest.raises(InvalidRequest, match="image 2 has an empty caption"):
        train_lora(
            engine,
            TrainingConfig("ok", TRIGGER),
            [examples[0], TrainingExample(examples[1].image, " "), *examples[2:]],
            tmp_path,
        )
    mixed = [TrainingExample(e.image.resize((64 + 16 * i, 48 + 8 * i)), e.caption) for i, e in enumerate(examples)]
    path = train_lora(engine, TrainingConfig("mixed", TRIGGER, rank=2, steps=2), mixed, tmp_path / "loras")
    assert path.is_file()
    assert with_trigger("a red circle", "zwx") == "zwx, a red circle"
    assert with_trigger("a ZWX red circle", "zwx") == "a ZWX red circle"


def test_cli_lora_train(tmp_path, monkeypatch, capsys):
    from studio.cli.main import main
    from tests.conftest import MODEL

    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i, example in enumerate(toy_examples(4)):
        example.image.save(images / f"toy{i}.png")
        lines.append(f"toy{i}.png\t{example.caption}")
    (images / "captions.txt").write_text("\n".join(lines), encoding="utf-8")
    monkeypatch.setenv("STUDIO_MODEL", str(MODEL))
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))
    args = [
        "lora",
        "train",
        "--name",
        "cli",
        "--trigger",
        TRIGGER,
        "--images",
        str(images),
        "--captions",
        str(images / "captions.txt"),
        "--steps",
        "3",
        "--rank",
        "2",
        "--lr",
        "1e-3",
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"path", "steps", "final_loss", "seconds"} and out["steps"] == 3
    assert out["path"] == str(tmp_path / "data" / "loras" / "cli.safetensors") and np.isfinite(out["final_loss"])
    (images / "captions.txt").unlink()
    assert main([*args[:8], "--name", "nocap", "--json"]) == 2
    assert "no caption for toy0.png" in json.loads(capsys.readouterr().out)["error"]


def test_history_images_for_training_are_the_visitors_own_with_their_prompts(studio):
    from studio.core.errors import NotFound
    from studio.ui.training_panel import history_choices, history_examples

    mine = studio.generate(
        GenerationRequest(prompt="a red circle in the center on a white background", seed=1), owner="visitor-a"
    )
    theirs = studio.generate(
        GenerationRequest(prompt="a blue square in the center on a white background", seed=2), owner="visitor-b"
    )
    assert [gen_id for _, gen_id in history_choices(studio, "visitor-a")] == [mine["id"]]
    paths, prompts = history_examples(studio, [mine["id"]], "visitor-a")
    assert prompts == ["a red circle in the center on a white background"]
    assert Image.open(paths[0]).size == (128, 128)
    with pytest.raises(NotFound):
        history_examples(studio, [theirs["id"]], "visitor-a")


def test_more_images_than_the_tab_allows_only_when_the_caller_raises_the_cap(engine, tmp_path):
    config = TrainingConfig("many", TRIGGER, rank=2, steps=1, batch_size=2)
    with pytest.raises(InvalidRequest, match="at most 64"):
        train_lora(engine, config, toy_examples(65), tmp_path / "loras")
    assert train_lora(engine, config, toy_examples(65), tmp_path / "loras", max_images=65).is_file()


def test_sampler_sigma_share_draws_that_share_from_the_visited_sigmas():
    from studio.lora.training import _sigmas

    visited = torch.tensor([1.0, 0.826, 0.613, 0.345])
    config = {"base_image_seq_len": 256, "max_image_seq_len": 4096, "base_shift": 0.5, "max_shift": 1.15}
    only = _sigmas(torch.Generator().manual_seed(0), 400, 16, config, visited, 1.0)
    assert set(only.tolist()) <= set(visited.tolist())
    mixed = _sigmas(torch.Generator().manual_seed(0), 4000, 16, config, visited, 0.3)
    on_visited = torch.isin(mixed, visited).float().mean().item()
    assert 0.25 < on_visited < 0.35
    plain = _sigmas(torch.Generator().manual_seed(0), 400, 16, config)
    assert not torch.isin(plain, visited).any() and ((plain > 0) & (plain < 1)).all()


def test_double_block_lora_at_a_set_guidance_trains_both_streams_and_exports_to_kohya_exactly(engine, tmp_path):
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    from training.kohya_export import to_kohya

    config = TrainingConfig(
        "both-streams",
        TRIGGER,
        rank=2,
        steps=6,
        learning_rate=1e-2,
        batch_size=2,
        layers="double_blocks",
        guidance=1.0,
        sampler_sigma_share=0.3,
    )
    path = train_lora(engine, config, toy_examples(4), tmp_path / "loras")
    tensors = load_file(path)
    layers = {k.split(".", 3)[3].rsplit(".lora_", 1)[0] for k in tensors}
    assert layers == {
        "attn.to_q",
        "attn.to_k",
        "attn.to_v",
        "attn.to_out.0",
        "attn.add_q_proj",
        "attn.add_k_proj",
        "attn.add_v_proj",
        "attn.to_add_out",
        "ff.net.0.proj",
        "ff.net.2",
        "ff_context.net.0.proj",
        "ff_context.net.2",
    }
    assert not any("single_transformer_blocks" in k for k in tensors)
    training = json.loads(read_header(path).metadata["flux_studio.training"])
    assert (training["layers"], training["guidance"], training["sampler_sigma_share"]) == ("double_blocks", 1.0, 0.3)
    back = _convert_kohya_flux_lora_to_diffusers(to_kohya(tensors))
    assert back.keys() == tensors.keys()
    for key in (k for k in tensors if k.endswith("lora_A.weight")):
        up = key.replace("lora_A", "lora_B")
        torch.testing.assert_close(back[up] @ back[key], tensors[up] @ tensors[key])


def test_distilled_target_uses_the_base_without_the_adapter_for_the_empty_prompt(engine):
    """v_u + g·(ε − x0 − v_u) with v_u the plain base's velocity for "" at g = 1, even while an adapter is on."""
    from peft import LoraConfig

    from studio.lora.training import _distilled_target

    engine.lora_adapters.clear()
    transformer, gen = engine.pipe.transformer, torch.Generator().manual_seed(0)
    empty = engine.encode("", None)
    x_t, conditional = torch.randn(2, 16, 64, generator=gen), torch.randn(2, 16, 64, generator=gen)
    sigma, guidance = torch.tensor([0.9, 0.4]), torch.tensor([1.0, 3.0])
    img_ids = engine.pipe._prepare_latent_image_ids(1, 4, 4, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        base = transformer(
            hidden_states=x_t,
            timestep=sigma,
            guidance=torch.ones(2),
            pooled_projections=empty.pooled_embeds.expand(2, -1),
            encoder_hidden_states=empty.prompt_embeds.expand(2, -1, -1),
            txt_ids=empty.text_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
    transformer.add_adapter(
        LoraConfig(r=2, init_lora_weights=False, target_modules=["to_q", "to_v"]), adapter_name="probe"
    )
    try:
        target = _distilled_target(transformer, x_t, sigma, guidance, conditional, empty, img_ids)
        with torch.no_grad():
            adapted = transformer(
                hidden_states=x_t,
                timestep=sigma,
                guidance=torch.ones(2),
                pooled_projections=empty.pooled_embeds.expand(2, -1),
                encoder_hidden_states=empty.prompt_embeds.expand(2, -1, -1),
                txt_ids=empty.text_ids,
                img_ids=img_ids,
                return_dict=False,
            )[0]
    finally:
        transformer.delete_adapters("probe")
    assert not torch.allclose(adapted, base, atol=1e-4)  # the adapter is on again afterwards, and it acts
    torch.testing.assert_close(target[0], conditional[0])  # g = 1: the plain flow-matching target
    torch.testing.assert_close(target[1], base[1] + 3.0 * (conditional[1] - base[1]))


def test_distilled_guidance_training_writes_its_settings(engine, tmp_path):
    config = TrainingConfig(
        "distilled",
        TRIGGER,
        rank=2,
        steps=4,
        learning_rate=1e-2,
        batch_size=2,
        layers="double_blocks",
        distilled_guidance_max=4.0,
    )
    path = train_lora(engine, config, toy_examples(4), tmp_path / "loras")
    training = json.loads(read_header(path).metadata["flux_studio.training"])
    assert training["distilled_guidance_max"] == 4.0 and training["guidance"] is None
