"""Request coalescing: queued compatible txt2img requests run as one batched denoise (a torch-free queue).

Requests with the same compatibility key (model, quantization, size, steps, guidance and true-CFG values and
schedule, LoRA set) that wait for the engine together are denoised as one batch: each request's prompt encodings
and seeded noise become its own rows, so every request gets the images it would get alone (equal up to float
rounding of the batched matmuls) and its own record, progress and cancel. A request waits at most ``window_s``
for partners when the engine is idle; requests that queue behind a running generation join for free.

Not coalesced: regions, controls, img2img/inpaint (they carry per-request inputs) and step caching (the cache
hooks decide over the whole batch, so a partner would change a request's result).

This module only queues and groups (tickets, window, row cap); the engine runs a group's rows
(``studio.engine.rows``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio.core.request import MAX_BATCH, GenerationRequest

if TYPE_CHECKING:
    from studio.engine.context import Result

CoalesceKey = tuple[Any, ...]


def compatibility_key(request: GenerationRequest) -> CoalesceKey | None:
    """What must be equal for two requests to share a batched denoise; None when a request never coalesces.

    Prompts, negative prompts, seeds and batch sizes may differ: they become per-row tensors.
    """
    if request.mode != "txt2img" or request.regions or request.controls or request.init_image or request.mask:
        return None
    if request.references:  # reference tokens are per request (and a model may refuse them): run alone
        return None
    if request.cache.kind != "none":
        return None
    schedule = json.dumps(request.schedule, sort_keys=True) if request.schedule else None
    loras = tuple((lora.name, lora.sha256, float(lora.weight)) for lora in request.loras)
    return (
        request.model,
        request.quant,
        request.width,
        request.height,
        request.steps,
        request.guidance,
        float(request.true_cfg),
        schedule,
        loras,
    )


@dataclass(eq=False)
class Ticket:
    """One waiting request: the request, its caller's context (opaque here), the group it may join, and (once
    finished) its outcome."""

    request: GenerationRequest
    context: Any
    group: Any
    deadline: float
    taken: bool = False
    outcome: Result | BaseException | None = None
    members: list[Ticket] = field(default_factory=list)  # the group this ticket leads (empty for followers)

    @property
    def rows(self) -> int:
        """Images this request adds to the batch."""
        return self.request.batch_size

    def result(self) -> Result:
        """The Result, or the exception it ended with (raised)."""
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        assert self.outcome is not None, "ticket not finished"
        return self.outcome


class Coalescer:
    """Leader/follower queue: the oldest ready waiter takes every compatible waiter and runs them as one group.

    ``run`` is called with a ``take`` function (call it once the engine is free: it returns the group) and must
    finish every ticket of the group through ``finish``.
    """

    def __init__(
        self,
        run: Callable[[Callable[[], list[Ticket]]], None],
        window_s: float,
        max_rows: int = MAX_BATCH,
        row_cap: Callable[[GenerationRequest], int] | None = None,
    ) -> None:
        self.window_s = window_s
        self.max_rows = max_rows
        self._row_cap = row_cap  # rows of a request's size that fit in free memory at once (None: no limit)
        self._run = run
        self._cv = threading.Condition()
        self._pending: list[Ticket] = []
        self._running = False
        self.last_group_size = 0

    def submit(self, request: GenerationRequest, group: Any, context: Any) -> Result:
        """Queue a request (``group``: what a partner's must equal, e.g. its compatibility key and LoRA library)
        with its caller's ``context``, and block until its result (or its exception) is ready."""
        now = time.monotonic()
        ticket = Ticket(request, context, group, now + self.window_s)
        with self._cv:
            self._pending.append(ticket)
            self._cv.notify_all()
            if not self._wait_to_lead(ticket):
                return ticket.result()
        error: BaseException | None = None
        try:
            self._run(lambda: self._take(ticket))
        except BaseException as exc:  # noqa: BLE001 - handed to the ticket below, then re-raised by result()
            error = exc
        finally:
            with self._cv:
                self._running = False
                self._remove(ticket)
                for member in {ticket, *ticket.members}:  # nobody waits forever on a run that broke early
                    if member.outcome is None:
                        member.outcome = error or RuntimeError("the coalesced group ended without a result")
                self._cv.notify_all()
        return ticket.result()

    @property
    def waiting(self) -> int:
        """Requests queued and not yet taken into a group."""
        with self._cv:
            return len(self._pending)

    def finish(self, ticket: Ticket, outcome: Result | BaseException) -> None:
        """Hand a ticket its outcome and wake its waiting thread."""
        with self._cv:
            ticket.outcome = outcome
            self._cv.notify_all()

    # ---- internals (called with the condition held) ----------------------------------------------------
    def _wait_to_lead(self, ticket: Ticket) -> bool:
        """True when this ticket's thread should run a group; False once another leader finished it."""
        while ticket.outcome is None:
            if not ticket.taken and not self._running:
                now = time.monotonic()
                if now >= ticket.deadline or self._rows(ticket.group) >= self.max_rows:
                    self._running = True
                    return True
                self._cv.wait(timeout=ticket.deadline - now)
            else:
                self._cv.wait()
        return False

    def _rows(self, group: Any) -> int:
        return sum(t.rows for t in self._pending if t.group == group and not t.taken)

    def _take(self, leader: Ticket) -> list[Ticket]:
        """The leader and, in arrival order, every compatible waiter that fits in ``max_rows``."""
        limit = self.max_rows
        if self._row_cap is not None:
            limit = min(limit, max(leader.rows, self._row_cap(leader.request)))
        with self._cv:
            members, rows = [leader], leader.rows
            for other in self._pending:
                if other is not leader and other.group == leader.group and not other.taken:
                    if rows + other.rows > limit:
                        continue
                    members.append(other)
                    rows += other.rows
            for member in members:
                member.taken = True
                self._remove(member)
            leader.members = members
            self.last_group_size = len(members)
            return members

    def _remove(self, ticket: Ticket) -> None:
        if ticket in self._pending:
            self._pending.remove(ticket)
