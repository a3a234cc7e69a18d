"""Row batching: one request, or a coalesced group of compatible ones, as the rows of one denoise.

Each member's prompt encodings and seeded noise become its own rows, so every request gets the images it would get
alone (equal up to float rounding of the batched matmuls) and its own progress, cancel and outcome: ``RowProgress``
is the run's sampling listener and cancel flag; a member that is cancelled (or whose listener fails) is finished at
once and leaves, and the denoise stops when no member is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from studio.core.errors import Cancelled
from studio.core.request import MAX_BATCH, GenerationRequest
from studio.engine import memory_estimate, sampling
from studio.engine.context import Finish, RunContext, StepUpdate

PREVIEW_INTERVAL_S = 0.25
Listener = Callable[[sampling.StepInfo], None]


@dataclass(frozen=True)
class Member:
    """A prepared request in a run: its index among the run's requests, the resolved request, its context and its
    rows ``[start, stop)`` of the batch."""

    index: int
    request: GenerationRequest
    context: RunContext
    start: int = 0
    stop: int = 0


def layout(prepared: Sequence[tuple[int, GenerationRequest, RunContext]]) -> list[Member]:
    """Members with consecutive rows, in order."""
    members, start = [], 0
    for index, request, context in prepared:
        members.append(Member(index, request, context, start, start + request.batch_size))
        start += request.batch_size
    return members


def concat(conds: Sequence[sampling.TextConditioning]) -> sampling.TextConditioning:
    """Per-row text encodings of several prompts as one batch (text ids are shared: same sequence length)."""
    return sampling.TextConditioning(
        torch.cat([c.prompt_embeds for c in conds]), torch.cat([c.pooled_embeds for c in conds]), conds[0].text_ids
    )


def cancelled(message: str, resolved: GenerationRequest) -> Cancelled:
    """A Cancelled that carries the resolved request (its record keeps it)."""
    exc = Cancelled(message)
    exc.request = resolved  # type: ignore[attr-defined]
    return exc


def step_listener(pipe: Any, on_step: Callable[[StepUpdate], None] | None, height: int, width: int) -> Listener | None:
    """A sampling listener that reports StepUpdates with a preview at most every PREVIEW_INTERVAL_S."""
    if on_step is None:
        return None
    last = [0.0]

    def listener(info: sampling.StepInfo) -> None:
        preview = None
        now = time.perf_counter()
        if info.step + 1 < info.total and now - last[0] >= PREVIEW_INTERVAL_S:
            preview = sampling.decode(pipe, info.x0[:1], height, width)[0]
            last[0] = now
        on_step(StepUpdate(info.step + 1, info.total, preview, info.elapsed_s))

    return listener


class RowProgress:
    """The run's sampling listener and cancel flag: each member's listener sees its own rows of the x0 estimate."""

    def __init__(self, members: Sequence[Member], listeners: Sequence[Listener | None], finish: Finish) -> None:
        self.members, self.listeners, self.finish = list(members), list(listeners), finish
        self.active = [True] * len(self.members)

    @property
    def has_listeners(self) -> bool:
        """True when some member listens to its progress."""
        return any(listener is not None for listener in self.listeners)

    def is_set(self) -> bool:
        """Finish the members cancelled by now; True (stop the denoise) when no member is left."""
        for k, member in enumerate(self.members):
            if self.active[k] and member.context.cancel.is_set():
                self._leave(k, cancelled("generation cancelled", member.request))
        return not any(self.active)

    def __call__(self, info: sampling.StepInfo) -> None:
        for k, member in enumerate(self.members):
            if not self.active[k]:
                continue
            if member.context.cancel.is_set():  # this request leaves now; its rows finish unused
                self._leave(k, cancelled("generation cancelled", member.request))
                continue
            listener = self.listeners[k]
            if listener is None:
                continue
            try:  # a failing progress listener ends its own request, not its partners'
                listener(sampling.StepInfo(info.step, info.total, info.x0[member.start : member.stop], info.elapsed_s))
            except Exception as exc:  # noqa: BLE001 - handed to that request's caller
                if isinstance(exc, Cancelled):
                    exc.request = member.request  # type: ignore[attr-defined]
                self._leave(k, exc)

    def before_decoding(self) -> None:
        """Finish the members cancelled after the last step (their rows are not decoded)."""
        for k, member in enumerate(self.members):
            if self.active[k] and member.context.cancel.is_set():
                self._leave(k, cancelled("generation cancelled before decoding", member.request))

    def rows(self) -> list[int]:
        """The batch rows of the members still active."""
        return [r for k, m in enumerate(self.members) if self.active[k] for r in range(m.start, m.stop)]

    def split(self, images: Sequence[Any]) -> list[list[Any] | None]:
        """The decoded images of ``rows()``, per member (None for a member that left)."""
        it = iter(images)
        return [
            [next(it) for _ in range(m.stop - m.start)] if self.active[k] else None for k, m in enumerate(self.members)
        ]

    def _leave(self, k: int, outcome: BaseException) -> None:
        self.active[k] = False
        self.finish(self.members[k].index, outcome)


def rows_that_fit(pipe: Any, defaults: Any, device: Any, request: GenerationRequest, cap_mb: float | None) -> int:
    """How many images of ``request``'s size one batched denoise may hold in free memory; unlimited before a model
    is loaded or when memory is unknown; ``cap_mb``: Settings.max_memory_mb."""
    if pipe is None or defaults is None:
        return MAX_BATCH
    try:
        shape = memory_estimate.shape_of(pipe, defaults.max_sequence_length)
        budget = memory_estimate.available_bytes(device, pipe, cap_mb)
    except Exception:  # noqa: BLE001 - no estimate (e.g. no CUDA context yet): the batch limit alone
        return MAX_BATCH
    width, height = request.width or defaults.width, request.height or defaults.height
    rows = 1
    while rows < MAX_BATCH and memory_estimate.estimate_bytes(shape, width, height, rows + 1) <= budget:
        rows += 1
    return rows
