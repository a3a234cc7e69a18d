"""FLUX.1 transformer weights: BFL layout (``flux1-dev.safetensors``, ComfyUI, GGUF) ↔ diffusers layout, any width.

diffusers' ``convert_flux_transformer_checkpoint_to_diffusers`` fixes the hidden width at FLUX.1's 3072, so it
cannot convert a narrower FLUX-architecture model (the embedded flux-mini). ``to_diffusers`` is the same mapping
with the width read from the checkpoint (tests check it equals diffusers' at 3072); ``to_bfl`` is its inverse.
Tensors are only split, concatenated and reordered along the first dimension, so GGUF-quantized rows work too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

COMFY_PREFIX = "model.diffusion_model."
BFL_MARKER = "double_blocks.0.img_attn.norm.key_norm.scale"
DIFFUSERS_MARKER = "transformer_blocks.0.attn.norm_k.weight"
FLUX1_WIDTH = 3072  # the hidden width diffusers' own converter assumes

# (BFL name, diffusers names, how): "same" renames, "qkv" splits in three equal parts, "single" splits
# q/k/v/mlp (width, width, width, rest), "swap" exchanges the two halves (shift/scale order).
_TOP = [
    ("time_in.in_layer", ("time_text_embed.timestep_embedder.linear_1",), "same"),
    ("time_in.out_layer", ("time_text_embed.timestep_embedder.linear_2",), "same"),
    ("vector_in.in_layer", ("time_text_embed.text_embedder.linear_1",), "same"),
    ("vector_in.out_layer", ("time_text_embed.text_embedder.linear_2",), "same"),
    ("txt_in", ("context_embedder",), "same"),
    ("img_in", ("x_embedder",), "same"),
    ("final_layer.linear", ("proj_out",), "same"),
    ("final_layer.adaLN_modulation.1", ("norm_out.linear",), "swap"),
]
_GUIDANCE = [
    ("guidance_in.in_layer", ("time_text_embed.guidance_embedder.linear_1",), "same"),
    ("guidance_in.out_layer", ("time_text_embed.guidance_embedder.linear_2",), "same"),
]
_DOUBLE = [
    ("img_mod.lin", ("norm1.linear",), "same"),
    ("txt_mod.lin", ("norm1_context.linear",), "same"),
    ("img_attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v"), "qkv"),
    ("txt_attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"), "qkv"),
    ("img_mlp.0", ("ff.net.0.proj",), "same"),
    ("img_mlp.2", ("ff.net.2",), "same"),
    ("txt_mlp.0", ("ff_context.net.0.proj",), "same"),
    ("txt_mlp.2", ("ff_context.net.2",), "same"),
    ("img_attn.proj", ("attn.to_out.0",), "same"),
    ("txt_attn.proj", ("attn.to_add_out",), "same"),
]
_DOUBLE_NORMS = [
    ("img_attn.norm.query_norm.scale", "attn.norm_q.weight"),
    ("img_attn.norm.key_norm.scale", "attn.norm_k.weight"),
    ("txt_attn.norm.query_norm.scale", "attn.norm_added_q.weight"),
    ("txt_attn.norm.key_norm.scale", "attn.norm_added_k.weight"),
]
_SINGLE = [
    ("modulation.lin", ("norm.linear",), "same"),
    ("linear1", ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "single"),
    ("linear2", ("proj_out",), "same"),
]
_SINGLE_NORMS = [("norm.query_norm.scale", "attn.norm_q.weight"), ("norm.key_norm.scale", "attn.norm_k.weight")]


def strip_prefix(state: Mapping[str, Any], prefix: str = COMFY_PREFIX) -> dict[str, Any]:
    """The tensors under ``prefix`` (ComfyUI's ``model.diffusion_model.``) without it; unprefixed ones as they are."""
    if not any(key.startswith(prefix) for key in state):
        return dict(state)
    return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}


def is_bfl(keys: Iterable[str]) -> bool:
    """Whether tensor names are a BFL/ComfyUI FLUX transformer's (``double_blocks.N.…``)."""
    return any(key.removeprefix(COMFY_PREFIX) == BFL_MARKER for key in keys)


