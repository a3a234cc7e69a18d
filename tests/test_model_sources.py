"""Model files people have load through the studio — BFL/ComfyUI single files (fp32, bf16, fp8), ComfyUI split parts,
GGUF — ``model inspect`` names each format, and STUDIO_QUANT applies to every request that names no quant.

Every file is written here from the embedded flux-mini (FLUX.1's architecture at small widths) in the layouts the
downloadable files use: BFL names (``double_blocks.N.img_attn.qkv``), ComfyUI's ``model.diffusion_model.`` prefix,
LDM names for ``ae.safetensors``, transformers names under ``text_model.`` for ``clip_l``, GGUF via gguf's writer.
FLUX.1-size files are sparse: a real header over holes, enough for everything that reads headers only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from studio.core import settings as settings_mod
from studio.core.errors import ModelMissing, UnsupportedOnDevice
from studio.core.request import GenerationRequest
from studio.engine.engine import Engine
from studio.models import layout as flux_layout
from studio.models.files import SHIPPED_CONFIGS, resolve
from tests.conftest import MODEL, ROOT

PROMPT = "a red circle in the top left on a white background"
REQUEST = GenerationRequest(prompt=PROMPT, seed=3, steps=2, width=128, height=128)
COMFY = flux_layout.COMFY_PREFIX
FP8 = torch.float8_e4m3fn


# ---- flux-mini in the layouts of downloadable files --------------------------------------------------
def transformer_state() -> dict[str, torch.Tensor]:
    return load_file(MODEL / "transformer" / "diffusion_pytorch_model.safetensors")


def vae_to_ldm(state: dict[str, Any], up_blocks: int) -> dict[str, Any]:
    """A diffusers AutoencoderKL state dict in the LDM names of BFL's ``ae.safetensors`` (1×1 conv attention)."""
    out = {}
    for key, value in state.items():
        name = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        name = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", name)
        name = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", name)
        name = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
                      lambda m: f"decoder.up.{up_blocks - 1 - int(m[1])}.block.", name)  # fmt: skip
        name = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                      lambda m: f"decoder.up.{up_blocks - 1 - int(m[1])}.upsample.", name)  # fmt: skip
        name = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", name)
        if "mid_block.attentions.0." in name:
            name = name.replace("mid_block.attentions.0.", "mid.attn_1.").replace("group_norm", "norm")
            for old, new in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
                name = name.replace(f".{old}.", f".{new}.")
            value = value[:, :, None, None] if value.ndim == 2 else value
        out[name] = value.contiguous() if hasattr(value, "contiguous") else value
    return out


def scaled_fp8(bfl: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ComfyUI's scaled fp8: each matrix / its scale in e4m3fn, ``.scale_weight`` beside it, a ``scaled_fp8`` marker."""
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.empty(0, dtype=FP8)}
    for key, value in bfl.items():
        if value.ndim == 2:
            scale = value.abs().max().float() / 448.0
            out[key] = (value / scale).to(FP8)
            out[key.removesuffix(".weight") + ".scale_weight"] = scale.reshape(1)
        else:
            out[key] = value
    return out


def write_gguf(path: Path, qtype_name: str) -> None:
    """flux-mini's transformer in BFL names as a GGUF file (matrices quantized, vectors F32), like city96's."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    qtype = GGMLQuantizationType[qtype_name]
    writer = GGUFWriter(str(path), arch="flux")
    for name, tensor in flux_layout.to_bfl(transformer_state()).items():
        data = tensor.float().numpy()
        if data.ndim == 2 and data.shape[1] % 32 == 0:
            writer.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_configs(folder: Path) -> None:
    """flux-mini's model_index.json, configs and tokenizers — no weights."""
    for src in MODEL.rglob("*"):
        if src.is_file() and src.suffix != ".safetensors":
            dst = folder / src.relative_to(MODEL)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)


