"""What one engine call carries and returns: its context (inputs, LoRAs, cancel, listener), progress and result.

Per-call state lives here, not on the shared Engine: a coalesced group runs several contexts at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio.core.request import GenerationRequest

if TYPE_CHECKING:
    from studio.lora.library import LoraLibrary
    from studio.models.catalog import ModelDefaults
    from studio.store.assets import AssetStore


@dataclass(frozen=True)
class StepUpdate:
    """What a progress listener sees after each step: step (1-based), total and an optional preview."""

    step: int
    total: int
    preview: Any | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Result:
    """A finished generation: the resolved request, its images (PIL) with their seeds, and timings."""

    request: GenerationRequest
    images: list[Any]
    seeds: list[int]
    timings: dict[str, float]


@dataclass(frozen=True)
class RunContext:
    """One call's own state: where its input images and LoRAs are found, its cancel event and progress listener."""

    assets: AssetStore
    loras: LoraLibrary
    cancel: threading.Event
    on_step: Callable[[StepUpdate], None] | None = None
    arrived: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Exclusive:
    """What a job holding the engine alone (LoRA training) works with: the resident pipeline, its execution
    device and defaults, and the cancel event ``Engine.cancel()`` sets."""

    pipe: Any
    device: Any
    defaults: ModelDefaults
    cancel: threading.Event


Finish = Callable[[int, "Result | BaseException"], None]  # hands member k of a run its outcome


def run_timings(load_s: float, denoise_s: float, started: float, arrived: float | None) -> dict[str, float]:
    """A run's timings; for a queued request also the time it waited (the window, and any wait for the engine)."""
    now = time.perf_counter()
    timings = {"load_s": round(load_s, 4), "denoise_s": round(denoise_s, 4), "total_s": round(now - started, 4)}
    if arrived is not None:
        timings["queue_s"] = round(started - arrived, 4)
        timings["total_s"] = round(now - arrived, 4)
    return timings