def is_diffusers(keys: Iterable[str]) -> bool:
    """Whether tensor names are a diffusers FluxTransformer2DModel's."""
    return any(key == DIFFUSERS_MARKER for key in keys)


def block_counts(keys: Iterable[str]) -> tuple[int, int]:
    """(double blocks, single blocks) of a BFL-layout checkpoint."""
    found: dict[str, set[int]] = {"double_blocks": set(), "single_blocks": set()}
    for key in keys:
        parts = key.removeprefix(COMFY_PREFIX).split(".", 2)
        if len(parts) > 2 and parts[0] in found and parts[1].isdigit():
            found[parts[0]].add(int(parts[1]))
    double, single = (max(found[name]) + 1 if found[name] else 0 for name in found)
    return double, single


def plan(keys: Iterable[str], double: int, single: int) -> list[tuple[str, tuple[str, ...], str]]:
    """Every (BFL name, diffusers names, how) of a transformer with these block counts (names without .weight)."""
    keys = set(keys)
    guidance = any(key.startswith(("guidance_in.", "time_text_embed.guidance_embedder.")) for key in keys)
    plan = list(_TOP) + (list(_GUIDANCE) if guidance else [])
    for i in range(double):
        plan += [(f"double_blocks.{i}.{b}", tuple(f"transformer_blocks.{i}.{d}" for d in ds), how)
                 for b, ds, how in _DOUBLE]  # fmt: skip
        plan += [(f"double_blocks.{i}.{b}", (f"transformer_blocks.{i}.{d}",), "norm") for b, d in _DOUBLE_NORMS]
    for i in range(single):
        plan += [(f"single_blocks.{i}.{b}", tuple(f"single_transformer_blocks.{i}.{d}" for d in ds), how)
                 for b, ds, how in _SINGLE]  # fmt: skip
        plan += [(f"single_blocks.{i}.{b}", (f"single_transformer_blocks.{i}.{d}",), "norm")
                 for b, d in _SINGLE_NORMS]  # fmt: skip
    return plan


def to_diffusers(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """A BFL/ComfyUI-layout FLUX transformer state dict in diffusers' names (the width is read from ``img_in``)."""
    import torch

    state = strip_prefix(checkpoint)
    width = int(state["img_in.weight"].shape[0])
    out: dict[str, Any] = {}
    for bfl, names, how in plan(state, *block_counts(state)):
        if how == "norm":
            out[names[0]] = state[bfl]
            continue
        for suffix in (".weight", ".bias"):
            if bfl + suffix not in state:
                continue
            tensor = state[bfl + suffix]
            if how == "same":
                parts: Any = (tensor,)
            elif how == "swap":
                shift, scale = torch.chunk(tensor, 2, dim=0)
                parts = (torch.cat([scale, shift], dim=0),)
            elif how == "qkv":
                parts = torch.chunk(tensor, 3, dim=0)
            else:  # single: q, k, v of the hidden width, then the MLP's input projection
                parts = torch.split(tensor, [width, width, width, tensor.shape[0] - 3 * width], dim=0)
            for name, part in zip(names, parts, strict=True):
                out[name + suffix] = part
    return out


def to_bfl(state: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A diffusers FluxTransformer2DModel state dict in BFL names (``prefix``: ComfyUI's ``model.diffusion_model.``)."""
    import torch

    double = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")), default=-1)
    single = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks.")), default=-1)
    out: dict[str, Any] = {}
    for bfl, names, how in plan(state, double, single):
        if how == "norm":
            out[prefix + bfl] = state[names[0]]
            continue
        for suffix in (".weight", ".bias"):
            if names[0] + suffix not in state:
                continue
            parts = [state[name + suffix] for name in names]
            if how == "swap":
                scale, shift = torch.chunk(parts[0], 2, dim=0)
                parts = [torch.cat([shift, scale], dim=0)]
            out[prefix + bfl + suffix] = torch.cat(parts, dim=0).contiguous() if len(parts) > 1 else parts[0]
    return out
