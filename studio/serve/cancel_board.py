"""Cancel flags by request id, shared by the front end (which sets them) and the replicas (which wait on them).

Ray Serve routes each call to whichever replica it picks, so a cancel cannot be a second call to "the replica
running request X". Instead the front end creates one small actor (``CancelBoard``), each replica waits on the
board for the request it runs (``wait``: returns True when cancelled, False when finished), and the front end's
``CancelWatch`` forwards a set ``threading.Event`` to the board.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

MAX_ENTRIES = 10_000  # flags kept at most (a cancel racing a request's end leaves one behind)
POLL_S = 0.05  # how often the front end's watch looks at the running requests' cancel events


class CancelBoard:
    """The actor (``ray.remote(CancelBoard)``): one asyncio.Event per running request id."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._cancelled: set[str] = set()

    def _event(self, request_id: str) -> asyncio.Event:
        if request_id not in self._events and len(self._events) >= MAX_ENTRIES:
            stale = next(iter(self._events))
            self._events.pop(stale).set()
            self._cancelled.discard(stale)
        return self._events.setdefault(request_id, asyncio.Event())

    async def wait(self, request_id: str) -> bool:
        """Block until the request is cancelled (True) or finished (False)."""
        await self._event(request_id).wait()
        return request_id in self._cancelled

    async def cancel(self, request_id: str) -> None:
        """Cancel the request: its replica's ``wait`` returns True."""
        self._cancelled.add(request_id)
        self._event(request_id).set()

    async def finish(self, request_id: str) -> None:
        """Forget the request (its replica is done with it)."""
        event = self._events.pop(request_id, None)
        self._cancelled.discard(request_id)
        if event is not None:
            event.set()


class CancelWatch:
    """Front-end side: forwards each running request's cancel event to the board once it is set."""

    def __init__(self, board: Any) -> None:
        self._board = board
        self._running: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, request_id: str, cancel: threading.Event) -> None:
        """Watch ``cancel`` while the request runs."""
        with self._lock:
            self._running[request_id] = cancel
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="studio-cancel-watch", daemon=True)
                self._thread.start()

    def remove(self, request_id: str) -> None:
        """Stop watching (the request ended)."""
        with self._lock:
            self._running.pop(request_id, None)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._running:
                    self._thread = None
                    return
                fired = [rid for rid, event in self._running.items() if event.is_set()]
                for rid in fired:
                    del self._running[rid]
            for rid in fired:
                self._board.cancel.remote(rid)
            time.sleep(POLL_S)
