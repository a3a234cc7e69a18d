"""Optional ``torch.compile`` of the transformer: regional compile of its repeated blocks (STUDIO_COMPILE).

``STUDIO_COMPILE=1`` compiles on CUDA (on CPU/MPS it stays off, with a log line); ``STUDIO_COMPILE=force`` compiles
on any device. Regional compile (``compile_repeated_blocks``) compiles one double and one single block once and
reuses the code for all of them: compile time is seconds, not minutes. LoRA hotswap is prepared before the first
LoRA loads, so adapters of any rank up to ``STUDIO_LORA_MAX_RANK`` (default 128) switch without recompiling.
Both are read once, into ``Settings.compile`` and ``Settings.lora_max_rank``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from studio.core.errors import UnsupportedOnDevice
from studio.core.settings import parse_compile

log = logging.getLogger(__name__)


def compile_wanted(device: torch.device, mode: str) -> bool:
    """Whether to compile on this device: ``mode`` is ``Settings.compile`` (STUDIO_COMPILE) — "1" compiles on CUDA,
    "force" anywhere, "0" (the default) never."""
    mode = parse_compile(mode)
    if mode == "0":
        return False
    if mode == "force":
        return True
    if device.type != "cuda":
        log.info(
            "STUDIO_COMPILE=1 is ignored on %s (compiling there rarely pays) — use force to compile anyway", device.type
        )
        return False
    return True


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
