"""Transformer weight quantization through diffusers' quantization configs (torchao, bitsandbytes).

Every refusal is a StudioError naming what to use instead: fp8 needs an Ada/Hopper GPU, nf4 a CUDA GPU and the
bitsandbytes package (Linux x86-64 wheels); int8 (torchao weight-only) runs everywhere, the CPU included.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from studio.core.errors import InvalidRequest, UnsupportedOnDevice

QUANTS = ("none", "int8", "fp8", "nf4")


def transformer_config(quant: str, device: torch.device) -> Any | None:
    """The transformer's diffusers quantization config (TorchAoConfig / BitsAndBytesConfig), None for ``none``."""
    if quant in ("", "none"):
        return None
    if quant == "int8":
        from diffusers import TorchAoConfig
        from torchao.quantization import Int8WeightOnlyConfig

        return TorchAoConfig(Int8WeightOnlyConfig())
    if quant == "fp8":
        if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
            raise UnsupportedOnDevice("fp8 needs a CUDA GPU with compute capability ≥ 8.9 (Ada/Hopper) — use int8")
        from diffusers import TorchAoConfig
        from torchao.quantization import Float8WeightOnlyConfig

        return TorchAoConfig(Float8WeightOnlyConfig())
    if quant == "nf4":
        if device.type != "cuda":
            raise UnsupportedOnDevice("nf4 needs a CUDA GPU — use int8 on CPU")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise UnsupportedOnDevice(
                "nf4 needs the bitsandbytes package, which is not installed — `pip install "
                "bitsandbytes` (Linux x86-64 wheels; see requirements.txt), or use int8"
            )
        from diffusers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    raise InvalidRequest(f"quant {quant!r} is unknown — use {', '.join(QUANTS)} (STUDIO_QUANT or the request's quant)")


def quantization_config(quant: str, device: torch.device) -> Any | None:
    """A PipelineQuantizationConfig quantizing the transformer, or None for ``none``; refuses what the device can't run."""
    config = transformer_config(quant, device)
    if config is None:
        return None
    from diffusers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(quant_mapping={"transformer": config})
