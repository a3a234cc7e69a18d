"""The front end's Studio with ``--replicas``: generate, replay and preview run on a Serve replica; the history,
shares, LoRA list and control previews stay local (the same database and data folder the replicas write).

The UI calls it exactly as it calls ``Studio``: step previews come back as ``StepUpdate``s, a set cancel event
reaches the replica running the request, and the record returned is read from the shared history.
A replica that dies mid-generation ends that request as a ``failed`` record naming the replica (no retry: the
user replays it, see docs/scaling.md); Serve starts a replacement.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from studio.core.errors import Cancelled, StudioError, UnsupportedOnDevice
from studio.core.request import GenerationRequest
from studio.core.settings import Settings
from studio.engine.engine import Result, StepUpdate
from studio.models.catalog import ModelDefaults
from studio.serve import wire
from studio.serve.cancel_board import CancelWatch
from studio.serve.cluster import Cluster
from studio.service import Studio

log = logging.getLogger(__name__)


class ReplicaLost(StudioError):
    """The replica running a request stopped (its process died) before the request ended."""

    def __init__(self, message: str, replica: str | None = None) -> None:
        super().__init__(message)
        self.replica = replica


class Backend:
    """Runs jobs on the replicas through the Serve handle and turns their streams back into outcomes."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._watch = CancelWatch(cluster.board)

    def run(
        self, job: dict[str, Any], on_step: Callable[[StepUpdate], None] | None, cancel: threading.Event
    ) -> tuple[str, Any, dict[str, Any]]:
        """Stream ``job`` from a replica: (final kind, its payload, the replica's ``{"replica", "pid"}``).

        ReplicaLost when the replica died before the job's last event.
        """
        from ray.exceptions import RayError

        replica: dict[str, Any] = {}
        job = {**job, "progress": on_step is not None}  # step events (and their previews) only when listened to
        self._watch.add(job["id"], cancel)
        try:
            for kind, payload in self.cluster.handle.options(stream=True).run.remote(job):
                if kind == "start":
                    replica = payload
                    log.info(
                        "%s %s runs on replica %s (pid %s)", job["kind"], job["id"], payload["replica"], payload["pid"]
                    )
                elif kind == "step":
                    if on_step is not None:
                        on_step(wire.step_update(payload))
                else:
                    return kind, payload, replica
            raise ReplicaLost(_lost(replica, "its stream ended early"), replica.get("replica"))
        except RayError as exc:
            log.warning("%s %s: replica %s lost: %s", job["kind"], job["id"], replica.get("replica"), exc)
            self.cluster.board.finish.remote(job["id"])  # the dead replica's wait on the board ends too
            raise ReplicaLost(_lost(replica, type(exc).__name__), replica.get("replica")) from exc
        finally:
            self._watch.remove(job["id"])

    def info(self, model: str = "") -> dict[str, Any]:
        """A replica's ``info`` (the model's name and defaults)."""
        return self.cluster.handle.info.remote(model).result()


def _lost(replica: dict[str, Any], why: str) -> str:
    name = replica.get("replica") or "(not yet known)"
    return (
        f"the engine replica {name} running this generation stopped ({why}) — the studio replaces it; "
        "replay the record or generate again"
    )


def _job(kind: str, request: GenerationRequest, **extra: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "kind": kind, "request": request.to_dict(), **extra}


