"""Transformer quantization through diffusers' configs: int8 (torchao) runs on CPU; CUDA-only kinds are refused."""

from __future__ import annotations

import pytest

from studio.core import settings as settings_mod
from studio.core.errors import UnsupportedOnDevice
from studio.core.request import GenerationRequest
from studio.engine.engine import Engine
from tests.conftest import MODEL

PROMPT = "a red circle in the top left on a white background"


@pytest.mark.slow
def test_int8_weight_only_loads_quantized_weights_and_generates():
    engine = Engine(settings_mod.from_env({"STUDIO_MODEL": str(MODEL)}, threads=1))
    result = engine.generate(GenerationRequest(prompt=PROMPT, seed=1, quant="int8"))
    weight = engine.pipe.transformer.transformer_blocks[0].attn.to_q.weight
    assert "Int8" in type(weight).__name__
    assert result.request.quant == "int8" and len(result.images) == 1
    loads = engine.load_count
    engine.generate(GenerationRequest(prompt=PROMPT, seed=2, quant="int8"))
    assert engine.load_count == loads  # same quantization: nothing reloads


@pytest.mark.parametrize("quant", ["fp8", "nf4"])
def test_cuda_only_quantization_is_refused_on_cpu(quant):
    engine = Engine(settings_mod.from_env({"STUDIO_MODEL": str(MODEL)}, threads=1))
    with pytest.raises(UnsupportedOnDevice, match="CUDA"):
        engine.ensure(quant=quant)
