"""LoRA formats people have, each built here from random factors keyed to flux-mini and proven on a real generation:
(a) it loads through the studio's normal path and changes the image, (b) it gives the pixels of the same delta merged
into the weights by hand (the test's own Kronecker/Hadamard/low-rank maths and its own BFL → diffusers table), and
(c) switching it off gives the base pixels exactly. Formats whose diffusers converter is written for FLUX.1-dev's
full layout are also checked against a weightless FLUX.1-dev transformer."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from studio.core.errors import StudioError
from studio.core.request import GenerationRequest, LoraSpec
from studio.lora.inspection import inspect
from tests.conftest import MODEL

PROMPT = "a red circle in the top left on a white background"
CONFIG = json.loads((MODEL / "transformer" / "config.json").read_text())
W = CONFIG["num_attention_heads"] * CONFIG["attention_head_dim"]  # 192: the transformer's width
CLIP = json.loads((MODEL / "text_encoder" / "config.json").read_text())["hidden_size"]  # 64
TOLERANCE = 3  # uint8 levels between a LoRA and its hand-merged reference (float order of operations)

# The BFL → diffusers table, written out by hand (the studio asks diffusers' converter instead):
# BFL layer → [(diffusers layer, rows of the BFL layer it takes)]; "swap": scale/shift halves exchanged.
QKV = [(0, W), (W, 2 * W), (2 * W, 3 * W)]
BFL = {
    "double_blocks.0.img_attn.qkv": [(f"transformer_blocks.0.attn.to_{x}", rows) for x, rows in zip("qkv", QKV)],
    "double_blocks.1.txt_attn.qkv": [(f"transformer_blocks.1.attn.add_{x}_proj", rows) for x, rows in zip("qkv", QKV)],
    "double_blocks.1.img_attn.proj": [("transformer_blocks.1.attn.to_out.0", None)],
    "double_blocks.0.img_mlp.0": [("transformer_blocks.0.ff.net.0.proj", None)],
    "single_blocks.1.linear2": [("single_transformer_blocks.1.proj_out", None)],
    "final_layer.adaLN_modulation.1": [("norm_out.linear", "swap")],
    "img_in": [("x_embedder", None)],
}
SHAPES = {
    "double_blocks.0.img_attn.qkv": (3 * W, W),
    "double_blocks.1.txt_attn.qkv": (3 * W, W),
    "double_blocks.1.img_attn.proj": (W, W),
    "double_blocks.0.img_mlp.0": (4 * W, W),
    "single_blocks.1.linear2": (W, 5 * W),
    "final_layer.adaLN_modulation.1": (2 * W, W),
    "img_in": (W, 64),
}
TE_Q = "text_model.encoder.layers.0.self_attn.q_proj"  # how files name CLIP layers (transformers 5 drops text_model)
TE_FC1 = "text_model.encoder.layers.1.mlp.fc1"
TE_SHAPES = {TE_Q: (CLIP, CLIP), TE_FC1: (2 * CLIP, CLIP)}


# ---- building files --------------------------------------------------------------------------------------
def rand(gen: torch.Generator, *shape: int, scale: float = 0.3) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def kohya_name(bfl: str) -> str:
    return "lora_unet_" + bfl.replace(".", "_")


def te_name(layer: str) -> str:
    return "lora_te1_" + layer.replace(".", "_")


def lokr(gen, shape, w1, w1_rank=None, w2_rank=None, alpha=None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A LoKr module (W1 of shape ``w1``, either factor optionally low-rank) and its delta, by LyCORIS' rule: the
    scale alpha/rank applies only when a factor is low-rank."""
    (out_f, in_f), (rows1, cols1) = shape, w1
    k, n = out_f // rows1, in_f // cols1
    t: dict[str, torch.Tensor] = {}
    if w1_rank:
        t["lokr_w1_a"], t["lokr_w1_b"] = rand(gen, rows1, w1_rank, scale=0.6), rand(gen, w1_rank, cols1, scale=0.6)
        first = t["lokr_w1_a"] @ t["lokr_w1_b"]
    else:
        first = t["lokr_w1"] = rand(gen, rows1, cols1, scale=0.6)
    if w2_rank:
        t["lokr_w2_a"], t["lokr_w2_b"] = rand(gen, k, w2_rank), rand(gen, w2_rank, n)
        second = t["lokr_w2_a"] @ t["lokr_w2_b"]
    else:
        second = t["lokr_w2"] = rand(gen, k, n)
    rank = w2_rank or w1_rank
    scale = alpha / rank if alpha is not None and rank else 1.0
    if alpha is not None:
        t["alpha"] = torch.tensor(float(alpha))
    return t, torch.kron(first, second) * scale


