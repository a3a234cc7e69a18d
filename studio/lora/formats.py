"""LoRA file layouts → diffusers/peft state dicts, with diffusers' own converters doing the converting.

This module only renames keys into the layout a diffusers converter reads (BFL module names with peft suffixes, fal's
Kontext trainer) and resolves module names against the live model (the CLIP text encoder, whose module tree differs
between transformers versions). It never touches a model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from studio.core.errors import StudioError
from studio.lora.detect import BFL_MODULES

TE_PREFIX = "text_encoder."
TR_PREFIX = "transformer."
CLIP_PREFIXES = ("lora_te1_", "lora_te_", "text_encoders.clip_l.transformer.", TE_PREFIX)
T5_PREFIXES = ("lora_te2_", "lora_te3_", "text_encoders.t5xxl.", "text_encoder_2.")
PEFT_FORMATS = ("peft", "ai-toolkit", "diffusers", "dora")
# (down, up) suffixes a text-encoder LoRA module may use: kohya/ComfyUI, peft, and diffusers' legacy names
_TE_SUFFIXES = (
    (".lora_down.weight", ".lora_up.weight"),
    (".lora_A.weight", ".lora_B.weight"),
    (".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"),
)


# ---- which part is which ---------------------------------------------------------------------------
def split_text_encoders(
    tensors: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(transformer part, CLIP text-encoder part, T5 part) of a file's tensors, by key prefix."""
    rest, clip, t5 = {}, {}, {}
    for key, value in tensors.items():
        bare = key.removeprefix("base_model.model.")
        if bare.startswith(T5_PREFIXES):
            t5[key] = value
        elif bare.startswith(CLIP_PREFIXES):
            clip[bare] = value
        else:
            rest[key] = value
    return rest, clip, t5


def module_of(key: str, suffixes: tuple[str, ...]) -> tuple[str, str] | None:
    """(module, suffix) of a key ending with one of ``suffixes``, else None."""
    return next(((key[: -len(s)], s) for s in suffixes if key.endswith(s)), None)


def modules_by_name(model: torch.nn.Module) -> dict[str, str]:
    """Every layer's dotted name keyed by itself and by its kohya/LyCORIS spelling (dots as underscores).

    CLIP layers are also keyed without their ``text_model.`` level (transformers 5 dropped it; files keep it).
    Spellings shared by two layers are left out, so a name never resolves to the wrong one.
    """
    spellings: dict[str, set[str]] = {}
    for name, module in model.named_modules():
        if not hasattr(module, "in_features") or not name:
            continue
        bare = name.removeprefix("text_model.")
        for spelling in {
            name,
            name.replace(".", "_"),
            bare,
            bare.replace(".", "_"),
            "text_model." + bare,
            ("text_model." + bare).replace(".", "_"),
        }:
            spellings.setdefault(spelling, set()).add(name)
    return {spelling: next(iter(names)) for spelling, names in spellings.items() if len(names) == 1}


def strip_prefix(name: str, prefixes: tuple[str, ...]) -> str:
    """``name`` without the first of ``prefixes`` it starts with."""
    return next((name[len(p) :] for p in prefixes if name.startswith(p)), name)


