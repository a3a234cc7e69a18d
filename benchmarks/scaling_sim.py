"""Queueing simulation behind docs/scaling.md: N engine replicas (one per GPU) behind one queue.

    python -m benchmarks.scaling_sim [--service-s 1.6] [--arrivals-per-min 60 120 240] [--replicas 1 2 4 8]

Poisson arrivals, fixed service time per image (measure yours with the studio's timings), first-come-first-served
over N identical replicas (an M/D/c queue), simulated for a few hours of traffic with a fixed seed. Prints
utilisation, throughput and wait p50/p95 per configuration.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics


def simulate(rate_per_s: float, service_s: float, replicas: int, seconds: float, seed: int = 0) -> dict[str, float]:
    """Waits and throughput of an M/D/c queue over ``seconds`` of arrivals."""
    rng = random.Random(seed)
    free_at = [0.0] * replicas  # heap of times at which each replica becomes free
    heapq.heapify(free_at)
    t, waits, done_at = 0.0, [], 0.0
    while True:
        t += rng.expovariate(rate_per_s)
        if t > seconds:
            break
        start = max(t, heapq.heappop(free_at))
        end = start + service_s
        heapq.heappush(free_at, end)
        waits.append(start - t)
        done_at = max(done_at, end)
    n = len(waits)
    ordered = sorted(waits)
    return {
        "images": n,
        "utilisation": min(1.0, n * service_s / (replicas * seconds)),
        "throughput_per_min": 60 * n / done_at if done_at else 0.0,
        "wait_p50_s": statistics.median(ordered) if ordered else 0.0,
        "wait_p95_s": ordered[int(0.95 * (n - 1))] if ordered else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--service-s", type=float, default=1.6, help="seconds per image on one replica")
    parser.add_argument("--arrivals-per-min", type=float, nargs="+", default=[30, 60, 120, 240])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--hours", type=float, default=2.0)
    args = parser.parse_args()
    print(f"M/D/c: {args.service_s:.2f} s per image, {args.hours:g} h of Poisson arrivals, seed 0")
    print(f"{'arrivals/min':>12} {'replicas':>8} {'util':>6} {'images/min':>10} {'wait p50 s':>10} {'wait p95 s':>10}")
    for per_min in args.arrivals_per_min:
        for n in args.replicas:
            r = simulate(per_min / 60, args.service_s, n, args.hours * 3600)
            print(
                f"{per_min:>12g} {n:>8} {r['utilisation']:>6.2f} {r['throughput_per_min']:>10.1f} "
                f"{r['wait_p50_s']:>10.1f} {r['wait_p95_s']:>10.1f}"
            )


if __name__ == "__main__":
    main()
