"""Request coalescing: queued compatible txt2img requests run as one batched denoise.

Requests with the same compatibility key (model, quantization, size, steps, guidance and true-CFG values and
schedule, LoRA set) that wait for the engine together are denoised as one batch: each request's prompt encodings
and seeded noise become its own rows, so every request gets the images it would get alone (equal up to float
rounding of the batched matmuls) and its own record, progress and cancel. A request waits at most ``window_s``
for partners when the engine is idle; requests that queue behind a running generation join for free.

Not coalesced: regions, controls, img2img/inpaint (they carry per-request inputs) and step caching (the cache
hooks decide over the whole batch, so a partner would change a request's result).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from studio.core.errors import Cancelled
from studio.core.request import MAX_BATCH, GenerationRequest
from studio.engine import sampling
from studio.lora.library import apply_request_loras
from studio.models import kinds as model_kinds

if TYPE_CHECKING:
    from studio.engine.engine import Engine, Result, StepUpdate
    from studio.lora.files import LoraLibrary

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
    """One waiting request: its inputs, the group it may join, and (once finished) its outcome."""

    request: GenerationRequest
    on_step: Callable[[StepUpdate], None] | None
    cancel: threading.Event
    loras: LoraLibrary | None
    group: tuple[Any, ...]
    deadline: float
    arrived: float = field(default_factory=time.perf_counter)
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
        self.groups_run = 0
        self.last_group_size = 0

    def submit(
        self,
        request: GenerationRequest,
        key: CoalesceKey,
        on_step: Callable[[StepUpdate], None] | None,
        cancel: threading.Event,
        loras: LoraLibrary | None,
    ) -> Result:
        """Queue a request and block until its result (or its exception) is ready."""
        now = time.monotonic()
        ticket = Ticket(request, on_step, cancel, loras, (key, id(loras)), now + self.window_s)
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

    def _rows(self, group: tuple[Any, ...]) -> int:
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
            self.groups_run += 1
            self.last_group_size = len(members)
            return members

    def _remove(self, ticket: Ticket) -> None:
        if ticket in self._pending:
            self._pending.remove(ticket)


def run_group(engine: Engine, tickets: list[Ticket], finish: Callable[[Ticket, Any], None]) -> None:
    """Denoise a group as one batch (the engine lock is held); finish every ticket with its Result or error."""
    from studio.engine.engine import Result

    started = time.perf_counter()
    live: list[tuple[Ticket, GenerationRequest]] = []
    try:
        first = tickets[0].request
        engine.ensure(first.model, first.quant)
        load_s = time.perf_counter() - started
        for ticket in tickets:
            try:  # a request that fails here fails alone
                resolved = engine.resolve(ticket.request).validate()
                resolved = apply_request_loras(
                    engine.pipe, resolved, ticket.loras or engine.lora_library, engine.lora_adapters
                )
                model_kinds.check_request(engine.pipe.transformer, resolved)  # after a Control LoRA widened it
            except Exception as exc:  # noqa: BLE001 - handed to that request's thread
                finish(ticket, exc)
                continue
            if ticket.cancel.is_set():
                finish(ticket, _cancelled("generation cancelled before it started", resolved))
            else:
                live.append((ticket, resolved))
        if not live:
            return
        denoise_started = time.perf_counter()
        images = _denoise_rows(engine, live, finish)
        denoise_s = time.perf_counter() - denoise_started
    except BaseException as exc:  # every waiting thread sees the failure, not only the leader
        for ticket in tickets:
            if ticket.outcome is None:
                finish(ticket, exc)
        if not isinstance(exc, Exception):
            raise
        return
    for (ticket, resolved), imgs in zip(live, images):
        if imgs is None:
            continue
        timings = {
            "load_s": round(load_s, 4),
            "denoise_s": round(denoise_s, 4),
            "total_s": round(time.perf_counter() - ticket.arrived, 4),
            "queue_s": round(started - ticket.arrived, 4),
            "coalesced": len(live),
        }
        finish(ticket, Result(resolved, imgs, resolved.seeds(), timings))


def _denoise_rows(
    engine: Engine, live: list[tuple[Ticket, GenerationRequest]], finish: Callable[[Ticket, Any], None]
) -> list[list[Any] | None]:
    """One batched denoise over every live request's rows; each request's images (None if it was cancelled)."""
    pipe = engine.pipe
    req = live[0][1]
    assert req.width and req.height and req.steps
    plan = engine.plan(req)
    cond = _concat([engine.encode(r.prompt, r.prompt_2).repeat(r.batch_size) for _, r in live])
    negative = None
    if any(scale > 1 for scale in plan.true_cfg):
        negative = _concat([engine.encode(r.negative_prompt or "", None).repeat(r.batch_size) for _, r in live])
    seeds = [s for _, r in live for s in r.seeds()]
    device = engine.execution_device
    latents, img_ids = sampling.prepare_noise(pipe, seeds, req.height, req.width, cond.prompt_embeds.dtype, device)
    scheduler, timesteps = sampling.make_scheduler(pipe, req.steps, latents.shape[1], device)
    bounds, start = [], 0
    for _, r in live:
        bounds.append((start, start + r.batch_size))
        start += r.batch_size
    callbacks = [engine.step_callback(t.on_step, req.height, req.width) for t, _ in live]
    active = [True] * len(live)
    group_cancel = threading.Event()

    def on_step(info: sampling.StepInfo) -> None:
        for k, ((ticket, resolved), (a, b)) in enumerate(zip(live, bounds)):
            if not active[k]:
                continue
            if ticket.cancel.is_set():  # this request leaves now; its rows finish unused
                active[k] = False
                finish(ticket, _cancelled("generation cancelled", resolved))
                continue
            if callbacks[k] is not None:
                try:  # a failing progress listener ends its own request, not its partners'
                    callbacks[k](sampling.StepInfo(info.step, info.total, info.x0[a:b], info.elapsed_s))
                except Exception as exc:  # noqa: BLE001 - handed to that request's thread
                    active[k] = False
                    if isinstance(exc, Cancelled):
                        exc.request = resolved  # type: ignore[attr-defined]
                    finish(ticket, exc)
        if not any(active):
            group_cancel.set()

    try:
        latents = sampling.denoise(
            pipe, latents, img_ids, cond, negative, plan, scheduler, timesteps, on_step, group_cancel
        )
    except Cancelled:
        if any(active):
            raise
        return [None] * len(live)
    for k, ((ticket, resolved), _) in enumerate(zip(live, bounds)):
        if active[k] and ticket.cancel.is_set():
            active[k] = False
            finish(ticket, _cancelled("generation cancelled before decoding", resolved))
    rows = [r for k, (a, b) in enumerate(bounds) if active[k] for r in range(a, b)]
    images = iter(sampling.decode(pipe, latents[rows], req.height, req.width))  # one VAE batch for all
    return [[next(images) for _ in range(b - a)] if active[k] else None for k, (a, b) in enumerate(bounds)]


def _concat(conds: list[sampling.TextConditioning]) -> sampling.TextConditioning:
    """Per-row text encodings of several prompts as one batch (text ids are shared: same sequence length)."""
    return sampling.TextConditioning(
        torch.cat([c.prompt_embeds for c in conds]), torch.cat([c.pooled_embeds for c in conds]), conds[0].text_ids
    )


def _cancelled(message: str, resolved: GenerationRequest) -> Cancelled:
    exc = Cancelled(message)
    exc.request = resolved  # type: ignore[attr-defined]
    return exc
