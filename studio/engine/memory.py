"""Device choice and memory modes (model / sequential / group offload via diffusers + accelerate)."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from studio.core.errors import UnsupportedOnDevice

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA if present, else MPS, else CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UnsupportedOnDevice(f"STUDIO_DEVICE={name} but no CUDA GPU is visible — use cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UnsupportedOnDevice("STUDIO_DEVICE=mps but MPS is not available — use cpu or auto")
    return torch.device(name)


def model_bytes(pipe: Any) -> int:
    """Bytes of all pipeline weights."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(p.numel() * p.element_size() for p in component.parameters())
    return total


def choose_auto_mode(pipe: Any, device: torch.device) -> str:
    """``none`` when everything fits in free VRAM with headroom, ``model`` when the largest part fits, else ``group``."""
    free, _ = torch.cuda.mem_get_info(device)
    whole = model_bytes(pipe)
    largest = max(
        (
            sum(p.numel() * p.element_size() for p in c.parameters())
            for c in pipe.components.values()
            if isinstance(c, torch.nn.Module)
        ),
        default=0,
    )
    if whole * 1.25 < free:
        return "none"
    if largest * 1.4 < free:
        return "model"
    return "group"


def apply_memory_mode(pipe: Any, mode: str, device: torch.device) -> str:
    """Place the pipeline on the device according to ``mode``; returns the mode applied."""
    if device.type != "cuda":
        if mode not in ("none", "auto"):
            raise UnsupportedOnDevice(f"memory mode {mode} needs a CUDA GPU — use none on {device}")
        pipe.to(device)
        return "none"
    if mode == "auto":
        mode = choose_auto_mode(pipe, device)
        log.info("memory mode auto → %s", mode)
    if mode == "none":
        pipe.to(device)
    elif mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif mode == "group":
        pipe.enable_group_offload(
            onload_device=device, offload_device=torch.device("cpu"), offload_type="leaf_level", use_stream=True
        )
    return mode


def default_threads() -> int:
    """Half the cores (at least one): torch's spinning workers slow down badly when a core is taken."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))
