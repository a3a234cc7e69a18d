"""Weightless (meta-device) model parts built from a model's configs: enough to check a LoRA's shapes without
loading any weights (``python -m studio lora inspect``)."""

from __future__ import annotations

import logging

import torch

from studio.core.errors import StudioError

log = logging.getLogger(__name__)


def transformer_skeleton(source: str) -> torch.nn.Module:
    """A weightless (meta-device) Flux transformer built from a model's config: enough to check shapes."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    try:
        config = FluxTransformer2DModel.load_config(source, subfolder="transformer")
    except (OSError, ValueError) as exc:
        raise StudioError(
            f"cannot read the transformer config of {source} ({str(exc).splitlines()[0][:160]}) — set "
            "STUDIO_MODEL (or --model) to a diffusers Flux folder or hub id"
        ) from None
    with init_empty_weights():
        return FluxTransformer2DModel.from_config(config)


def text_encoder_skeleton(source: str) -> torch.nn.Module | None:
    """A weightless CLIP text encoder from a model's config, or None when the model has none to read."""
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig, CLIPTextModel

    try:
        config = CLIPTextConfig.from_pretrained(source, subfolder="text_encoder")
    except (OSError, ValueError):
        log.info("no CLIP text-encoder config in %s: its LoRA modules are reported as not checked", source)
        return None
    with init_empty_weights():
        return CLIPTextModel(config)