def write_sparse(path: Path, shapes: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """A safetensors file with a real header and holes for data (FLUX.1-size files without the disk space)."""
    sizes = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1}
    header, offset = {}, 0
    for name, (dtype, shape) in shapes.items():
        size = sizes[dtype] * int(np.prod(shape))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    with path.open("wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw)
        handle.truncate(8 + len(raw) + offset)


def meta_shapes(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value for name, value in model.state_dict().items()}


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


# ---- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder: flux-mini's diffusers folder (linked) beside its transformer as downloadable files."""
    root = tmp_path_factory.mktemp("shelf")
    shutil.copytree(MODEL, root / "flux-mini", copy_function=os.symlink)
    state = transformer_state()
    bfl = flux_layout.to_bfl(state)
    save_file(bfl, str(root / "flux-mini-fp32.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in bfl.items()}, str(root / "flux-mini-bf16.safetensors"))
    save_file(flux_layout.to_bfl(state, COMFY), str(root / "flux-mini-comfy.safetensors"))
    save_file({COMFY + k: v.to(FP8) if v.ndim == 2 else v for k, v in bfl.items()},
              str(root / "flux-mini-fp8_e4m3fn.safetensors"))  # fmt: skip
    save_file({COMFY + k: v for k, v in scaled_fp8(bfl).items()}, str(root / "flux-mini-fp8_scaled.safetensors"))
    write_gguf(root / "flux-mini-Q8_0.gguf", "Q8_0")
    return root


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ComfyUI split parts (transformer, ae, clip_l, t5xxl) and a config-only diffusers folder for the tokenizers."""
    root = tmp_path_factory.mktemp("split")
    save_file(flux_layout.to_bfl(transformer_state()), str(root / "flux-mini.safetensors"))
    save_file(
        vae_to_ldm(load_file(MODEL / "vae" / "diffusion_pytorch_model.safetensors"), 4), str(root / "ae.safetensors")
    )
    save_file({"text_model." + k: v for k, v in load_file(MODEL / "text_encoder" / "model.safetensors").items()},
              str(root / "clip_l.safetensors"))  # fmt: skip
    shutil.copy(MODEL / "text_encoder_2" / "model.safetensors", root / "t5xxl_fp16.safetensors")  # same names
    write_configs(root / "flux-mini-configs")
    return root


@pytest.fixture(scope="module")
def shelf_engine(shelf: Path, split: Path) -> Engine:
    """One engine serving the shelf and the split folder (STUDIO_MODEL_DIRS), resident on the diffusers folder."""
    env = {"STUDIO_MODEL": str(MODEL), "STUDIO_MODEL_DIRS": f"{shelf}:{split}"}
    return Engine(settings_mod.from_env(env, threads=1))


@pytest.fixture(scope="module")
def reference(shelf_engine: Engine) -> np.ndarray:
    """The diffusers folder's image for REQUEST."""
    return pixels(shelf_engine.generate(REQUEST).images[0])


def generate(engine: Engine, model: Path, quant: str = "") -> tuple[np.ndarray, Any]:
    result = engine.generate(REQUEST.replace(model=str(model), quant=quant))
    assert result.request.model == str(model)
    return pixels(result.images[0]), result


def report_diff(name: str, image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    diff = np.abs(image - reference)
    print(f"{name}: max {diff.max()} mean {diff.mean():.3f} p99.9 {np.percentile(diff, 99.9):.0f} (0–255 levels)")
    return diff


# ---- the BFL layout ----------------------------------------------------------------------------------
def test_layout_converter_equals_diffusers_at_flux1_width():
    """At FLUX.1's width (3072) studio's converter gives diffusers' converter's tensors exactly (1 block each)."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    generator = torch.Generator().manual_seed(0)
    width, checkpoint = flux_layout.FLUX1_WIDTH, {}
    for bfl, _names, how in flux_layout.plan({"guidance_in.in_layer.weight"}, 1, 1):
        rows = {"qkv": 3 * width, "single": 7 * width, "swap": 2 * width}.get(how, width)
        if how == "norm":
            checkpoint[bfl] = torch.randn(4, generator=generator)
        else:  # a narrow second dimension: the converter only splits and reorders rows
            checkpoint[bfl + ".weight"] = torch.randn(rows, 2, generator=generator)
            checkpoint[bfl + ".bias"] = torch.randn(rows, generator=generator)
    ours = flux_layout.to_diffusers(dict(checkpoint))
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(checkpoint))
    assert ours.keys() == theirs.keys() and len(ours) == 66
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_bfl_and_comfy_layouts_round_trip_flux_mini_exactly():
    state = transformer_state()
    for prefix in ("", COMFY):
        bfl = flux_layout.to_bfl(state, prefix)
        assert (
            f"{prefix}double_blocks.1.img_attn.qkv.weight" in bfl and f"{prefix}single_blocks.1.linear1.weight" in bfl
        )
        back = flux_layout.to_diffusers(bfl)
        assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


# ---- (a) single files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["flux-mini-fp32.safetensors", "flux-mini-comfy.safetensors"])
def test_full_precision_single_files_give_the_folders_pixels(shelf_engine, reference, shelf, name):
    image, result = generate(shelf_engine, shelf / name)
    location = shelf_engine._location
    assert location.files is not None and location.files.format == "single-file"
    assert location.files.parts["transformer"].path == (shelf / name).resolve()
    assert location.files.parts["vae"].path == (shelf / "flux-mini").resolve()  # the rest: the folder beside it
    assert result.request.width == 128 and result.request.quant == "none"
    assert report_diff(name, image, reference).max() <= 1  # the same weights: the same pixels (0 measured)


def test_bf16_single_file_gives_nearly_the_folders_pixels(shelf_engine, reference, shelf):
    image, _result = generate(shelf_engine, shelf / "flux-mini-bf16.safetensors")
    loaded, original = shelf_engine.pipe.transformer.state_dict(), transformer_state()
    assert all(torch.equal(loaded[k], original[k].to(torch.bfloat16).float()) for k in original)  # bf16-rounded, exact
    diff = report_diff("bf16", image, reference)  # the rounding alone moves a few pixels (max 22 measured)
    assert np.percentile(diff, 99) <= 1 and diff.mean() < 0.2


@pytest.mark.parametrize("name", ["flux-mini-fp8_e4m3fn.safetensors", "flux-mini-fp8_scaled.safetensors"])
def test_fp8_single_files_give_a_similar_image(shelf_engine, reference, shelf, name):
    image, _result = generate(shelf_engine, shelf / name)
    weight = shelf_engine.pipe.transformer.transformer_blocks[0].attn.to_q.weight
    original = transformer_state()["transformer_blocks.0.attn.to_q.weight"]
    assert weight.dtype == torch.float32 and not torch.equal(weight, original)  # fp8 values, upcast
    assert torch.allclose(weight, original, atol=0.1 * original.abs().max())
    diff = report_diff(name, image, reference)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 10


# ---- (b) ComfyUI split parts -------------------------------------------------------------------------------
def test_comfy_split_folder_generates_the_folders_pixels(shelf_engine, reference, split):
    image, _result = generate(shelf_engine, split)
    files = shelf_engine._location.files
    assert files.format == "comfy-split" and files.config_dir == (split / "flux-mini-configs").resolve()
    assert {name: part.path.name for name, part in files.parts.items()} == {
        "transformer": "flux-mini.safetensors",
        "vae": "ae.safetensors",
        "text_encoder": "clip_l.safetensors",
        "text_encoder_2": "t5xxl_fp16.safetensors",
        "tokenizer": "flux-mini-configs",
        "tokenizer_2": "flux-mini-configs",
    }
    assert not list((split / "flux-mini-configs").rglob("*.safetensors"))  # every weight came from the split files
    assert report_diff("comfy-split", image, reference).max() <= 1


def test_an_all_in_one_checkpoint_takes_every_part_from_itself(tmp_path, reference):
    """ComfyUI's checkpoint layout: transformer, ``vae.``, ``text_encoders.clip_l/t5xxl.transformer.`` in one file."""
    state = {COMFY + k: v for k, v in flux_layout.to_bfl(transformer_state()).items()}
    state.update({"vae." + k: v for k, v in vae_to_ldm(load_file(MODEL / "vae" / "diffusion_pytorch_model.safetensors"),
                                                       4).items()})  # fmt: skip
    clip = load_file(MODEL / "text_encoder" / "model.safetensors")
    state.update({"text_encoders.clip_l.transformer.text_model." + k: v for k, v in clip.items()})
    t5 = load_file(MODEL / "text_encoder_2" / "model.safetensors")
    state.update({"text_encoders.t5xxl.transformer." + k: v for k, v in t5.items()})
    save_file(state, str(tmp_path / "flux-mini-checkpoint.safetensors"))
    write_configs(tmp_path / "flux-mini-configs")
    engine = Engine(settings_mod.from_env({"STUDIO_MODEL": str(tmp_path / "flux-mini-checkpoint.safetensors")},
                                          threads=1))  # fmt: skip
    image = pixels(engine.generate(REQUEST).images[0])
    parts = engine._location.files.parts
    assert {name: parts[name].prefix for name in ("transformer", "vae", "text_encoder", "text_encoder_2")} == {
        "transformer": COMFY, "vae": "vae.", "text_encoder": "text_encoders.clip_l.transformer.",
        "text_encoder_2": "text_encoders.t5xxl.transformer."}  # fmt: skip
    assert report_diff("all-in-one", image, reference).max() <= 1


def test_split_parts_without_what_they_lack_name_it(tmp_path, split):
    for name in ("flux-mini.safetensors", "ae.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors"):
        os.symlink(split / name, tmp_path / name)
    with pytest.raises(ModelMissing, match="no configuration fits flux-mini.safetensors.*diffusers folder"):
        resolve(tmp_path)
    write_configs(tmp_path / "configs")
    shutil.rmtree(tmp_path / "configs" / "tokenizer_2")
    with pytest.raises(ModelMissing, match="needs the tokenizer_2"):
        resolve(tmp_path)
    (tmp_path / "ae.safetensors").unlink()
    with pytest.raises(ModelMissing, match="needs vae .*add ae.safetensors"):
        resolve(tmp_path)


# ---- (c) GGUF --------------------------------------------------------------------------------------------------
def test_gguf_q8_0_loads_with_diffusers_gguf_config_and_generates(shelf_engine, reference, shelf):
    image, result = generate(shelf_engine, shelf / "flux-mini-Q8_0.gguf")
    to_q = shelf_engine.pipe.transformer.transformer_blocks[0].attn.to_q
    assert type(to_q).__name__ == "GGUFLinear" and to_q.weight.quant_type.name == "Q8_0"
    assert shelf_engine._location.files.format == "gguf" and result.request.quant == "none"
    diff = report_diff("gguf Q8_0", image, reference)
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 3


def test_gguf_refuses_a_second_quantization(shelf_engine, shelf):
    from studio.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="GGUF.*quantized already.*STUDIO_QUANT=none"):
        shelf_engine.ensure(str(shelf / "flux-mini-Q8_0.gguf"), "int8")


def test_gguf_types_studio_accepts_are_diffusers_own():
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES

    from studio.models.headers import GGUF_SUPPORTED

    assert set(GGUF_SUPPORTED) == {t.name for t in SUPPORTED_GGUF_QUANT_TYPES} | {"F32", "F16"}


# ---- (d) model inspect -------------------------------------------------------------------------------------------
def run_inspect(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    from studio.cli.main import main

    code = main(["model", "inspect", str(path), "--json"])
    return code, json.loads(capsys.readouterr().out)


def write_forge_nf4(path: Path) -> None:
    """The markers of a Forge bnb-nf4 checkpoint (packed uint8 weights with absmax, quant_map, quant_state)."""
    name = COMFY + "double_blocks.0.img_attn.qkv.weight"
    save_file({name: torch.zeros(16, 1, dtype=torch.uint8), name + ".absmax": torch.ones(4),
               name + ".quant_map": torch.zeros(16), name + ".quant_state.bitsandbytes__nf4": torch.zeros(8, dtype=torch.uint8),
               COMFY + "double_blocks.0.img_attn.norm.key_norm.scale": torch.ones(4)}, str(path))  # fmt: skip


def test_inspect_names_each_format(shelf, split, tmp_path, capsys):
    expected = {
        MODEL: ("diffusers", "float32"), shelf / "flux-mini-fp32.safetensors": ("single-file", "float32"),
        shelf / "flux-mini-bf16.safetensors": ("single-file", "bfloat16"),
        shelf / "flux-mini-comfy.safetensors": ("single-file", "float32"),
        shelf / "flux-mini-fp8_e4m3fn.safetensors": ("single-file", "float8_e4m3fn"),
        shelf / "flux-mini-Q8_0.gguf": ("gguf", "Q8_0"), split: ("comfy-split", "float32"),
    }  # fmt: skip
    for path, (fmt, dtype) in expected.items():
        code, found = run_inspect(path, capsys)
        assert code == 0 and (found["format"], found["dtype"]) == (fmt, dtype), found
        assert (found["family"], found["kind"], found["variant"], found["loadable"], found["reason"]) == \
            ("flux1", "base", "dev", True, None)  # fmt: skip
    write_forge_nf4(tmp_path / "flux1-dev-bnb-nf4-v2.safetensors")
    code, found = run_inspect(tmp_path / "flux1-dev-bnb-nf4-v2.safetensors", capsys)
    assert code == 0 and (found["format"], found["family"], found["dtype"], found["loadable"]) == \
        ("nf4", "flux1", "nf4", False)  # fmt: skip
    assert "Forge bnb-nf4" in found["reason"] and "GGUF" in found["reason"]
    code, found = run_inspect(MODEL.parent / "flux2-mini", capsys)  # the embedded FLUX.2 [klein]-architecture model
    assert code == 0 and (found["format"], found["family"], found["loadable"]) == ("diffusers", "flux2-klein", True)
    assert "FLUX.2 [klein]" in found["reason"]
    code, found = run_inspect(split / "ae.safetensors", capsys)
    assert code == 0 and (found["format"], found["kind"], found["loadable"]) == ("component", "vae", False)
    assert "not a model" in found["reason"]


def test_inspect_exits_2_for_a_missing_or_unreadable_path(tmp_path, capsys):
    (tmp_path / "cut.safetensors").write_bytes((500).to_bytes(8, "little") + b"{")
    (tmp_path / "model.ckpt").write_bytes(b"\x80\x04pickle")
    for path, message in ((tmp_path / "nothing.safetensors", "no such file"), (tmp_path / "cut.safetensors",
                          "truncated"), (tmp_path / "model.ckpt", "pickled")):  # fmt: skip
        code, found = run_inspect(path, capsys)
        assert code == 2 and message in found["error"]


def test_forge_nf4_as_the_model_is_refused_before_loading(tmp_path):
    write_forge_nf4(tmp_path / "flux1-dev-bnb-nf4.safetensors")
    engine = Engine(settings_mod.from_env({"STUDIO_MODEL": str(tmp_path / "flux1-dev-bnb-nf4.safetensors")}, threads=1))
    with pytest.raises(ModelMissing, match="Forge bnb-nf4.*flux1-dev-Q4_K_S.gguf"):
        engine.ensure()
    assert engine.pipe is None


# ---- FLUX.1-size files: the shipped configs (headers only, sparse files) --------------------------------------------
@pytest.fixture(scope="module")
def flux1_shapes() -> dict[str, dict[str, tuple[str, tuple[int, ...]]]]:
    """Tensor names and shapes of FLUX.1-dev's files in their downloadable layouts (from the shipped configs)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    config = SHIPPED_CONFIGS / "flux1-dev"
    with init_empty_weights():
        transformer = FluxTransformer2DModel.from_config(
            FluxTransformer2DModel.load_config(config, subfolder="transformer")
        )
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config, subfolder="vae"))
        clip = CLIPTextModel(CLIPTextConfig.from_pretrained(config, subfolder="text_encoder"))
        t5 = T5EncoderModel(T5Config.from_pretrained(config, subfolder="text_encoder_2"))

    def shapes(state: dict[str, Any], dtype: str) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {name: (dtype, tuple(value.shape)) for name, value in state.items()}

    return {"transformer": shapes(flux_layout.to_bfl(meta_shapes(transformer)), "BF16"),
            "ae": shapes(vae_to_ldm(meta_shapes(vae), 4), "F32"),
            "clip_l": shapes({"text_model." + k: v for k, v in meta_shapes(clip).items()}, "F16"),
            "t5xxl": shapes(meta_shapes(t5), "F8_E4M3")}  # fmt: skip


def test_flux1_dev_files_take_the_shipped_configs_and_name_what_is_missing(tmp_path, flux1_shapes, capsys):
    write_sparse(tmp_path / "flux1-dev.safetensors", flux1_shapes["transformer"])
    with pytest.raises(ModelMissing, match=r"needs vae .*add ae\.safetensors"):
        resolve(tmp_path / "flux1-dev.safetensors")
    write_sparse(tmp_path / "ae.safetensors", flux1_shapes["ae"])
    write_sparse(tmp_path / "clip_l.safetensors", flux1_shapes["clip_l"])
    write_sparse(tmp_path / "t5xxl_fp8_e4m3fn.safetensors", flux1_shapes["t5xxl"])
    with pytest.raises(ModelMissing, match="needs the tokenizer .*FLUX.1-schnell"):
        resolve(tmp_path / "flux1-dev.safetensors")
    code, found = run_inspect(tmp_path / "flux1-dev.safetensors", capsys)
    assert code == 0 and (found["format"], found["family"], found["kind"], found["variant"], found["dtype"],
                          found["loadable"]) == ("single-file", "flux1", "base", "dev", "bfloat16", False)  # fmt: skip
    donor = tmp_path / "FLUX.1-schnell"  # what the message asks for: tokenizers and configs, no weights
    shutil.copytree(SHIPPED_CONFIGS / "flux1-schnell", donor)
    for name in ("tokenizer", "tokenizer_2"):
        shutil.copytree(MODEL / name, donor / name)  # stand-ins: resolving reads only that they are there
    files = resolve(tmp_path / "flux1-dev.safetensors")
    assert files.config_dir == SHIPPED_CONFIGS / "flux1-dev"  # schnell's transformer config has no guidance
    assert files.parts["tokenizer"].path == donor and files.parts["text_encoder_2"].dtype == "float8_e4m3fn"
    assert files.parts["vae"].path.name == "ae.safetensors" and files.variant == "dev"


def test_a_flux1_fill_file_is_the_fill_kind_with_widened_input(tmp_path, flux1_shapes):
    shapes = dict(flux1_shapes["transformer"])
    shapes["img_in.weight"] = ("BF16", (3072, 384))
    write_sparse(tmp_path / "flux1-fill-dev.safetensors", shapes)
    for part in ("ae", "clip_l", "t5xxl"):
        write_sparse(tmp_path / f"{part}.safetensors", flux1_shapes[part])
    shutil.copytree(SHIPPED_CONFIGS / "flux1-dev", tmp_path / "FLUX.1-dev")
    for name in ("tokenizer", "tokenizer_2"):
        shutil.copytree(MODEL / name, tmp_path / "FLUX.1-dev" / name)
    files = resolve(tmp_path / "flux1-fill-dev.safetensors")
    assert (files.kind, dict(files.overrides)) == ("fill", {"in_channels": 384, "out_channels": 64})  # not 384 out


# ---- (e) STUDIO_QUANT -------------------------------------------------------------------------------------------
def cli(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "STUDIO_MODEL": str(MODEL), "STUDIO_DATA_DIR": str(tmp_path / "data"),
            "STUDIO_THREADS": "1", **env}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "studio", *args, "--json"], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.mark.slow  # a CLI process that loads and quantizes: ~45 s on a shared CPU
def test_studio_quant_int8_applies_in_the_cli_and_the_record_says_so(tmp_path):
    done = cli(["generate", "--prompt", PROMPT, "--steps", "1", "--width", "64", "--height", "64", "--seed", "1"],
               {"STUDIO_QUANT": "int8"}, tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["request"]["quant"] == "int8"


def test_studio_quant_nf4_on_cpu_is_refused_with_exit_2_and_no_traceback(tmp_path):
    done = cli(["generate", "--prompt", PROMPT, "--steps", "1"], {"STUDIO_QUANT": "nf4"}, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["error"] == "nf4 needs a CUDA GPU — use int8 on CPU"


def test_a_request_without_quant_takes_studio_quant_on_model_files(shelf, data_dir):
    from studio.service import Studio
    from studio.store.store import Store

    assert GenerationRequest(prompt=PROMPT).validate().quant == ""
    settings = settings_mod.from_env({"STUDIO_MODEL": str(shelf / "flux-mini-fp32.safetensors"), "STUDIO_QUANT": "int8",
                                      "STUDIO_DATA_DIR": str(data_dir)}, threads=1)  # fmt: skip
    store = Store(settings.db_url, settings.data_dir)
    try:
        record = Studio(settings, store=store).generate(GenerationRequest(prompt=PROMPT, seed=1, steps=1))
    finally:
        store.close()
    assert record["request"]["quant"] == "int8"


def test_nf4_on_a_model_file_names_the_gguf_instead(shelf):
    from studio.models.loading import check_quantization

    files = resolve(shelf / "flux-mini-fp32.safetensors")
    nf4 = object()  # any non-torchao config: bitsandbytes' stands for it here (it needs a CUDA GPU to be built)
    with pytest.raises(UnsupportedOnDevice, match="GGUF Q4"):
        check_quantization(files.parts["transformer"], nf4, gguf=False)


# ---- STUDIO_MODEL_DIRS ---------------------------------------------------------------------------------------------
def test_scan_model_dirs_lists_models_not_parts_and_serves_them(shelf, split, tmp_path):
    from studio.models.catalog import scan_model_dirs

    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 4)
    (tmp_path / "old.ckpt").write_bytes(b"\x80\x04pickle")
    shutil.copy(split / "ae.safetensors", tmp_path / "ae.safetensors")
    shutil.copytree(split, tmp_path / "split-parts", copy_function=os.symlink)  # a folder of split parts on the shelf
    settings = settings_mod.from_env({"STUDIO_MODEL_DIRS": f"{shelf}:{tmp_path}"})
    found = {candidate.label: candidate for candidate in scan_model_dirs(settings)}
    assert {label: (c.format, c.dtype, c.loadable) for label, c in found.items() if c.loadable} == {
        "flux-mini": ("diffusers", "float32", True), "flux-mini-fp32.safetensors": ("single-file", "float32", True),
        "flux-mini-bf16.safetensors": ("single-file", "bfloat16", True),
        "flux-mini-comfy.safetensors": ("single-file", "float32", True),
        "flux-mini-fp8_e4m3fn.safetensors": ("single-file", "float8_e4m3fn", True),
        "flux-mini-fp8_scaled.safetensors": ("single-file", "float8_e4m3fn", True),
        "flux-mini-Q8_0.gguf": ("gguf", "Q8_0", True), "split-parts": ("comfy-split", "float32", True)}  # fmt: skip
    assert not found["broken.safetensors"].loadable and "truncated" in found["broken.safetensors"].reason
    assert not found["old.ckpt"].loadable and "pickled" in found["old.ckpt"].reason
    assert "ae.safetensors" not in found  # a part, not a model
    assert all(settings.model_allowed(candidate.name) for candidate in found.values())
    assert not settings.model_allowed(str(MODEL.parent / "flux-mini-controlnet-union"))
