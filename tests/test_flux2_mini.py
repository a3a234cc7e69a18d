"""flux2-mini: the random-weight FLUX.2 [klein] folder loads offline through diffusers, generates and edits at
128 px, its Qwen tokenizer and chat template work offline, and training/build_flux2_mini.py rebuilds it exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "assets" / "models" / "flux2-mini"
PROMPT = "a red circle in the top left on a white background"
OTHER = "a blue square in the bottom right and a yellow triangle in the top left on a black background"


@pytest.fixture(scope="module")
def pipe():
    import torch
    from diffusers import DiffusionPipeline

    torch.set_num_threads(1)
    pipeline = DiffusionPipeline.from_pretrained(FOLDER, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate(pipe, prompt: str, **kwargs) -> np.ndarray:
    import torch

    out = pipe(
        prompt=prompt,
        height=128,
        width=128,
        num_inference_steps=2,
        max_sequence_length=64,
        generator=torch.Generator().manual_seed(0),
        **kwargs,
    )
    return np.asarray(out.images[0])


def test_folder_resolves_to_the_klein_pipeline_with_flux2_components(pipe):
    assert type(pipe).__name__ == "Flux2KleinPipeline" and pipe.config.is_distilled
    assert type(pipe.transformer).__name__ == "Flux2Transformer2DModel"
    assert type(pipe.vae).__name__ == "AutoencoderKLFlux2" and pipe.vae.config.latent_channels == 32
    assert type(pipe.text_encoder).__name__ == "Qwen3ForCausalLM" and pipe.text_encoder.config.num_hidden_layers >= 27
    assert pipe.vae_scale_factor == 8 and not pipe.transformer.config.guidance_embeds
    layers = json.loads((FOLDER / "studio.json").read_text())["text_encoder_out_layers"]
    assert pipe.transformer.config.joint_attention_dim == len(layers) * pipe.text_encoder.config.hidden_size


def test_text_to_image_128px_in_2_steps_and_the_prompt_steers_it(pipe):
    image = generate(pipe, PROMPT)
    assert image.shape == (128, 128, 3) and image.std() > 1
    assert np.array_equal(image, generate(pipe, PROMPT))  # seeded: reproducible
    assert np.abs(image.astype(int) - generate(pipe, OTHER)).mean() > 0.1


def test_prompt_embeddings_stack_three_qwen_layers(pipe):
    embeds, text_ids = pipe.encode_prompt(prompt=[PROMPT, OTHER], device="cpu", max_sequence_length=64)
    assert tuple(embeds.shape) == (2, 64, pipe.transformer.config.joint_attention_dim)
    assert tuple(text_ids.shape) == (2, 64, 4) and bool(embeds.isfinite().all())


def test_single_reference_editing_feeds_reference_tokens_and_changes_the_image(pipe):
    from PIL import Image

    reference = Image.fromarray(generate(pipe, OTHER))
    seen: list[int] = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["hidden_states"].shape[1]), with_kwargs=True
    )
    try:
        edited = generate(pipe, PROMPT, image=reference)
    finally:
        hook.remove()
    assert seen == [64 + 64, 64 + 64]  # 8×8 target tokens + 8×8 reference tokens, each of the 2 steps
    assert edited.shape == (128, 128, 3)
    assert np.abs(edited.astype(int) - generate(pipe, PROMPT)).mean() > 0.1


def test_tokenizer_loads_offline_with_the_qwen_chat_template():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(FOLDER / "tokenizer", local_files_only=True)
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    messages = [{"role": "user", "content": PROMPT}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert text == f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    plain = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<think>" not in plain and plain.endswith("<|im_start|>assistant\n")
    tokens = tokenizer.tokenize(text)
    for special in ("<|im_start|>", "<|im_end|>", "<think>", "</think>"):
        assert special in tokens
    words = tokenizer.tokenize(OTHER)
    assert len(words) == len(OTHER.split())  # every toy word (with its leading space) is one token
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    odd = "zebra café, 42!"
    assert tokenizer.decode(tokenizer(odd)["input_ids"]) == odd  # byte-level: any text encodes
    batch = tokenizer([text], padding="max_length", max_length=64, truncation=True)
    assert len(batch["input_ids"][0]) == 64 and batch["input_ids"][0][-1] == tokenizer.pad_token_id


def test_studio_json_and_model_card():
    card = json.loads((FOLDER / "studio.json").read_text())
    assert card["family"] == "flux2" and card["width"] == card["height"] == 128
    assert card["steps"] > 0 and card["guidance"] == 1.0 and card["max_sequence_length"] == 64
    assert "random" in (FOLDER / "README.md").read_text().lower()
    size = sum(path.stat().st_size for path in FOLDER.rglob("*") if path.is_file())
    assert size < 6 * 2**20


def test_build_is_reproducible_and_matches_the_committed_folder(tmp_path):
    from training.build_flux2_mini import build

    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert sorted(path.relative_to(FOLDER) for path in FOLDER.rglob("*") if path.is_file()) == files
    weights = [name for name in files if name.suffix == ".safetensors"]
    assert len(weights) == 3
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
        assert (first / name).read_bytes() == (FOLDER / name).read_bytes(), name
