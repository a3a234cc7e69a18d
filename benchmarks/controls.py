"""Structure guidance on flux-mini: IoU with the control silhouette, with and without its ControlNet.

    python -m benchmarks.controls [--n 24] [--steps 4] [--kinds canny depth pose] [--configs ...] [--json out.json]

Held-out toy scenes (one object; for pose, scenes whose object is a stick figure) are rendered with their control
maps (TOYWORLD.md); each is generated from its prompt through the studio engine with the map as a ready-made
control (``KIND-map``) and the model folder's own union ControlNet (``studio.json`` → ``controlnets``). A control
is obeyed when the generated object's IoU with the control's silhouette is ≥ 0.8 (``control_obeyed``). Rows:
no control, strength 0.3 / 0.6 / 1.0 over all steps, strength 1.0 for the first 30 % of steps only, and the
"VAE ceiling": the ground-truth scene encoded and decoded (what a perfect generator could reach). Also: time
per image with control vs without, and the process RSS before / after the ControlNet joins (the base transformer
must be the same object — no reload, no copy).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from studio.core import settings as settings_mod
from studio.core.request import ControlSpec, GenerationRequest
from studio.engine.engine import Engine
from studio.store.assets import AssetStore
from studio.toyworld import render_scene, scene_prompt, scene_set
from studio.toyworld.evaluate import control_obeyed, control_silhouette
from studio.toyworld.grammar import STICK_FIGURE

CONFIGS = {  # name → (strength, end) or None for no control
    "no control": None,
    "strength 0.3": (0.3, 1.0),
    "strength 0.6": (0.6, 1.0),
    "strength 1.0": (1.0, 1.0),
    "1.0, end 0.3": (1.0, 0.3),
}


def rss_mib() -> float:
    """Current resident set size of this process in MiB (from /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def held_out_scenes(kind: str, n: int) -> list:
    """``n`` held-out one-object scenes; for pose only stick figures, for the others any shape."""
    scenes, seed = [], 500
    while len(scenes) < n:
        for scene in scene_set("one", 200, seed=seed, split="heldout"):
            if (kind != "pose" or scene.objects[0].shape == STICK_FIGURE) and len(scenes) < n:
                scenes.append(scene)
        seed += 1
    return scenes


def measure(
    engine: Engine, assets: AssetStore, kind: str, n: int, steps: int, configs: tuple[str, ...] = tuple(CONFIGS)
) -> list[dict]:
    """One row per config (of ``configs``) for this control kind."""
    size = engine.defaults().width
    rendered = [render_scene(s, size, 77_000 + i) for i, s in enumerate(held_out_scenes(kind, n))]
    maps = [r.control(kind) for r in rendered]
    refs = [assets.put_image(Image.fromarray(m)) for m in maps]
    silhouettes = [control_silhouette(m, kind) for m in maps]
    rows = []
    for name in configs:
        setting = CONFIGS[name]
        ious, started = [], time.perf_counter()
        for k, r in enumerate(rendered):
            controls = ()
            if setting is not None:
                controls = (ControlSpec(kind=f"{kind}-map", image=refs[k], strength=setting[0], end=setting[1]),)
            request = GenerationRequest(prompt=scene_prompt(r.scene), steps=steps, seed=k, controls=controls)
            image = engine.generate(request, assets=assets).images[0]
            ious.append(control_obeyed(np.asarray(image), silhouettes[k], kind)[0])
        ious_arr = np.array(ious)
        rows.append(
            {
                "kind": kind,
                "config": name,
                "n": n,
                "mean_iou": float(ious_arr.mean()),
                "obeyed": float((ious_arr >= 0.8).mean()),
                "seconds": time.perf_counter() - started,
            }
        )
    ious = [control_obeyed(through_vae(engine, r.image), silhouettes[k], kind)[0] for k, r in enumerate(rendered)]
    rows.append(
        {
            "kind": kind,
            "config": "VAE ceiling",
            "n": n,
            "mean_iou": float(np.mean(ious)),
            "obeyed": float((np.array(ious) >= 0.8).mean()),
            "seconds": 0.0,
        }
    )
    return rows


def through_vae(engine: Engine, image: np.ndarray) -> np.ndarray:
    """The ground-truth scene encoded and decoded by the model's VAE: the best any generation can look."""
    import torch

    pipe = engine.pipe
    with torch.no_grad():
        pixels = pipe.image_processor.preprocess(Image.fromarray(image))
        latents = pipe.vae.encode(pixels).latent_dist.mode()
        decoded = pipe.vae.decode(latents).sample
    return np.asarray(pipe.image_processor.postprocess(decoded, output_type="pil")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--kinds", nargs="+", default=["canny", "depth", "pose"], choices=["canny", "depth", "pose"])
    parser.add_argument(
        "--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS), help="rows to run (default: all)"
    )
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    engine = Engine(settings_mod.from_env({**os.environ, "STUDIO_DATA_DIR": tmp}, threads=args.threads))
    engine.ensure()
    assets = AssetStore(Path(tmp) / "assets")
    engine.generate(GenerationRequest(prompt="a red circle in the center on a white background", seed=0))
    transformer, rss_before = engine.pipe.transformer, rss_mib()
    rows = []
    for kind in args.kinds:
        rows += measure(engine, assets, kind, args.n, args.steps, tuple(args.configs))
    rss_after = rss_mib()
    same_base = engine.pipe.transformer is transformer
    print(f"IoU with the control silhouette, {args.n} held-out scenes per kind, {args.steps} steps, seeds 0..n-1")
    print(f"{'kind':<6} {'config':<14} {'mean IoU':>9} {'IoU>=0.8':>9} {'s/image':>8}")
    for r in rows:
        print(
            f"{r['kind']:<6} {r['config']:<14} {r['mean_iou']:>9.3f} {r['obeyed']:>9.3f} {r['seconds'] / r['n']:>8.3f}"
        )
    plain = sum(r["seconds"] for r in rows if r["config"] == "no control")
    full = sum(r["seconds"] for r in rows if r["config"] == "strength 1.0")
    ratio = full / plain if plain and full else None
    if ratio is not None:
        print(f"time with control (strength 1.0) / without: {ratio:.2f}")
    print(
        f"RSS {rss_before:.1f} MiB before the ControlNet, {rss_after:.1f} MiB after "
        f"(+{rss_after - rss_before:.1f}); base transformer reused: {same_base}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "time_ratio": ratio,
                    "rss_before_mib": rss_before,
                    "rss_after_mib": rss_after,
                    "base_reused": same_base,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
