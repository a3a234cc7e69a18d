"""Coalescing: N concurrent compatible requests (different prompts and seeds) coalesced vs run one after another.

    python -m benchmarks.coalesce [--n 8] [--steps 4 28] [--repeats 3] [--window-ms 30] [--json out.json]

Both sides encode every prompt (the text cache is cleared before each side) and decode every image; the
coalesced side starts N threads at once on an engine with a coalescing window. Median of interleaved repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from studio.core import settings as settings_mod
from studio.core.request import GenerationRequest
from studio.engine.engine import Engine, Result
from studio.toyworld.grammar import prompt_set


def serial(engine: Engine, requests: list[GenerationRequest]) -> float:
    """Seconds to run the requests one after another (coalescing off)."""
    engine.configure_coalescing(0)
    engine._text_cache.clear()
    started = time.perf_counter()
    for request in requests:
        engine.generate(request)
    return time.perf_counter() - started


def coalesced(engine: Engine, requests: list[GenerationRequest], window_ms: float) -> tuple[float, list[Result]]:
    """Seconds until all requests, started at once from their own threads, are done (coalescing on)."""
    engine.configure_coalescing(window_ms)
    engine._text_cache.clear()
    results: list[Result | None] = [None] * len(requests)
    gate = threading.Barrier(len(requests) + 1)

    def worker(k: int) -> None:
        gate.wait()
        results[k] = engine.generate(requests[k])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(requests))]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    gate.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    engine.configure_coalescing(0)
    return elapsed, [r for r in results if r is not None]


def measure(engine: Engine, n: int, steps: int, repeats: int, window_ms: float) -> dict:
    """One row: throughput ratio coalesced / serial at ``steps`` steps."""
    prompts = prompt_set("one", n, seed=steps, split="heldout")
    requests = [GenerationRequest(prompt=p, seed=k, steps=steps) for k, p in enumerate(prompts)]
    engine.generate(requests[0])  # warm-up
    serial_s, coalesced_s, groups = [], [], []
    for _ in range(repeats):
        serial_s.append(serial(engine, requests))
        seconds, results = coalesced(engine, requests, window_ms)
        coalesced_s.append(seconds)
        groups.append(max(int(r.timings.get("coalesced", 1)) for r in results))
    s, c = statistics.median(serial_s), statistics.median(coalesced_s)
    return {
        "row": f"{n} concurrent requests coalesced vs serial ({steps} steps)",
        "ratio": s / c,
        "detail": f"serial {s:.2f} s ({n / s:.2f} img/s), coalesced {c:.2f} s ({n / c:.2f} img/s), "
        f"largest group {max(groups)}, window {window_ms:g} ms, median of {repeats}",
    }


def rows(
    settings: settings_mod.Settings,
    n: int = 8,
    steps: tuple[int, ...] = (4,),
    repeats: int = 3,
    window_ms: float = 30.0,
) -> list[dict]:
    """The coalescing rows for ``benchmarks.perf`` (one engine, all measured in this run)."""
    engine = Engine(settings)
    engine.ensure()
    return [measure(engine, n, s, repeats, window_ms) for s in steps]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 28])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window-ms", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = settings_mod.from_env(threads=args.threads)
    table = rows(settings, args.n, tuple(args.steps), args.repeats, args.window_ms)
    print(f"{'measurement':<52} {'ratio':>7}  detail")
    for r in table:
        print(f"{r['row']:<52} {r['ratio']:>7.2f}  {r['detail']}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
