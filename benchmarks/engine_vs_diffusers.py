"""Engine overhead: our sampling loop (through the Engine) vs raw ``FluxPipeline.__call__``, same run, same model.

    python -m benchmarks.engine_vs_diffusers [--steps 4 28] [--repeats 15] [--size 64]

Runs interleaved (A, B, A, B, …) so machine noise hits both; prints medians and the ratio engine / diffusers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from studio.core import settings as settings_mod
from studio.core.request import GenerationRequest
from studio.engine.engine import Engine

PROMPT = "a red circle in the top left on a white background"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 28])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    engine = Engine(settings_mod.from_env(threads=args.threads))
    engine.ensure()
    pipe = engine.pipe
    max_seq = engine.defaults().max_sequence_length
    rows = []
    for steps in args.steps:
        request = GenerationRequest(prompt=PROMPT, width=args.size, height=args.size, steps=steps, seed=1)

        def ours(request: GenerationRequest = request) -> None:
            engine._text_cache.clear()  # same work as diffusers: encode the prompt every time
            engine.generate(request)

        def theirs(steps: int = steps) -> None:
            pipe(
                PROMPT,
                height=args.size,
                width=args.size,
                num_inference_steps=steps,
                guidance_scale=3.5,
                generator=[torch.Generator("cpu").manual_seed(1)],
                max_sequence_length=max_seq,
            )

        ours(), theirs()  # warm-up
        times = {"engine": [], "diffusers": []}
        for _ in range(args.repeats):
            for name, fn in (("engine", ours), ("diffusers", theirs)):
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
        engine_s, diffusers_s = statistics.median(times["engine"]), statistics.median(times["diffusers"])
        rows.append(
            {
                "steps": steps,
                "size": args.size,
                "engine_s": engine_s,
                "diffusers_s": diffusers_s,
                "ratio": engine_s / diffusers_s,
            }
        )
    print(f"{'steps':>5} {'size':>5} {'engine s':>9} {'diffusers s':>12} {'ratio':>7}")
    for r in rows:
        print(f"{r['steps']:>5} {r['size']:>5} {r['engine_s']:>9.4f} {r['diffusers_s']:>12.4f} {r['ratio']:>7.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