# ---- the CLIP text encoder -----------------------------------------------------------------------------
def clip_lora(
    tensors: Mapping[str, torch.Tensor], text_encoder: torch.nn.Module | None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """peft keys (``text_encoder.<layer>.lora_A.weight``, kohya ``alpha/rank`` baked into A) and unresolved modules.

    diffusers' kohya converter names CLIP attention layers ``to_q_lora`` (which its text-encoder loader no longer
    maps) and keeps a ``text_model.`` level that transformers 5 dropped, so the layers are resolved here against the
    loaded text encoder instead. Without one (nothing to check against) every module is unresolved.
    """
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.endswith(".alpha"):
            groups.setdefault(key[: -len(".alpha")], {})["alpha"] = value
            continue
        for down, up in _TE_SUFFIXES:
            found = module_of(key, (down, up))
            if found:
                groups.setdefault(found[0], {})["down" if found[1] == down else "up"] = value
                break
        else:
            groups.setdefault(key, {})["unknown"] = value
    names = modules_by_name(text_encoder) if text_encoder is not None else {}
    out: dict[str, torch.Tensor] = {}
    unresolved = []
    for raw, parts in sorted(groups.items()):
        layer = names.get(strip_prefix(raw, CLIP_PREFIXES))
        if layer is None or "down" not in parts or "up" not in parts or "unknown" in parts:
            unresolved.append(raw)
            continue
        down = parts["down"]
        if "alpha" in parts:
            down = down * (float(parts["alpha"]) / down.shape[0])
        out[f"{TE_PREFIX}{layer}.lora_A.weight"] = down
        out[f"{TE_PREFIX}{layer}.lora_B.weight"] = parts["up"]
    return out, unresolved


# ---- the transformer ------------------------------------------------------------------------------------
def to_diffusers(
    tensors: dict[str, torch.Tensor], fmt: str, transformer: torch.nn.Module, name: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Diffusers keys (``transformer.…lora_A.weight``) and network alphas, via diffusers' own converters.

    ``bfl-peft`` (BFL names, peft suffixes) goes through diffusers' kohya converter, which reads BFL names
    (``diffusion_model.`` → ``lora_unet_``); ``fal-kontext`` through diffusers' fal converter when the file has
    FLUX.1's full layout (that converter is written for its 19 + 38 blocks at width 3072), else the same BFL route.
    """
    from diffusers import FluxPipeline

    tensors = dict(tensors)
    if fmt in PEFT_FORMATS:
        tensors = _prefix_peft_keys(tensors, transformer)
    try:
        if fmt == "fal-kontext":
            try:
                return _convert(FluxPipeline, dict(tensors), transformer)
            except (KeyError, ValueError, RuntimeError):
                tensors = bfl_as_kohya(tensors)  # not FLUX.1's full layout: the converter for BFL names
        elif fmt == "bfl-peft":
            tensors = bfl_as_kohya(tensors)
        return _convert(FluxPipeline, tensors, transformer)
    except (ValueError, AssertionError, KeyError, NotImplementedError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise StudioError(
            f"{name} ({fmt} format) could not be converted by diffusers ({detail}) — it was probably trained for a "
            "model of another size; use a LoRA trained for this model"
        ) from None


def _convert(
    pipeline: Any, tensors: dict[str, torch.Tensor], transformer: torch.nn.Module
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """diffusers' conversion; the kohya converter leaves the embedders and final layer (``x_embedder``,
    ``norm_out.linear``, ``proj_out`` …) without the ``transformer.`` prefix its own loader filters on — add it."""
    state_dict, alphas = pipeline.lora_state_dict(tensors, return_alphas=True)
    return _prefix_peft_keys(dict(state_dict), transformer), (dict(alphas) if alphas else None)


def bfl_as_kohya(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BFL-named peft keys (``[diffusion_model.|base_model.model.]double_blocks.0.img_attn.qkv.lora_A.weight``) in the
    ComfyUI layout diffusers' kohya converter reads (``diffusion_model.….lora_down.weight``)."""
    out = {}
    for key, value in tensors.items():
        bare = strip_prefix(key, ("base_model.model.", "diffusion_model."))
        bare = re.sub(r"\.lora_A\.weight$", ".lora_down.weight", bare)
        bare = re.sub(r"\.lora_B\.weight$", ".lora_up.weight", bare)
        out["diffusion_model." + bare if bare.startswith(BFL_MODULES) else key] = value
    return out


def _prefix_peft_keys(tensors: dict[str, torch.Tensor], transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """peft ``save_pretrained`` / bare keys → ``transformer.`` keys (diffusers would silently skip them)."""
    top = {name for name, _ in transformer.named_children()}
    out = {}
    for key, value in tensors.items():
        bare = key.removeprefix("base_model.model.")
        if not bare.startswith((TR_PREFIX, TE_PREFIX)) and bare.split(".", 1)[0] in top:
            bare = TR_PREFIX + bare
        out[bare] = value
    return out
