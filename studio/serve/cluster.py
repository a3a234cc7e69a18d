"""Ray and Serve for the front end: start a local Ray (or join ``RAY_ADDRESS``), deploy the replicas, report their
health, and take it all down at exit.

Resources per replica: ``num_gpus=1`` when the cluster has GPUs and the device is not forced to the CPU; on CPU,
``num_cpus`` = the replica's torch threads (``STUDIO_THREADS``, else the cores split between the replicas).
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass
from typing import Any

from studio.core.errors import StudioError
from studio.core.settings import Settings
from studio.spaces_support import on_zero_gpu

log = logging.getLogger(__name__)
APP = "flux-studio"  # the Serve application's name
DEPLOYMENT = "engine"
NAMESPACE = "flux-studio"
COALESCING_SLOTS = 8  # requests one replica takes at once when coalescing (as the one-process studio's GPU slots)
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20  # a local cluster's object store: only events and small images cross it
HEALTH_CHECK_PERIOD_S = 2.0  # how often Serve checks a replica (a dead one is replaced after a failed check)
FORWARDED_ENV = ("STUDIO_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "DIFFUSERS_", "TORCH_", "TQDM_")
QUIET_REPLICAS = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # no loading bars in the front end's log


@dataclass(frozen=True)
class Plan:
    """How the replicas are laid out: count, torch threads and resources each, requests each takes at once."""

    replicas: int
    threads: int
    slots: int
    actor_options: dict[str, Any]


def plan(settings: Settings, replicas: int, gpus: float) -> Plan:
    """The layout for ``replicas`` engines on a cluster with ``gpus`` GPUs."""
    if replicas < 1:
        raise StudioError(f"--replicas must be at least 1 (got {replicas})")
    slots = COALESCING_SLOTS if settings.coalesce_ms > 0 else 1
    env = {**QUIET_REPLICAS, **{k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}}
    if gpus >= 1 and settings.device != "cpu":
        return Plan(
            replicas, settings.threads or 1, slots, {"num_gpus": 1, "num_cpus": 1, "runtime_env": {"env_vars": env}}
        )
    threads = settings.threads or max(1, (os.cpu_count() or 1) // replicas)
    env["STUDIO_THREADS"] = str(threads)
    return Plan(replicas, threads, slots, {"num_cpus": threads, "runtime_env": {"env_vars": env}})


class Cluster:
    """The front end's Ray connection and its Serve application of engine replicas."""

    def __init__(self, settings: Settings, replicas: int, max_replicas: int | None = None) -> None:
        """Connect (a local cluster sized for ``max_replicas``, default ``replicas``) and deploy ``replicas``."""
        if replicas < 1:
            raise StudioError(f"--replicas must be at least 1 (got {replicas})")
        if on_zero_gpu():
            raise StudioError("--replicas needs GPUs of its own; on ZeroGPU run the studio without --replicas")
        import ray
        from ray import serve

        from studio.serve.cancel_board import CancelBoard

        self.joined = bool(os.environ.get("RAY_ADDRESS"))
        most = max(replicas, max_replicas or 0)
        threads = settings.threads or max(1, (os.cpu_count() or 1) // most)
        if self.joined:  # an existing cluster (its own resources, logs, dashboard)
            ray.init(namespace=NAMESPACE, logging_level=logging.WARNING)
        else:  # a private local cluster: never another one that happens to run on this machine
            ray.init(
                address="local",
                namespace=NAMESPACE,
                include_dashboard=False,
                logging_level=logging.WARNING,
                num_cpus=max(os.cpu_count() or 1, most * threads),
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            )
        atexit.register(self.close)
        serve.start(proxy_location="Disabled", logging_config={"log_level": "WARNING"})
        self.board = (
            ray.remote(CancelBoard)
            .options(name=f"{APP}-cancel-board", namespace=NAMESPACE, get_if_exists=True, num_cpus=0)
            .remote()
        )
        self.deploy(settings, replicas)

    def deploy(self, settings: Settings, replicas: int) -> None:
        """Run ``replicas`` engine replicas with ``settings`` (again: Serve rolls the replicas over to them)."""
        import ray
        from ray import serve

        from studio.serve.replica import EngineReplica

        self.settings, self.plan = settings, plan(settings, replicas, ray.cluster_resources().get("GPU", 0))
        deployment = serve.deployment(
            EngineReplica,
            name=DEPLOYMENT,
            num_replicas=replicas,
            max_ongoing_requests=self.plan.slots,
            ray_actor_options=self.plan.actor_options,
            health_check_period_s=HEALTH_CHECK_PERIOD_S,
            logging_config={"log_level": "WARNING", "enable_access_log": False},
        )
        each = "1 GPU" if "num_gpus" in self.plan.actor_options else f"{self.plan.threads} CPU threads"
        log.info("starting %d engine replicas (%s each)", replicas, each)
        self.handle = serve.run(deployment.bind(settings, self.board, self.plan.slots), name=APP, route_prefix=None)

    def replica_counts(self) -> dict[str, int]:
        """``{"ready": replicas running, "total": replicas asked for}`` (ready is 0 when Serve cannot be asked)."""
        from ray import serve

        try:
            app = serve.status().applications.get(APP)
            states = app.deployments[DEPLOYMENT].replica_states if app else {}
        except Exception:  # noqa: BLE001 - the controller is unreachable: nothing is known to be ready
            log.warning("Serve status unavailable", exc_info=True)
            states = {}
        ready = sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")
        return {"ready": int(ready), "total": self.plan.replicas}

    def close(self) -> None:
        """Remove the application from a joined cluster; leave Ray (a local cluster stops with it)."""
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        if self.joined:
            try:
                serve.delete(APP)
            except Exception:  # noqa: BLE001 - best effort at exit
                log.warning("could not remove the Serve application %s", APP, exc_info=True)
        ray.shutdown()
