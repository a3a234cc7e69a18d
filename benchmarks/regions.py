"""Regional prompting on flux-mini: two-object prompts, text only vs two painted regions, and the window.

    python -m benchmarks.regions [--n 24] [--steps 8] [--true-cfg 2] [--prompt-seed 1]

Each region is the quadrant of its object's corner, prompted with that object's one-object prompt
(TOYWORLD.md). Prints ToyGenEval accuracies for text only and regions on for 25 % / 50 % / 100 % of the steps,
the main prompt mixed into the regions at 0.3 (``region_base_ratio``), the "VAE ceiling" (the true scenes encoded
and decoded: what a perfect generator could score), and the time per image with regions vs without (ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.controls import through_vae
from studio.core import settings as settings_mod
from studio.core.request import GenerationRequest, RegionSpec
from studio.engine.engine import Engine
from studio.store.assets import AssetStore
from studio.toyworld import render_scene
from studio.toyworld.evaluate import evaluate_many
from studio.toyworld.grammar import object_prompt, scene_prompt, scene_set

QUADRANTS = {"top left": (0, 0), "top right": (1, 0), "bottom left": (0, 1), "bottom right": (1, 1)}


def quadrant_mask(position: str, size: int) -> Image.Image:
    qx, qy = QUADRANTS[position]
    mask = np.zeros((size, size), dtype=np.uint8)
    half = size // 2
    mask[qy * half : (qy + 1) * half, qx * half : (qx + 1) * half] = 255
    return Image.fromarray(mask, "L")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--true-cfg", type=float, default=1.0, help="true CFG for every row (empty negative prompt)")
    parser.add_argument("--prompt-seed", type=int, default=0, help="which held-out prompt set (0: the standard one)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import tempfile

    tmp = tempfile.mkdtemp()
    engine = Engine(settings_mod.from_env({**os.environ, "STUDIO_DATA_DIR": tmp}, threads=args.threads))
    engine.ensure()
    size = engine.defaults().width
    assets = AssetStore(Path(tmp) / "assets")
    scenes = scene_set("two", args.n, seed=args.prompt_seed, split="heldout")
    configs = {
        "text only": None,
        "regions 25%": 0.25,
        "regions 50%": 0.5,
        "regions 100%": 1.0,
        "100%, base 0.3": (1.0, 0.3),
    }
    rows = []
    for name, window in configs.items():
        pairs, started = [], time.perf_counter()
        for k, scene in enumerate(scenes):
            prompt = scene_prompt(scene)
            regions = ()
            schedule = None
            window, base_ratio = window if isinstance(window, tuple) else (window, 0.0)
            if window is not None:
                regions = tuple(
                    RegionSpec(
                        assets.put_image(quadrant_mask(obj.position, size)), object_prompt(obj, scene.background)
                    )
                    for obj in scene.objects
                )
                if window < 1.0:
                    schedule = {"regions": [[0.0, 1.0], [window, 1.0], [min(1.0, window + 1e-3), 0.0], [1.0, 0.0]]}
            request = GenerationRequest(
                prompt=prompt,
                steps=args.steps,
                seed=k,
                regions=regions,
                schedule=schedule,
                region_base_ratio=base_ratio,
                true_cfg=args.true_cfg,
            )
            pairs.append((engine.generate(request, assets=assets).images[0], prompt))
        seconds = time.perf_counter() - started
        scores = evaluate_many(pairs)
        rows.append(
            {"config": name, "seconds": seconds, **{k: scores[k] for k in ("color", "shape", "position", "joint")}}
        )
    truth = [
        (through_vae(engine, render_scene(scene, size, 77_000 + k).image), scene_prompt(scene))
        for k, scene in enumerate(scenes)
    ]
    rows.append(
        {
            "config": "VAE ceiling",
            "seconds": 0.0,
            **{k: v for k, v in evaluate_many(truth).items() if k in ("color", "shape", "position", "joint")},
        }
    )
    print(
        f"ToyGenEval, {args.n} held-out two-object prompts (prompt seed {args.prompt_seed}), {args.steps} steps, "
        f"true CFG {args.true_cfg:g}, seeds 0..{args.n - 1}"
    )
    print(f"{'config':<14} {'time s':>7} {'color':>6} {'shape':>6} {'pos':>6} {'joint':>6}")
    for r in rows:
        print(
            f"{r['config']:<14} {r['seconds']:>7.2f} {r['color']:>6.3f} {r['shape']:>6.3f} {r['position']:>6.3f} "
            f"{r['joint']:>6.3f}"
        )
    ratio = rows[3]["seconds"] / rows[0]["seconds"]
    print(f"time with regions (100%) / text only: {ratio:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "cost_ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
