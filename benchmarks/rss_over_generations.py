"""Peak RSS over many generations in one process: it must stay flat (no leak per generation).

    python -m benchmarks.rss_over_generations [--n 50]

Prints RSS after the first generation, after the last, and their ratio; also the model load count (must be 1).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import psutil

from studio.core import settings as settings_mod
from studio.core.request import GenerationRequest
from studio.service import Studio

PROMPTS = ["a red circle in the top left on a white background", "a blue square in the center on a black background"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(
            settings_mod.from_env({**os.environ, "STUDIO_DATA_DIR": tmp}, threads=args.threads, data_dir=Path(tmp))
        )
        samples = []
        for k in range(args.n):
            studio.generate(GenerationRequest(prompt=PROMPTS[k % 2], seed=k, batch_size=1 + k % 2))
            samples.append(process.memory_info().rss / 2**20)
        studio.close()
    first, tenth, last = samples[0], samples[min(9, len(samples) - 1)], samples[-1]
    print(f"generations: {args.n}  model loads: {studio.engine.load_count}")
    print(f"RSS MiB after 1st: {first:.1f}  after 10th: {tenth:.1f}  after last: {last:.1f}  peak: {max(samples):.1f}")
    print(f"ratio last / 10th: {last / tenth:.3f}")


if __name__ == "__main__":
    main()
