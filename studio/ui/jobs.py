"""Run a generation in a worker thread and stream its progress to a Gradio generator (no polling)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobEvent:
    """One message from the worker: a step update, the final record, or an error."""

    kind: str  # "step" | "done" | "error" | "idle" (nothing came for ``idle_s``)
    payload: Any


class CancelRegistry:
    """Cancel events of running jobs, per browser session, so Cancel stops only the user's own job."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        """A fresh cancel event for the session's new job."""
        event = threading.Event()
        with self._lock:
            self._events[session] = event
        return event

    def cancel(self, session: str) -> bool:
        """Set the session's event; True if a job was running."""
        with self._lock:
            event = self._events.get(session)
        if event is None:
            return False
        event.set()
        return True

    def finish(self, session: str, event: threading.Event) -> None:
        """Forget the session's event when its job ends."""
        with self._lock:
            if self._events.get(session) is event:
                del self._events[session]


class WaitLine:
    """The page's generations in arrival order, so a waiting visitor can be told how many are ahead of theirs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._active: set[int] = set()

    def join(self) -> int:
        """A ticket for a new generation (it counts as ahead of later ones until it leaves)."""
        with self._lock:
            self._next += 1
            self._active.add(self._next)
            return self._next

    def ahead(self, ticket: int) -> int:
        """How many earlier generations are still waiting or running."""
        with self._lock:
            return sum(1 for other in self._active if other < ticket)

    def leave(self, ticket: int) -> None:
        """The generation ended (done, failed or cancelled)."""
        with self._lock:
            self._active.discard(ticket)


def stream_job(
    run: Callable[[Callable[[Any], None]], Any], cancel: threading.Event, idle_s: float | None = None
) -> Iterator[JobEvent]:
    """Run ``run(on_step)`` in a thread; yield its step updates as they come, then ``done`` or ``error``.

    With ``idle_s``, an ``idle`` event comes whenever nothing else did for that long (e.g. while it waits for the
    model). If the consumer stops early (the page closed, Gradio cancelled the event) the job is cancelled too.
    """
    events: queue.Queue[JobEvent] = queue.Queue()

    def worker() -> None:
        try:
            record = run(lambda update: events.put(JobEvent("step", update)))
            events.put(JobEvent("done", record))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            events.put(JobEvent("error", exc))

    thread = threading.Thread(target=worker, name="studio-job", daemon=True)
    thread.start()
    finished = False
    try:
        while True:
            try:
                event = events.get(timeout=idle_s)
            except queue.Empty:
                yield JobEvent("idle", None)
                continue
            if event.kind != "step":
                finished = True
            yield event
            if finished:
                return
    finally:
        if not finished:
            cancel.set()
