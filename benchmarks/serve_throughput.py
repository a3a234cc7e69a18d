"""Ray Serve scale-out: throughput of 2 engine replicas vs 1, measured in the same run on one private Ray cluster.

    python -m benchmarks.serve_throughput [--n 8] [--steps 4] [--repeats 3] [--threads 1] [--coalesce-ms 0 30]
                                          [--json out.json]

Each row sends ``n`` concurrent txt2img requests (different prompts and seeds, flux-mini) through the front end's
path — ``RemoteStudio.generate`` from ``n`` threads, records stored in one history — first to 1 replica, then to 2
(``--threads`` torch threads each), and prints the wall-clock throughput of each and their ratio (median of
``repeats`` rounds after an untimed warm-up round). ``--coalesce-ms`` picks the replicas' coalescing window (0 = off:
pure replica scaling; 30 = the app's default). On CPU the ratio is bounded by the free cores: two replicas of one
thread need two idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from studio.core import settings as settings_mod
from studio.core.request import GenerationRequest
from studio.serve.cluster import Cluster
from studio.serve.remote import RemoteStudio
from studio.toyworld.grammar import prompt_set

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "assets" / "models" / "flux-mini"


def round_trip(studio: RemoteStudio, requests: list[GenerationRequest]) -> tuple[float, set[str]]:
    """Seconds until all requests, sent at once from their own threads, are stored; the replicas that ran them."""
    with ThreadPoolExecutor(len(requests)) as pool:
        started = time.perf_counter()
        records = list(pool.map(studio.generate, requests))
        elapsed = time.perf_counter() - started
    assert all(record["status"] == "done" for record in records), [r["status"] for r in records]
    return elapsed, {str(record["timings"].get("replica")) for record in records}


def measure(studio: RemoteStudio, requests: list[GenerationRequest], repeats: int) -> tuple[float, int]:
    """Median seconds for the batch of requests, and how many replicas took part."""
    round_trip(studio, requests)  # warm-up: text encoders, allocator, Serve's queue-length caches
    seconds, used = [], set()
    for _ in range(repeats):
        elapsed, replicas = round_trip(studio, requests)
        seconds.append(elapsed)
        used |= replicas
    return statistics.median(seconds), len(used)


def run(n: int, steps: int, repeats: int, threads: int, windows: list[float], data_dir: Path) -> list[dict]:
    """One row per coalescing window: 1 replica then 2 on the same cluster."""
    base = settings_mod.from_env({"STUDIO_MODEL": str(MODEL), "STUDIO_DATA_DIR": str(data_dir)}, threads=threads)
    prompts = prompt_set("one", n, seed=steps, split="heldout")
    requests = [GenerationRequest(prompt=p, seed=k, steps=steps) for k, p in enumerate(prompts)]
    first = base.with_overrides(coalesce_ms=float(windows[0]))
    cluster = Cluster(first, 1, max_replicas=2)
    studio = RemoteStudio(first, cluster)
    rows = []
    try:
        for window in windows:
            settings = base.with_overrides(coalesce_ms=float(window))
            timings = {}
            for replicas in (1, 2):
                if (settings, replicas) != (cluster.settings, cluster.plan.replicas):  # not the same deployment again
                    cluster.deploy(settings, replicas)
                timings[replicas] = measure(studio, requests, repeats)
            (one_s, _), (two_s, used) = timings[1], timings[2]
            rows.append(
                {
                    "coalesce_ms": window,
                    "n": n,
                    "steps": steps,
                    "threads": threads,
                    "one_replica_s": round(one_s, 3),
                    "two_replicas_s": round(two_s, 3),
                    "one_replica_img_s": round(n / one_s, 3),
                    "two_replicas_img_s": round(n / two_s, 3),
                    "replicas_used": used,
                    "ratio": round(one_s / two_s, 3),
                }
            )
            print(
                f"coalesce {window:g} ms: 1 replica {n / one_s:.2f} img/s ({one_s:.2f} s), 2 replicas "
                f"{n / two_s:.2f} img/s ({two_s:.2f} s, {used} used) → ratio {one_s / two_s:.2f}×",
                flush=True,
            )
    finally:
        cluster.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="concurrent requests")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    parser.add_argument("--coalesce-ms", type=float, nargs="+", default=[0.0, 30.0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        rows = run(args.n, args.steps, args.repeats, args.threads, args.coalesce_ms, Path(tmp))
    print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
