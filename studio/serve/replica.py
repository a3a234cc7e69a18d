"""The Serve deployment: one replica = one resident Engine + a writer on the shared history (``Studio``).

``run(job)`` is a streaming method: the front end iterates it through ``handle.options(stream=True)`` and gets
the events of ``studio.serve.wire``. The generation itself runs in a worker thread (so several requests can wait
on the engine together and coalesce); a cancel comes through the ``CancelBoard`` by request id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from studio.core.request import GenerationRequest
from studio.core.settings import Settings
from studio.serve import wire
from studio.service import Studio
from studio.store.records import Record
from studio.store.store import Store

log = logging.getLogger(__name__)
FINAL = ("done", "result", "cancelled", "error")  # a stream's last event kinds


class ReplicaStore(Store):
    """The history Store, naming the replica in every record it writes (``timings.replica``)."""

    def __init__(self, replica: str, url: str, data_dir: Any) -> None:
        super().__init__(url, data_dir)
        self.replica = replica

    def add(self, *, timings: Mapping[str, Any] | None = None, **fields: Any) -> Record:
        """``Store.add`` with ``timings["replica"]`` set."""
        return super().add(timings={**(timings or {}), "replica": self.replica}, **fields)


class EngineReplica:
    """One engine replica (wrapped by ``serve.deployment`` in ``studio.serve.cluster``)."""

    def __init__(self, settings: Settings, board: Any, slots: int) -> None:
        from ray import serve

        self.name = serve.get_replica_context().replica_id.unique_id
        store = ReplicaStore(self.name, settings.db_url, settings.data_dir)
        self.studio = Studio(settings, store=store)
        self.studio.engine.defaults()  # load the model now: a replica counts as ready once it can generate
        swept = store.sweep_orphans()  # images a killed replica left without a record (older than a minute)
        if swept:
            log.warning("removed %d orphan image files", len(swept))
        self._board = board
        self._pool = ThreadPoolExecutor(max_workers=max(1, slots), thread_name_prefix="studio-replica")
        log.info("replica %s (pid %d) ready with %s", self.name, os.getpid(), self.studio.engine.model_name)

    def info(self, model: str = "") -> dict[str, Any]:
        """The model's name and defaults (``model``: empty = the resident one), and who answered."""
        engine = self.studio.engine
        defaults = engine.defaults(model)
        return {
            "model": engine.model_name,
            "defaults": dataclasses.asdict(defaults),
            "guidance_embeds": bool(engine.pipe.transformer.config.guidance_embeds),
            "coalescing": engine.coalescer is not None,
            "replica": self.name,
            "pid": os.getpid(),
        }

    async def run(self, job: dict[str, Any]) -> AsyncIterator[tuple[str, Any]]:
        """Run one job (``kind`` generate: stored; preview: not stored) and stream its events."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()

        def put(event: tuple[str, Any]) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        watch = asyncio.ensure_future(self._watch(job["id"], cancel))
        finished = False
        try:
            yield "start", {"replica": self.name, "pid": os.getpid()}
            loop.run_in_executor(self._pool, self._work, job, cancel, put)
            while not finished:
                event = await events.get()
                finished = event[0] in FINAL
                yield event
        finally:
            if not finished:  # the caller went away (its stream was cancelled): stop the generation
                cancel.set()
            watch.cancel()
            self._board.finish.remote(job["id"])

    async def _watch(self, request_id: str, cancel: threading.Event) -> None:
        """Set ``cancel`` when the front end cancels the request on the board."""
        try:
            if await self._board.wait.remote(request_id):
                cancel.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the board is gone (front end stopped): nobody can cancel any more
            log.warning("cancel board unreachable; request %s can no longer be cancelled", request_id)

    def _work(self, job: dict[str, Any], cancel: threading.Event, put: Callable[[tuple[str, Any]], None]) -> None:
        """The generation, in a worker thread; every outcome becomes the stream's last event."""
        try:
            request = GenerationRequest.from_dict(job["request"])
            if job.get("kind") == "preview":
                result = self.studio.preview(request, cancel)
                put(
                    ("cancelled", "cancelled by a newer request")
                    if result is None
                    else wire.result_event(result, self.name)
                )
                return
            on_step = (lambda update: put(wire.step_event(update))) if job.get("progress", True) else None
            record = self.studio.generate(
                request,
                on_step,
                cancel,
                replay_of=job.get("replay_of"),
                owner=job.get("owner"),
            )
            put(("done", record))
        except BaseException as exc:  # noqa: BLE001 - handed to the front end
            put(wire.error_event(exc))
