"""Optional ``torch.compile`` of the transformer: regional compile of its repeated blocks (STUDIO_COMPILE).

``STUDIO_COMPILE=1`` compiles on CUDA (on CPU/MPS it stays off, with a log line); ``STUDIO_COMPILE=force`` compiles
on any device. Regional compile (``compile_repeated_blocks``) compiles one double and one single block once and
reuses the code for all of them: compile time is seconds, not minutes. LoRA hotswap is prepared before the first
LoRA loads, so adapters of any rank up to ``STUDIO_LORA_MAX_RANK`` (default 128) switch without recompiling.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch

from studio.core.errors import StudioError, UnsupportedOnDevice

log = logging.getLogger(__name__)
DEFAULT_LORA_MAX_RANK = 128


def compile_wanted(device: torch.device, env: Mapping[str, str] | None = None) -> bool:
    """Whether to compile on this device: STUDIO_COMPILE=1 on CUDA, =force anywhere; off by default."""
    value = (os.environ if env is None else env).get("STUDIO_COMPILE", "0").strip().lower()
    if value in ("", "0", "false", "off", "no"):
        return False
    if value == "force":
        return True
    if value not in ("1", "true", "on", "yes"):
        raise StudioError(f"STUDIO_COMPILE={value!r} is unknown — use 1 (CUDA only), force (any device) or 0")
    if device.type != "cuda":
        log.info(
            "STUDIO_COMPILE=1 is ignored on %s (compiling there rarely pays) — use force to compile anyway", device.type
        )
        return False
    return True


def lora_max_rank(env: Mapping[str, str] | None = None) -> int:
    """The highest LoRA rank hotswap is prepared for (STUDIO_LORA_MAX_RANK, default 128)."""
    raw = (os.environ if env is None else env).get("STUDIO_LORA_MAX_RANK", str(DEFAULT_LORA_MAX_RANK))
    try:
        rank = int(raw)
    except ValueError:
        rank = 0
    if rank < 1:
        raise StudioError(f"STUDIO_LORA_MAX_RANK={raw!r} must be a positive whole number — e.g. 128")
    return rank


def compile_transformer(transformer: Any) -> None:
    """Regionally compile the transformer's repeated blocks (fullgraph); refused with the reason if unsupported."""
    if not hasattr(transformer, "compile_repeated_blocks") or not getattr(transformer, "_repeated_blocks", None):
        raise UnsupportedOnDevice(
            f"{type(transformer).__name__} has no repeated blocks to compile in this diffusers version — unset STUDIO_COMPILE"
        )
    transformer.compile_repeated_blocks(fullgraph=True)


def prepare_pipeline(pipe: Any, max_rank: int) -> None:
    """Prepare LoRA hotswap (before any LoRA loads), then compile the transformer's repeated blocks."""
    pipe.enable_lora_hotswap(target_rank=max_rank)
    compile_transformer(pipe.transformer)
