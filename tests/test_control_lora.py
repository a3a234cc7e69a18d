"""Flux Control LoRAs (BFL's FLUX.1-Canny/Depth-dev-lora; diffusers' ``train_control_lora_flux.py`` output).

Such a LoRA widens the model's image input (``x_embedder``: 64 → 128 channels) so the control map's latents can be
concatenated, and replaces q/k norm scales. Proved on flux-mini: with the LoRA active the studio draws what a full
Control model with the LoRA merged draws; without it, bit-for-bit what the base draws (input layer and norms
restored); requests it cannot run are refused; BFL's own key layout is converted by diffusers and checked against
FLUX.1-dev's shapes (a weightless skeleton), and refused on flux-mini with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from studio.core import settings as settings_mod
from studio.core.errors import StudioError
from studio.core.request import ControlSpec, GenerationRequest, LoraSpec
from studio.engine.engine import Engine
from studio.lora.inspection import inspect
from studio.service import Studio
from studio.store.store import Store
from tests.conftest import MODEL
from tests.test_flux_bfl_models import canny_map, pixels, widened_model

PROMPT = "a red circle in the top left on a white background"
RANK = 4


def control_lora(transformer) -> dict[str, torch.Tensor]:
    """A diffusers-format Control LoRA for ``transformer``: widened x_embedder, one attention LoRA, one norm."""
    gen = torch.Generator().manual_seed(0)
    inner, own = transformer.x_embedder.weight.shape
    norm = transformer.transformer_blocks[0].attn.norm_q.weight
    return {
        "transformer.x_embedder.lora_A.weight": torch.randn((RANK, 2 * own), generator=gen) * 0.3,
        "transformer.x_embedder.lora_B.weight": torch.randn((inner, RANK), generator=gen) * 0.3,
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn((RANK, inner), generator=gen) * 0.1,
        "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn((inner, RANK), generator=gen) * 0.1,
        "transformer.transformer_blocks.0.attn.norm_q.weight": norm.detach() * 1.5,
    }


def merged_control_model(folder, lora: dict[str, torch.Tensor]):
    """flux-mini as a full Control model with ``lora`` merged in: what loading the LoRA must amount to."""
    from diffusers import FluxTransformer2DModel

    widened_model(folder, control_scale=0.0)  # x_embedder = [W | 0], as diffusers widens it
    wide = FluxTransformer2DModel.from_pretrained(folder / "transformer")
    state = wide.state_dict()
    for module in ("x_embedder", "transformer_blocks.0.attn.to_q"):
        delta = lora[f"transformer.{module}.lora_B.weight"] @ lora[f"transformer.{module}.lora_A.weight"]
        state[f"{module}.weight"] = state[f"{module}.weight"] + delta
    state["transformer_blocks.0.attn.norm_q.weight"] = lora["transformer.transformer_blocks.0.attn.norm_q.weight"]
    wide.load_state_dict(state)
    wide.save_pretrained(folder / "transformer")
    return folder


def make_studio(model, data, loras=None):
    env = {"STUDIO_MODEL": str(model), "STUDIO_DATA_DIR": str(data)}
    if loras:
        env["STUDIO_LORA_DIRS"] = str(loras)
    settings = settings_mod.from_env(env, threads=1)
    return Studio(settings, engine=Engine(settings), store=Store(settings.db_url, settings.data_dir))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from diffusers import FluxTransformer2DModel

    tmp = tmp_path_factory.mktemp("control-lora")
    lora = control_lora(FluxTransformer2DModel.from_pretrained(MODEL / "transformer"))
    (tmp / "loras").mkdir()
    save_file(lora, str(tmp / "loras" / "canny-control.safetensors"))
    gen = torch.Generator().manual_seed(1)
    inner = lora["transformer.x_embedder.lora_B.weight"].shape[0]
    style = {
        f"transformer.transformer_blocks.{b}.attn.{m}.{ab}.weight": torch.randn(shape, generator=gen) * 0.3
        for b in (0, 1)
        for m in ("to_q", "to_v")
        for ab, shape in (("lora_A", (RANK, inner)), ("lora_B", (inner, RANK)))
    }
    save_file(style, str(tmp / "loras" / "style.safetensors"))
    made = {
        "lora": make_studio(MODEL, tmp / "data-lora", tmp / "loras"),
        "merged": make_studio(merged_control_model(tmp / "merged", lora), tmp / "data-merged"),
    }
    yield made, tmp
    for studio in made.values():
        studio.close()


def canny_ref(studio):
    return canny_map(studio)[0]


def test_a_control_lora_draws_what_the_merged_control_model_draws_and_leaves_the_base_untouched(setup):
    made, _ = setup
    studio = made["lora"]
    plain_before = studio.generate(GenerationRequest(prompt=PROMPT, seed=5, steps=4))
    transformer = studio.engine.pipe.transformer
    norm_before = transformer.transformer_blocks[0].attn.norm_q.weight.detach().clone()
    info = inspect(setup[1] / "loras" / "canny-control.safetensors", transformer)
    assert info.is_control and info.matched == 2 and "needs one control image" in info.summary

    control = (ControlSpec("canny-map", canny_ref(studio)),)
    with_lora = studio.generate(
        GenerationRequest(prompt=PROMPT, seed=5, steps=4, controls=control, loras=(LoraSpec("canny-control"),))
    )
    assert studio.engine.pipe.transformer.config.in_channels == 128  # widened while the LoRA is active
    merged = made["merged"].generate(
        GenerationRequest(
            prompt=PROMPT, seed=5, steps=4, controls=(ControlSpec("canny-map", canny_ref(made["merged"])),)
        )
    )
    assert np.abs(pixels(with_lora) - pixels(plain_before)).mean() > 2  # it changes the image …
    assert np.abs(pixels(with_lora) - pixels(merged)).max() <= 2  # … exactly as the merged Control model does
    assert np.array_equal(pixels(studio.replay(with_lora["id"])), pixels(with_lora))
    assert with_lora["request"]["loras"][0]["sha256"]

    plain_after = studio.generate(GenerationRequest(prompt=PROMPT, seed=5, steps=4))
    transformer = studio.engine.pipe.transformer
    assert transformer.config.in_channels == 64 and transformer.x_embedder.in_features == 64
    assert torch.equal(transformer.transformer_blocks[0].attn.norm_q.weight, norm_before)
    assert np.array_equal(pixels(plain_after), pixels(plain_before))  # the base model is back, bit for bit


def test_a_control_lora_combines_with_a_style_lora_and_is_refused_without_its_control(setup):
    made, _ = setup
    studio = made["lora"]
    ref = canny_ref(studio)
    both = studio.generate(
        GenerationRequest(
            prompt=PROMPT,
            seed=6,
            steps=4,
            controls=(ControlSpec("canny-map", ref),),
            loras=(LoraSpec("canny-control"), LoraSpec("style", weight=0.5)),
        )
    )
    alone = studio.generate(
        GenerationRequest(
            prompt=PROMPT,
            seed=6,
            steps=4,
            controls=(ControlSpec("canny-map", ref),),
            loras=(LoraSpec("canny-control"),),
        )
    )
    assert np.abs(pixels(both) - pixels(alone)).mean() > 0.5  # the style LoRA applies on top
    assert [lo["name"] for lo in both["request"]["loras"]] == ["canny-control", "style"]
    with pytest.raises(StudioError, match="exactly one control"):
        studio.generate(GenerationRequest(prompt=PROMPT, seed=6, steps=4, loras=(LoraSpec("canny-control"),)))
    with pytest.raises(StudioError, match="text-to-image with a control only"):
        init = studio.store.assets.put_image(Image.new("RGB", (64, 64), "white"))
        studio.generate(
            GenerationRequest(
                prompt=PROMPT,
                seed=6,
                mode="img2img",
                init_image=init,
                strength=0.5,
                controls=(ControlSpec("canny-map", ref),),
                loras=(LoraSpec("canny-control"),),
            )
        )


def bfl_canny_lora_keys() -> dict[str, torch.Tensor]:
    """BFL's FLUX.1-Canny-dev-lora key layout at FLUX.1-dev's shapes (rank 2 keeps it small; diffusers' converter
    splits the final layer's rank rows in two, so rank 1 would not convert)."""
    d, mlp, r = 3072, 12288, 2
    pairs = {
        "img_in": (128, d),
        "txt_in": (4096, d),
        "time_in.in_layer": (256, d),
        "time_in.out_layer": (d, d),
        "vector_in.in_layer": (768, d),
        "vector_in.out_layer": (d, d),
        "guidance_in.in_layer": (256, d),
        "guidance_in.out_layer": (d, d),
        "final_layer.linear": (d, 64),
        "final_layer.adaLN_modulation.1": (d, 2 * d),
    }
    for i in range(19):
        for side in ("img", "txt"):
            pairs |= {
                f"double_blocks.{i}.{side}_mod.lin": (d, 6 * d),
                f"double_blocks.{i}.{side}_attn.qkv": (d, 3 * d),
                f"double_blocks.{i}.{side}_attn.proj": (d, d),
                f"double_blocks.{i}.{side}_mlp.0": (d, mlp),
                f"double_blocks.{i}.{side}_mlp.2": (mlp, d),
            }
    for i in range(38):
        pairs |= {
            f"single_blocks.{i}.modulation.lin": (d, 3 * d),
            f"single_blocks.{i}.linear1": (d, 3 * d + mlp),
            f"single_blocks.{i}.linear2": (d + mlp, d),
        }
    out = {}
    for name, (fan_in, fan_out) in pairs.items():
        out[f"{name}.lora_A.weight"] = torch.zeros((r, fan_in))
        out[f"{name}.lora_B.weight"] = torch.zeros((fan_out, r))
    norms = [
        f"double_blocks.{i}.{s}_attn.norm.{q}_norm.scale"
        for i in range(19)
        for s in ("img", "txt")
        for q in ("query", "key")
    ] + [f"single_blocks.{i}.norm.{q}_norm.scale" for i in range(38) for q in ("query", "key")]
    return out | {name: torch.ones(128) for name in norms}


def test_bfl_control_lora_layout_fits_flux1_dev_and_is_refused_on_flux_mini(setup, tmp_path):
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    path = tmp_path / "flux1-canny-dev-lora.safetensors"
    save_file(bfl_canny_lora_keys(), str(path))
    with init_empty_weights():  # FLUX.1-dev's shapes (diffusers' defaults), no weights
        flux_dev = FluxTransformer2DModel(guidance_embeds=True)
    info = inspect(path, flux_dev)
    assert info.format == "bfl-control" and info.target == "flux"
    assert info.is_control and info.control_channels == 128
    assert info.matched == info.total > 500  # every converted module fits FLUX.1-dev once x_embedder is widened

    made, _ = setup
    made["lora"].engine.ensure(None, None)
    with pytest.raises(StudioError, match="another size|another model"):
        inspect(path, made["lora"].engine.pipe.transformer)