class RemoteEngine:
    """The front end's stand-in for ``Engine``: the model's name and defaults (asked of a replica, cached), and
    ``generate`` for preview runs (nothing stored)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._info: dict[str, dict[str, Any]] = {"": backend.info()}
        self.coalescer = None  # coalescing happens inside each replica
        self.busy = False

    @property
    def model_name(self) -> str:
        """The served model's name."""
        return self._info[""]["model"]

    @property
    def guidance_embeds(self) -> bool:
        """Whether the served model takes a distilled guidance value."""
        return bool(self._info[""]["guidance_embeds"])

    def defaults(self, model: str = "") -> ModelDefaults:
        """The model's defaults, from a replica (which loads the model if it has to)."""
        if model not in self._info:
            self._info[model] = self._backend.info(model)
        return ModelDefaults(**self._info[model]["defaults"])

    def generate(
        self,
        request: GenerationRequest,
        on_step: Callable[[StepUpdate], None] | None = None,
        cancel: threading.Event | None = None,
        **_unused: Any,
    ) -> Result:
        """A preview run on a replica; Cancelled when a newer request cancelled it."""
        kind, payload, _ = self._backend.run(_job("preview", request), on_step, cancel or threading.Event())
        if kind == "result":
            return wire.result_from(payload)
        if kind == "cancelled":
            raise Cancelled(str(payload))
        wire.raise_error(payload)
        raise AssertionError(f"unexpected event {kind}")


class RemoteStudio(Studio):
    """``Studio`` whose generations run on the Serve replicas; history and everything else stay local."""

    def __init__(self, settings: Settings, cluster: Cluster) -> None:
        self.cluster = cluster
        self._backend = Backend(cluster)
        super().__init__(settings, engine=RemoteEngine(self._backend))  # type: ignore[arg-type]

    @property
    def gpu_slots(self) -> int:
        """Generation events the front end lets in at once: every replica's share."""
        return self.cluster.plan.replicas * self.cluster.plan.slots

    def replica_counts(self) -> dict[str, int]:
        """``{"ready", "total"}`` replicas, for /healthz."""
        return self.cluster.replica_counts()

    def check_resources(self, request: GenerationRequest, disk: bool = True) -> None:
        """The checks the front end can make (validation, an allowed model); the replica checks disk and memory."""
        request.validate()
        self.settings.check_model(request.model or self.settings.model)

    def generate(
        self,
        request: GenerationRequest,
        on_step: Callable[[StepUpdate], None] | None = None,
        cancel: threading.Event | None = None,
        replay_of: str | None = None,
        owner: str | None = None,
        on_phase: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """``Studio.generate`` on a replica: the record it stored (read back from the shared history)."""
        phase = on_phase or (lambda _name: None)
        phase("check")
        self.check_resources(request)
        phase("generate")
        started = time.perf_counter()
        job = _job("generate", request, replay_of=replay_of, owner=owner)
        try:
            kind, payload, _ = self._backend.run(job, on_step, cancel or threading.Event())
        except ReplicaLost as exc:
            self._lost(request, str(exc), started, replay_of, owner, exc.replica)
            raise
        if kind == "error":
            wire.raise_error(payload)
        record = payload
        try:  # the image paths as this machine sees the shared data folder
            record = {**self.store.get(payload["id"], owner=owner).to_dict(), "timings": payload["timings"]}
        except StudioError:
            log.warning("record %s is not in this front end's history — check STUDIO_DB_URL", payload["id"])
        return record

    def _lost(
        self,
        request: GenerationRequest,
        why: str,
        started: float,
        replay_of: str | None,
        owner: str | None,
        replica: str | None,
    ) -> None:
        """Keep a request whose replica died as a ``failed`` record naming the replica."""
        timings = {"total_s": round(time.perf_counter() - started, 4), "replica": replica}
        try:
            self.store.add(
                request=request, timings=timings, status="failed", error=why, replay_of=replay_of, owner=owner
            )
        except (StudioError, OSError):
            log.warning("could not store the failed record either")

    def train_lora(self, *args: Any, **kwargs: Any) -> Any:
        """Not with replicas: training needs the resident model in this process."""
        raise UnsupportedOnDevice(
            "LoRA training runs in the one-process studio — start it without --replicas, "
            "train, then restart with --replicas (the LoRA folders are shared)"
        )


def start_remote_studio(settings: Settings, replicas: int) -> RemoteStudio:
    """Start (or join) Ray, deploy ``replicas`` engine replicas, and return the front end's Studio."""
    return RemoteStudio(settings, Cluster(settings, replicas))
