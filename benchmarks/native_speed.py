"""Time per image at the model's native size and default steps, without and with true CFG 2.

    python -m benchmarks.native_speed [--n 15] [--threads 1]

Three warm-up generations, then ``--n`` timed ones per setting through the studio engine (prompt encoding,
denoising and VAE decoding included); prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from studio.core import settings as settings_mod
from studio.core.request import GenerationRequest
from studio.engine.engine import Engine

PROMPT = "a red circle in the top left on a white background"


def median_seconds(engine: Engine, n: int, true_cfg: float) -> float:
    """Median wall time of ``n`` single-image generations (seeds 0..n-1)."""
    times = []
    for k in range(n):
        started = time.perf_counter()
        engine.generate(GenerationRequest(prompt=PROMPT, seed=k, true_cfg=true_cfg))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    engine = Engine(settings_mod.from_env(threads=args.threads))
    engine.ensure()
    for k in range(3):
        engine.generate(GenerationRequest(prompt=PROMPT, seed=k))
    plain, cfg = median_seconds(engine, args.n, 1.0), median_seconds(engine, args.n, 2.0)
    size = engine.defaults()
    print(
        json.dumps(
            {
                "size": [size.width, size.height],
                "steps": size.steps,
                "seconds": round(plain, 3),
                "seconds_true_cfg_2": round(cfg, 3),
                "ratio": round(cfg / plain, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
