"""Build a FluxPipeline from ModelFiles with diffusers' single-file loaders; configs are local, nothing is fetched.

The transformer goes through ``FluxTransformer2DModel.from_single_file`` (GGUF with ``GGUFQuantizationConfig``;
FLUX.1-width BFL files converted by diffusers' own converter, narrower ones by ``studio.models.layout``), the VAE
through ``AutoencoderKL.from_single_file``, CLIP and T5 through diffusers' single-file CLIP/T5 loaders (the
``text_encoders.clip_l/t5xxl.transformer.`` names they know), and what comes from a diffusers folder through
``from_pretrained`` on its subfolder. ``from_single_file`` takes a quantization config's weights as quantized already,
so int8/fp8 (torchao) are applied after loading, as ``from_pretrained`` applies them: on every ``nn.Linear``.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from studio.core.errors import InvalidRequest, UnsupportedOnDevice
from studio.models import layout as flux_layout
from studio.models.files import ModelFiles, Part

CLIP_PREFIX = "text_encoders.clip_l.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."


def read_pipeline(files: ModelFiles, dtype: torch.dtype, quantization: Any | None = None) -> Any:
    """The FluxPipeline the files make (on the CPU); ``quantization`` is the transformer's diffusers config."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    return FluxPipeline(
        transformer=read_transformer(files, dtype, quantization),
        vae=read_vae(files, dtype),
        text_encoder=read_clip(files, dtype),
        text_encoder_2=read_t5(files, dtype),
        tokenizer=read_tokenizer(files, "tokenizer"),
        tokenizer_2=read_tokenizer(files, "tokenizer_2"),
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(files.config_dir, subfolder="scheduler"),
    )


