"""Step caching through diffusers' cache hooks: First-Block Cache, MagCache, TaylorSeer.

Our loop wraps every transformer call in ``cache_context("cond"/"uncond")``, as diffusers' pipelines do, so the
hooks keep separate state for the positive and negative passes. The hooks are attached for one generation and
removed after it, so a request without caching always runs the plain transformer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from studio.core.request import CacheSpec
from studio.engine.caching_hints import DEFAULT_THRESHOLDS, HINTS  # noqa: F401 - re-exported


def cache_config(spec: CacheSpec, steps: int) -> Any | None:
    """The diffusers cache config for a request's cache spec (None for ``none``)."""
    if spec.kind == "none":
        return None
    threshold = spec.threshold if spec.threshold is not None else DEFAULT_THRESHOLDS[spec.kind]
    if spec.kind == "fbcache":
        from diffusers import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=threshold)
    if spec.kind == "magcache":
        from diffusers import MagCacheConfig
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        return MagCacheConfig(threshold=threshold, num_inference_steps=steps, mag_ratios=FLUX_MAG_RATIOS)
    from diffusers import TaylorSeerCacheConfig

    return TaylorSeerCacheConfig(
        cache_interval=max(1, int(round(threshold))), disable_cache_before_step=1, taylor_factors_dtype=torch.float32
    )


@contextmanager
def step_cache(transformer: Any, spec: CacheSpec, steps: int) -> Iterator[None]:
    """Attach the cache hooks for one generation and always remove them afterwards."""
    config = cache_config(spec, steps)
    if config is None:
        yield
        return
    transformer.enable_cache(config)
    try:
        yield
    finally:
        transformer.disable_cache()
