"""Transformer weight quantization through diffusers' quantization configs (torchao, bitsandbytes)."""

from __future__ import annotations

from typing import Any

import torch

from studio.errors import InvalidRequest, UnsupportedOnDevice


def quantization_config(quant: str, device: torch.device) -> Any | None:
    """A PipelineQuantizationConfig quantizing the transformer, or None for ``none``; refuses what the device can't run."""
    if quant in ("", "none"):
        return None
    from diffusers import PipelineQuantizationConfig

    if quant == "int8":
        from diffusers import TorchAoConfig
        from torchao.quantization import Int8WeightOnlyConfig

        mapping = {"transformer": TorchAoConfig(Int8WeightOnlyConfig())}
    elif quant == "fp8":
        if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
            raise UnsupportedOnDevice("fp8 needs a CUDA GPU with compute capability ≥ 8.9 (Ada/Hopper) — use int8")
        from diffusers import TorchAoConfig
        from torchao.quantization import Float8WeightOnlyConfig

        mapping = {"transformer": TorchAoConfig(Float8WeightOnlyConfig())}
    elif quant == "nf4":
        if device.type != "cuda":
            raise UnsupportedOnDevice("nf4 (bitsandbytes) needs a CUDA GPU — use int8 on this machine")
        from diffusers import BitsAndBytesConfig

        mapping = {
            "transformer": BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
            )
        }
    else:
        raise InvalidRequest(f"quant {quant!r} is unknown — use none, int8, fp8 or nf4")
    return PipelineQuantizationConfig(quant_mapping=mapping)
