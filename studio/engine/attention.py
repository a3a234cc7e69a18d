"""The transformer's attention backend (STUDIO_ATTENTION_BACKEND) and the backends regional masks can use.

diffusers' attention dispatcher refuses a mask on flash-attn / sage kernels and reads it as key padding on the
varlen kernels, so a per-query regional mask would fail or be silently wrong there. A generation with regions
therefore runs on native SDPA when another backend is configured, logs that it did, and switches back afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from studio.core.errors import StudioError

log = logging.getLogger(__name__)
MASK_BACKENDS = frozenset({"native", "_native_math", "_native_efficient"})  # take a full query × key mask


def apply_backend(transformer: Any, backend: str) -> None:
    """Use ``backend`` for every attention layer ("" keeps diffusers' default); refused with the fix."""
    if not backend:
        return
    try:
        transformer.set_attention_backend(backend)
    except (ValueError, RuntimeError, ImportError) as exc:
        raise StudioError(
            f"STUDIO_ATTENTION_BACKEND={backend!r} cannot be used here ({str(exc).splitlines()[0][:200]}) — install "
            "its package (flash-attn, sageattention…) or unset it for native SDPA"
        ) from None


@contextmanager
def masked_attention(transformer: Any, backend: str) -> Iterator[None]:
    """Run the block on a backend that takes attention masks (native SDPA when ``backend`` cannot)."""
    if not backend or backend in MASK_BACKENDS:
        yield
        return
    log.warning(
        "regions need attention masks, which the %s backend cannot take — this generation uses native SDPA", backend
    )
    transformer.set_attention_backend("native")
    try:
        yield
    finally:
        transformer.set_attention_backend(backend)
