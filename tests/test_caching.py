"""Step caching via diffusers' hooks: it really skips work, and a request without it is untouched."""

from __future__ import annotations

import pytest

from studio.core.request import CacheSpec, GenerationRequest

PROMPT = "a red circle in the top left on a white background"


def count_block_calls(engine, request, studio):
    calls = []
    block = engine.pipe.transformer.single_transformer_blocks[-1].attn.to_q  # inside whatever a hook wraps
    handle = block.register_forward_hook(lambda *_: calls.append(1))
    try:
        record = studio.generate(request)
    finally:
        handle.remove()
    return len(calls), record


@pytest.mark.parametrize("kind, threshold", [("fbcache", 5.0), ("taylorseer", 3.0), ("magcache", 5.0)])
def test_cache_skips_blocks_and_is_removed_afterwards(studio, kind, threshold):
    engine = studio.engine
    base = GenerationRequest(prompt=PROMPT, seed=2, steps=12)
    plain_calls, plain = count_block_calls(engine, base, studio)
    cached_calls, cached = count_block_calls(engine, base.replace(cache=CacheSpec(kind, threshold)), studio)
    assert plain_calls == 12 and cached_calls < plain_calls
    assert cached["request"]["cache"] == {"kind": kind, "threshold": threshold}
    after_calls, after = count_block_calls(engine, base, studio)
    assert after_calls == 12 and after["images"][0]["sha256"] == plain["images"][0]["sha256"]