def read_transformer(files: ModelFiles, dtype: torch.dtype, quantization: Any | None = None) -> Any:
    """The transformer from its file: BFL/ComfyUI/diffusers names, bf16/fp32, fp8 (scaled or not) or GGUF."""
    from diffusers import FluxTransformer2DModel, GGUFQuantizationConfig

    part = files.parts["transformer"]
    kwargs: dict[str, Any] = {"config": str(files.config_dir), "subfolder": "transformer", "dtype": dtype,
                              "local_files_only": True, **files.overrides}  # fmt: skip
    gguf = part.path.suffix.lower() == ".gguf"
    check_quantization(part, quantization, gguf)
    if gguf:
        kwargs["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    state = load_state(part)
    if part.layout in ("bfl", "comfy"):
        state = unscale_fp8(state, dtype)
        if int(state["img_in.weight"].shape[0]) != flux_layout.FLUX1_WIDTH:
            state = flux_layout.to_diffusers(state)  # diffusers' own converter assumes FLUX.1's width
    transformer = FluxTransformer2DModel.from_single_file(state, **kwargs)
    if quantization is not None:  # from_single_file takes a TorchAoConfig's weights as quantized already
        from torchao.quantization import quantize_

        quantize_(transformer, quantization.get_apply_tensor_subclass())  # every nn.Linear, as from_pretrained does
    return transformer


def check_quantization(part: Part, quantization: Any | None, gguf: bool) -> None:
    """Refuse, before reading weights, a quantization a transformer file cannot take."""
    if quantization is None:
        return
    if gguf:
        raise InvalidRequest(
            f"{part.path.name} is GGUF ({part.dtype}): it is quantized already — set STUDIO_QUANT=none "
            "(or leave the request's quant empty) for it"
        )
    from diffusers import TorchAoConfig

    if not isinstance(quantization, TorchAoConfig):
        raise UnsupportedOnDevice(
            f"nf4 (bitsandbytes) quantizes diffusers folders and hub ids, not a single file "
            f"like {part.path.name} — use its GGUF Q4 version (e.g. flux1-dev-Q4_K_S.gguf) or "
            "STUDIO_QUANT=int8 (fp8 on Ada/Hopper GPUs)"
        )


def read_vae(files: ModelFiles, dtype: torch.dtype) -> Any:
    """The autoencoder: BFL ``ae.safetensors`` (LDM names), a diffusers-layout file, or a diffusers folder."""
    from diffusers import AutoencoderKL

    part = files.parts["vae"]
    if part.kind == "folder":
        return AutoencoderKL.from_pretrained(part.path, subfolder="vae", dtype=dtype)
    return AutoencoderKL.from_single_file(load_state(part), config=str(files.config_dir), subfolder="vae",
                                          dtype=dtype, local_files_only=True)  # fmt: skip


def read_clip(files: ModelFiles, dtype: torch.dtype) -> Any:
    """CLIP-L: ComfyUI's ``clip_l.safetensors`` (transformers names), bundled, or a diffusers folder."""
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel

    part = files.parts["text_encoder"]
    if part.kind == "folder":
        return CLIPTextModel.from_pretrained(part.path, subfolder="text_encoder", dtype=dtype)
    state = {CLIP_PREFIX + (k if k.startswith("text_model.") else "text_model." + k): v
             for k, v in upcast_fp8(load_state(part), dtype).items()}  # fmt: skip
    return create_diffusers_clip_model_from_ldm(
        CLIPTextModel,
        state,
        subfolder="text_encoder",
        config=str(files.config_dir),
        torch_dtype=dtype,
        local_files_only=True,
    )


def read_t5(files: ModelFiles, dtype: torch.dtype) -> Any:
    """T5: ComfyUI's ``t5xxl_fp16``/``t5xxl_fp8_e4m3fn.safetensors``, bundled, or a diffusers folder."""
    from diffusers.loaders.single_file_utils import create_diffusers_t5_model_from_checkpoint
    from transformers import T5EncoderModel

    part = files.parts["text_encoder_2"]
    if part.kind == "folder":
        return T5EncoderModel.from_pretrained(part.path, subfolder="text_encoder_2", dtype=dtype)
    state = upcast_fp8(load_state(part), dtype)
    for name, tied in (
        ("encoder.embed_tokens.weight", "shared.weight"),
        ("shared.weight", "encoder.embed_tokens.weight"),
    ):
        if name not in state and tied in state:  # transformers 5 ties these after loading, diffusers' T5 loader not
            state[name] = state[tied]
    state = {T5_PREFIX + k: v for k, v in state.items()}
    model = create_diffusers_t5_model_from_checkpoint(T5EncoderModel, state, subfolder="text_encoder_2",
                                                      config=str(files.config_dir), torch_dtype=dtype,
                                                      local_files_only=True)  # fmt: skip
    return model.eval()  # diffusers' T5 loader leaves it in training mode: its dropout would be on


def read_tokenizer(files: ModelFiles, name: str) -> Any:
    """A tokenizer from the diffusers folder that has it, with the class its ``model_index.json`` names."""
    import transformers

    folder = files.parts[name].path
    index = json.loads((folder / "model_index.json").read_text())
    cls = getattr(transformers, index.get(name, [None, "AutoTokenizer"])[1] or "AutoTokenizer")
    return cls.from_pretrained(folder, subfolder=name)


# ---- tensors ---------------------------------------------------------------------------------------------
def load_state(part: Part) -> dict[str, Any]:
    """The part's tensors with its prefix removed; GGUF through diffusers' reader (quantized GGUFParameters)."""
    if part.path.suffix.lower() == ".gguf":
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        return flux_layout.strip_prefix(load_gguf_checkpoint(str(part.path)), part.prefix or flux_layout.COMFY_PREFIX)
    from safetensors import safe_open

    with safe_open(str(part.path), framework="pt", device="cpu") as handle:  # only this part's tensors are read
        return {key[len(part.prefix) :]: handle.get_tensor(key) for key in handle.keys() if key.startswith(part.prefix)}


def unscale_fp8(state: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """ComfyUI's scaled fp8 (``X.weight`` × ``X.scale_weight``) as plain weights; other tensors as they are."""
    scales = {key.removesuffix(".scale_weight"): value for key, value in state.items() if key.endswith(".scale_weight")}
    if not scales and "scaled_fp8" not in state:
        return state
    out = {}
    for key, value in state.items():
        if key == "scaled_fp8" or key.endswith((".scale_weight", ".scale_input")):
            continue
        base = key.removesuffix(".weight")
        out[key] = value.to(dtype) * scales[base].to(dtype) if key.endswith(".weight") and base in scales else value
    return out


def upcast_fp8(state: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """fp8 tensors (``t5xxl_fp8_e4m3fn``) in the compute dtype; others as they are."""
    fp8 = (torch.float8_e4m3fn, torch.float8_e5m2)
    return {key: value.to(dtype) if value.dtype in fp8 else value for key, value in state.items()}
