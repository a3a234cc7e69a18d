"""Hugging Face Spaces: ZeroGPU's ``spaces.GPU`` around GPU work when ``SPACES_ZERO_GPU`` is set, else a no-op."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space."""
    return bool(os.environ.get("SPACES_ZERO_GPU"))


def gpu(fn: F, duration: int = 120) -> F:
    """``spaces.GPU(duration=...)(fn)`` on ZeroGPU; ``fn`` unchanged everywhere else."""
    if not on_zero_gpu():
        return fn
    import spaces

    return spaces.GPU(duration=duration)(fn)