def loha(gen, shape, rank=4, alpha=2.0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    out_f, in_f = shape
    t = {
        "hada_w1_a": rand(gen, out_f, rank),
        "hada_w1_b": rand(gen, rank, in_f),
        "hada_w2_a": rand(gen, out_f, rank),
        "hada_w2_b": rand(gen, rank, in_f),
        "alpha": torch.tensor(alpha),
    }
    return t, (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"]) * (alpha / rank)


def lora(gen, shape, rank=4, alpha=None, down="lora_down.weight", up="lora_up.weight"):
    out_f, in_f = shape
    t = {down: rand(gen, rank, in_f), up: rand(gen, out_f, rank)}
    if alpha is not None:
        t["alpha"] = torch.tensor(float(alpha))
    return t, t[up] @ t[down] * ((alpha or rank) / rank)


class Built:
    """A crafted file's tensors and the hand-computed deltas: diffusers layer → ΔW, for transformer and CLIP."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.transformer: dict[str, torch.Tensor] = {}
        self.text_encoder: dict[str, torch.Tensor] = {}

    def add(
        self,
        key: str,
        parts: dict[str, torch.Tensor],
        delta: torch.Tensor,
        bfl: str | None = None,
        layer: str | None = None,
        clip: str | None = None,
    ) -> Built:
        self.tensors |= {f"{key}.{suffix}": value for suffix, value in parts.items()}
        if clip:
            self.text_encoder[clip] = delta
        elif layer:
            self.transformer[layer] = delta
        else:
            for target, rows in BFL[bfl]:
                if rows == "swap":
                    self.transformer[target] = torch.cat(delta.chunk(2, 0)[::-1])
                else:
                    self.transformer[target] = delta if rows is None else delta[rows[0] : rows[1]]
        return self


def lokr_kohya(seed=0) -> Built:
    """kohya/LyCORIS names on BFL layers: fused qkv (W1 rows not a multiple of 3), full×full, low-rank×low-rank, the
    final layer's swapped halves, and a CLIP layer."""
    gen = torch.Generator().manual_seed(seed)
    built = Built()
    for bfl, w1, kwargs in (
        ("double_blocks.0.img_attn.qkv", (4, 4), {"w2_rank": 4, "alpha": 2.0}),
        ("double_blocks.1.txt_attn.qkv", (6, 8), {}),
        ("double_blocks.0.img_mlp.0", (8, 4), {"w1_rank": 2, "w2_rank": 2, "alpha": 1.0}),
        ("single_blocks.1.linear2", (4, 8), {}),
        ("final_layer.adaLN_modulation.1", (2, 2), {}),
    ):
        built.add(kohya_name(bfl), *lokr(gen, SHAPES[bfl], w1, **kwargs), bfl=bfl)
    return built.add(te_name(TE_Q), *lokr(gen, TE_SHAPES[TE_Q], (4, 4), w2_rank=2, alpha=4.0), clip=TE_Q)


def lokr_named(seed=1) -> Built:
    """SimpleTuner/LyCORIS on diffusers layers (``lycoris_`` + the layer's name) and BFL dotted names."""
    gen = torch.Generator().manual_seed(seed)
    built = Built()
    for layer, shape, w1 in (
        ("transformer_blocks.0.attn.to_q", (W, W), (8, 8)),
        ("single_transformer_blocks.0.proj_mlp", (4 * W, W), (16, 4)),
        ("transformer_blocks.1.ff_context.net.2", (W, 4 * W), (4, 16)),
    ):
        built.add("lycoris_" + layer.replace(".", "_"), *lokr(gen, shape, w1, w2_rank=3, alpha=3.0), layer=layer)
    return built.add(
        "diffusion_model.double_blocks.1.img_attn.proj", *lokr(gen, (W, W), (3, 6)), bfl="double_blocks.1.img_attn.proj"
    )


def loha_kohya(seed=2) -> Built:
    gen = torch.Generator().manual_seed(seed)
    built = Built()
    for bfl in ("double_blocks.0.img_attn.qkv", "double_blocks.1.img_attn.proj", "single_blocks.1.linear2"):
        built.add(kohya_name(bfl), *loha(gen, SHAPES[bfl]), bfl=bfl)
    return built.add(te_name(TE_FC1), *loha(gen, TE_SHAPES[TE_FC1], rank=2, alpha=1.0), clip=TE_FC1)


def kohya_with_clip(seed=3) -> Built:
    gen = torch.Generator().manual_seed(seed)
    built = Built()
    for bfl in ("double_blocks.0.img_attn.qkv", "double_blocks.1.img_attn.proj"):
        built.add(kohya_name(bfl), *lora(gen, SHAPES[bfl], alpha=2.0), bfl=bfl)
    for layer in (TE_Q, TE_FC1):
        built.add(te_name(layer), *lora(gen, TE_SHAPES[layer], alpha=8.0, rank=4), clip=layer)
    return built


def bfl_peft(prefix="diffusion_model.", seed=4) -> Built:
    """BFL names with peft suffixes (``diffusion_model.`` as ComfyUI writes them; ``base_model.model.``: fal's
    Kontext trainer), including the image input and the final layer."""
    gen = torch.Generator().manual_seed(seed)
    built = Built()
    for bfl in (
        "double_blocks.0.img_attn.qkv",
        "double_blocks.1.txt_attn.qkv",
        "single_blocks.1.linear2",
        "final_layer.adaLN_modulation.1",
        "img_in",
    ):
        built.add(prefix + bfl, *lora(gen, SHAPES[bfl], down="lora_A.weight", up="lora_B.weight"), bfl=bfl)
    return built


def dora(transformer, seed=5) -> Built:
    """peft DoRA keys; its 'delta' here is the whole new weight m·(W + BA)/‖W + BA‖ (per output row)."""
    gen = torch.Generator().manual_seed(seed)
    built = Built()
    for layer in ("transformer_blocks.0.attn.to_q", "transformer_blocks.1.ff.net.2", "proj_out"):
        base = transformer.get_submodule(layer)
        weight = (base.get_base_layer() if hasattr(base, "get_base_layer") else base).weight.detach().float()
        parts, delta = lora(gen, tuple(weight.shape), down="lora_A.weight", up="lora_B.weight")
        norm = (weight + delta).norm(dim=1)
        magnitude = norm * (1 + 0.5 * torch.rand(norm.shape, generator=gen))
        parts["lora_magnitude_vector"] = magnitude
        built.add("transformer." + layer, parts, (magnitude / norm)[:, None] * (weight + delta) - weight, layer=layer)
    return built


def write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


# ---- generating -----------------------------------------------------------------------------------------
def pixels(record) -> np.ndarray:
    return np.asarray(Image.open(record["images"][0]["path"]).convert("RGB")).astype(np.int16)


def generate(studio, *loras: LoraSpec, seed: int = 7) -> np.ndarray:
    return pixels(studio.generate(GenerationRequest(prompt=PROMPT, seed=seed, steps=2, loras=tuple(loras))))


@contextmanager
def merged(studio, built: Built, weight: float = 1.0):
    """The file's hand-computed deltas added into the live weights (restored bit for bit afterwards); the prompt
    cache is emptied around it, since CLIP's weights change under the same cache key."""
    engine = studio.engine
    models = {"transformer": engine.pipe.transformer, "text_encoder": engine.pipe.text_encoder}
    saved = []
    with torch.no_grad():
        for model, deltas in ((models["transformer"], built.transformer), (models["text_encoder"], built.text_encoder)):
            layers = {name.removeprefix("text_model."): module for name, module in model.named_modules()}
            for name, delta in deltas.items():
                layer = layers[name.removeprefix("text_model.")]
                layer = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer  # under peft wrappers
                saved.append((layer, layer.weight.detach().clone()))
                layer.weight.add_(weight * delta.to(layer.weight.dtype))
    engine._text_cache.clear()
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, original in saved:
                layer.weight.copy_(original)
        engine._text_cache.clear()


def prove(studio, name: str, built: Built, weight: float = 1.0) -> tuple[np.ndarray, np.ndarray, str]:
    """(a) loads and changes the image, (b) equals the hand-merged reference, (c) off gives the base exactly.
    Returns (base, with the LoRA, the format inspection named)."""
    write(studio.settings.data_dir / "loras" / f"{name}.safetensors", built.tensors)
    base = generate(studio)
    styled = generate(studio, LoraSpec(name, "", weight))
    info = studio.engine.lora_adapters.active[0].info
    assert info.matched == info.total == len(built.transformer) + len(built.text_encoder), info.summary
    assert info.text_encoder == len(built.text_encoder)
    assert np.abs(styled - base).max() > 20, "the LoRA should change the image"
    with merged(studio, built, weight):
        reference = generate(studio)
    assert np.abs(styled - reference).max() <= TOLERANCE
    assert np.array_equal(generate(studio), base)
    return base, styled, info.format


@pytest.fixture(scope="module", autouse=True)
def remove_adapters_afterwards(engine):
    """Other test modules share the engine: leave its transformer and text encoder as we found them."""
    yield
    engine.lora_adapters.clear()


# ---- the proofs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lokr_kohya, lokr_named], ids=["kohya-bfl-names", "lycoris-diffusers-names"])
def test_lycoris_lokr_equals_its_kronecker_delta_merged_by_hand(studio, make):
    assert prove(studio, f"lokr_{make.__name__}", make())[2] == "lycoris-lokr"


def test_lokr_weight_scales_the_delta(studio):
    prove(studio, "lokr_half", lokr_kohya(seed=10), weight=0.5)


def test_lycoris_loha_with_fused_qkv_and_clip_equals_its_hadamard_delta(studio):
    assert prove(studio, "loha", loha_kohya())[2] == "lycoris-loha"


def test_kohya_clip_part_loads_onto_the_text_encoder(studio):
    built = kohya_with_clip()
    base, styled, fmt = prove(studio, "kohya_clip", built)
    assert fmt == "kohya"
    unet_only = {k: v for k, v in built.tensors.items() if not k.startswith("lora_te1_")}
    write(studio.settings.data_dir / "loras" / "kohya_unet.safetensors", unet_only)
    assert np.abs(generate(studio, LoraSpec("kohya_unet")) - styled).max() > 0  # the CLIP part counts
    again = generate(studio, LoraSpec("kohya_clip"))  # after another file's CLIP state: not a stale prompt cache
    assert np.array_equal(again, styled)
    studio.engine._text_cache.clear()  # switched off, CLIP itself (not only the cached prompt) gives the base
    assert np.array_equal(generate(studio), base)


@pytest.mark.parametrize(
    ("prefix", "fmt"), [("diffusion_model.", "bfl-peft"), ("", "bfl-peft"), ("base_model.model.", "fal-kontext")]
)
def test_bfl_named_peft_files_convert_through_diffusers(studio, prefix, fmt):
    assert prove(studio, f"bfl_{fmt}_{bool(prefix)}", bfl_peft(prefix))[2] == fmt


def test_peft_dora_equals_its_merged_weights(studio):
    assert prove(studio, "dora", dora(studio.engine.pipe.transformer))[2] == "dora"


def test_lycoris_and_bfl_loras_switch_without_reloads(studio, monkeypatch):
    folder = studio.settings.data_dir / "loras"
    write(folder / "k.safetensors", lokr_kohya(seed=20).tensors)
    write(folder / "h.safetensors", loha_kohya(seed=21).tensors)
    write(folder / "p.safetensors", bfl_peft(seed=22).tensors)
    loads = studio.engine.load_count
    first = generate(studio, LoraSpec("k"))
    mixed = generate(studio, LoraSpec("k", "", 0.7), LoraSpec("h"), LoraSpec("p", "", 0.5))
    assert np.array_equal(generate(studio, LoraSpec("k")), first)
    adapters = studio.engine.lora_adapters
    adapters.clear()
    monkeypatch.setattr(adapters, "max_loaded", 1)  # one slot: each file replaces the last (LoHa is never swapped)
    for name in ("p", "h", "k"):
        generate(studio, LoraSpec(name))
    assert np.array_equal(generate(studio, LoraSpec("k")), first) and len(adapters.loaded) == 1
    assert studio.engine.load_count == loads and len({first.tobytes(), mixed.tobytes()}) == 2


# ---- FLUX.1-dev's layout ---------------------------------------------------------------------------------
def flux_dev_skeleton():
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    with init_empty_weights():
        return FluxTransformer2DModel(guidance_embeds=True)  # diffusers' defaults are FLUX.1-dev's shapes


def fal_kontext_full(rank: int = 1) -> dict[str, torch.Tensor]:
    """Every layer fal's Kontext trainer writes, at FLUX.1-dev's shapes (rank 1, half precision: small)."""
    d, mlp = 3072, 12288
    shapes = {"final_layer.linear": (64, d)}
    for i in range(19):
        for side in ("img", "txt"):
            shapes |= {
                f"double_blocks.{i}.{side}_mod.lin": (6 * d, d),
                f"double_blocks.{i}.{side}_attn.qkv": (3 * d, d),
                f"double_blocks.{i}.{side}_attn.proj": (d, d),
                f"double_blocks.{i}.{side}_mlp.0": (mlp, d),
                f"double_blocks.{i}.{side}_mlp.2": (d, mlp),
            }
    for i in range(38):
        shapes |= {
            f"single_blocks.{i}.modulation.lin": (3 * d, d),
            f"single_blocks.{i}.linear1": (3 * d + mlp, d),
            f"single_blocks.{i}.linear2": (d, d + mlp),
        }
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, (out_f, in_f) in shapes.items():
        out[f"base_model.model.{name}.lora_A.weight"] = torch.randn(rank, in_f, generator=gen).half()
        out[f"base_model.model.{name}.lora_B.weight"] = torch.randn(out_f, rank, generator=gen).half()
    return out


def test_fal_kontext_full_layout_uses_diffusers_fal_converter_and_fits_flux1_dev(tmp_path):
    from diffusers.loaders.lora_conversion_utils import _convert_fal_kontext_lora_to_diffusers

    from studio.lora.formats import bfl_as_kohya, to_diffusers

    tensors = fal_kontext_full()
    skeleton = flux_dev_skeleton()
    fal, _ = to_diffusers(tensors, "fal-kontext", skeleton, "fal")
    assert fal.keys() == _convert_fal_kontext_lora_to_diffusers(dict(tensors)).keys()
    generic, _ = to_diffusers(bfl_as_kohya(tensors), "kohya", skeleton, "fal")  # the route flux-mini takes
    assert fal.keys() == generic.keys() and all(torch.equal(fal[k], generic[k]) for k in fal)
    info = inspect(write(tmp_path / "kontext.safetensors", tensors), skeleton)
    assert (info.format, info.matched, info.total) == ("fal-kontext", len(fal) // 2, len(fal) // 2)


def test_lycoris_single_block_linear1_maps_at_flux1_dev_widths_only(tmp_path, engine):
    """diffusers' kohya converter splits ``single_blocks.N.linear1`` at FLUX.1-dev's widths (3072 ×3 + 12288)."""
    from studio.lora import lycoris

    routed = lycoris.bfl_rows({"single_blocks.3.linear1": (3 * 3072 + 12288, 3072)})["single_blocks.3.linear1"]
    assert [(t.layer, int(t.rows[0]), len(t.rows)) for t in routed] == [
        ("single_transformer_blocks.3.attn.to_q", 0, 3072),
        ("single_transformer_blocks.3.attn.to_k", 3072, 3072),
        ("single_transformer_blocks.3.attn.to_v", 6144, 3072),
        ("single_transformer_blocks.3.proj_mlp", 9216, 12288),
    ]
    gen = torch.Generator().manual_seed(0)
    parts, _ = lokr(gen, (4 * W + 3 * W, W), (7, 4))
    path = write(
        tmp_path / "l1.safetensors", {f"{kohya_name('single_blocks.0.linear1')}.{k}": v for k, v in parts.items()}
    )
    with pytest.raises(StudioError, match="converter cannot map"):
        inspect(path, engine.pipe.transformer)


# ---- refusals and the CLI ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: {
                f"{kohya_name('double_blocks.0.img_attn.qkv')}.dora_scale": torch.ones(3 * W, 1),
                **{
                    f"{kohya_name('double_blocks.0.img_attn.qkv')}.{k}": v
                    for k, v in lora(torch.Generator(), SHAPES["double_blocks.0.img_attn.qkv"])[0].items()
                },
            },
            "kohya/LyCORIS DoRA .*peft DoRA",
        ),
        (
            lambda: {
                f"{kohya_name('double_blocks.0.img_attn.qkv')}.{k}": v
                for k, v in {**lokr(torch.Generator(), (3 * W, W), (4, 4))[0], "lokr_t2": torch.ones(2, 2)}.items()
            },
            "LyCORIS key .*lokr_t2",
        ),
        (
            lambda: {
                f"{kohya_name('double_blocks.5.img_attn.proj')}.{k}": v
                for k, v in loha(torch.Generator(), (W, W))[0].items()
            },
            "not in this model",
        ),
        (
            lambda: (
                {
                    f"{te_name('text_model.encoder.layers.0.self_attn.q_proj')}.{k}": v
                    for k, v in lora(torch.Generator(), (CLIP, 2 * CLIP))[0].items()
                }
                | {
                    f"{kohya_name('double_blocks.1.img_attn.proj')}.{k}": v
                    for k, v in lora(torch.Generator(), (W, W))[0].items()
                }
            ),
            "CLIP text-encoder modules have wrong shapes",
        ),
    ],
    ids=["kohya-dora", "tucker", "missing-block", "clip-wrong-width"],
)
def test_misfit_formats_are_refused_before_touching_the_model(studio, make, message):
    write(studio.settings.data_dir / "loras" / "bad.safetensors", make())
    pipe = studio.engine.pipe
    before = {n: p.detach().clone() for m in (pipe.transformer, pipe.text_encoder) for n, p in m.named_parameters()}
    with pytest.raises(StudioError, match=message):
        generate(studio, LoraSpec("bad"))
    after = {n: p for m in (pipe.transformer, pipe.text_encoder) for n, p in m.named_parameters()}
    assert after.keys() == before.keys() and all(torch.equal(after[n], before[n]) for n in before)


BUILDERS: dict[str, Callable[[], dict[str, torch.Tensor]]] = {
    "lycoris-lokr": lambda: lokr_kohya().tensors,
    "lycoris-loha": lambda: loha_kohya().tensors,
    "kohya": lambda: kohya_with_clip().tensors,
    "bfl-peft": lambda: bfl_peft().tensors,
    "fal-kontext": lambda: bfl_peft("base_model.model.").tensors,
}


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_cli_inspect_names_each_format_and_checks_clip_too(fmt, tmp_path, monkeypatch, capsys):
    from studio.cli.main import main

    path = write(tmp_path / f"{fmt}.safetensors", BUILDERS[fmt]())
    monkeypatch.setenv("STUDIO_MODEL", str(MODEL))
    assert main(["lora", "inspect", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == fmt and out["target"] == "flux" and out["matched"] == out["total"] > 0
