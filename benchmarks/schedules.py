"""Guidance schedules on flux-mini: ToyGenEval per preset, CFG passes and time, constant = no schedule.

    python -m benchmarks.schedules [--n 24] [--steps 8] [--kind two]

Prints one table (accuracies over the same held-out prompts and seeds) plus the pass count and time ratio of
"CFG first third" vs constant true CFG, and whether a constant curve is bit-identical to no schedule.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from studio.core import schedule as sched
from studio.core import settings as settings_mod
from studio.core.request import GenerationRequest
from studio.engine.engine import Engine
from studio.toyworld.evaluate import evaluate_many
from studio.toyworld.grammar import prompt_set


def run_set(engine: Engine, prompts: list[str], steps: int, **fields) -> tuple[dict, float, list]:
    images, started = [], time.perf_counter()
    for k, prompt in enumerate(prompts):
        images.append(engine.generate(GenerationRequest(prompt=prompt, steps=steps, seed=k, **fields)).images[0])
    elapsed = time.perf_counter() - started
    return evaluate_many(list(zip(images, prompts))), elapsed, images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--kind", choices=("one", "two"), default="two")
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    engine = Engine(settings_mod.from_env(threads=args.threads))
    engine.ensure()
    guidance = engine.defaults().guidance
    prompts = prompt_set(args.kind, args.n, seed=0, split="heldout")
    presets = sched.presets(guidance=guidance, true_cfg=args.cfg)
    rows = []
    configs = [
        ("constant (no schedule)", {}),
        ("compose early", {"schedule": presets["compose early"]}),
        ("detail late", {"schedule": presets["detail late"]}),
        (f"true CFG {args.cfg:g} constant", {"true_cfg": args.cfg, "negative_prompt": ""}),
        (
            f"CFG first third ({args.cfg:g})",
            {"true_cfg": args.cfg, "negative_prompt": "", "schedule": presets["CFG first third"]},
        ),
    ]
    times = {}
    for name, fields in configs:
        scores, elapsed, _ = run_set(engine, prompts, args.steps, **fields)
        cfg_curve = sched.per_step(
            (fields.get("schedule") or {}).get("true_cfg"), args.steps, fields.get("true_cfg", 1.0)
        )
        passes = sched.transformer_passes(args.steps, cfg_curve, has_negative=True)
        times[name] = elapsed
        rows.append(
            {
                "config": name,
                "passes_per_image": passes,
                "seconds": round(elapsed, 2),
                **{k: round(scores[k], 3) for k in ("color", "shape", "position", "joint")},
            }
        )
    _, _, plain = run_set(engine, prompts[:4], args.steps)
    _, _, flat = run_set(engine, prompts[:4], args.steps, schedule={"guidance": sched.flat_curve(guidance)})
    identical = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(plain, flat))
    print(f"ToyGenEval, {args.n} held-out {args.kind}-object prompts, {args.steps} steps, seeds 0..{args.n - 1}")
    print(f"{'config':<28} {'passes':>6} {'time s':>7} {'color':>6} {'shape':>6} {'pos':>6} {'joint':>6}")
    for r in rows:
        print(
            f"{r['config']:<28} {r['passes_per_image']:>6} {r['seconds']:>7.2f} {r['color']:>6.3f} "
            f"{r['shape']:>6.3f} {r['position']:>6.3f} {r['joint']:>6.3f}"
        )
    const, third = rows[3], rows[4]
    ratio = times[third["config"]] / times[const["config"]]
    print(
        f"CFG first third vs constant CFG: passes {third['passes_per_image']} vs {const['passes_per_image']}, "
        f"time ratio {ratio:.3f}"
    )
    print(f"constant guidance curve bit-identical to no schedule: {identical}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "time_ratio_cfg_third": ratio, "identical": identical}))


if __name__ == "__main__":
    main()
