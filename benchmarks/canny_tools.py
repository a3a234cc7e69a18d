"""Does flux-mini's union ControlNet obey canny maps the way other tools make them?

    python -m benchmarks.canny_tools [--n 40] [--steps 4] [--model FOLDER] [--json out.json]

Held-out one-object scenes (``benchmarks.controls.held_out_scenes``) are rendered antialiased at the model's size
(``studio.toyworld.tool_maps.antialiased``); each scene's canny map is made by the model's own benchmark (what the
ControlNet was trained on) and by each tool of ``studio.toyworld.tool_maps.TOOLS`` (A1111/Forge's colour
``cv2.Canny 100/200``, controlnet-aux, ComfyUI's core kornia Canny, a blurred grey-level recipe), and given to the
studio as a ready map (``canny-map``, strength 1).

A map is obeyed when the generated object's IoU with the scene's true silhouette (the benchmark map, filled) is
≥ 0.8 (``studio.toyworld.evaluate.control_obeyed``). Prints one row per tool: the share of empty maps (grey-level
tools lose edges between colours of equal luminance; the studio refuses such a map, so it counts as IoU 0), mean
IoU, the share obeyed, and the share obeyed among the non-empty maps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.controls import held_out_scenes
from studio.core import settings as settings_mod
from studio.core.errors import StudioError
from studio.core.request import ControlSpec, GenerationRequest
from studio.engine.engine import Engine
from studio.store.assets import AssetStore
from studio.toyworld import render_scene, scene_prompt, tool_maps
from studio.toyworld.evaluate import control_obeyed, control_silhouette

TOOLS = {"benchmark": None, **tool_maps.TOOLS}


def measure(engine: Engine, assets: AssetStore, n: int, steps: int) -> list[dict]:
    """One row per tool: mean IoU and share obeyed over ``n`` held-out scenes (scene k with seed k)."""
    size = engine.defaults().width
    scenes = held_out_scenes("canny", n)
    rendered = [render_scene(s, size, 77_000 + i) for i, s in enumerate(scenes)]
    smooth = [tool_maps.antialiased(s, size, 77_000 + i) for i, s in enumerate(scenes)]
    truths = [control_silhouette(r.control("canny"), "canny") for r in rendered]
    rows = []
    for name, tool in TOOLS.items():
        ious, empty = [], []
        for k, r in enumerate(rendered):
            control_map = r.control("canny") if tool is None else tool(smooth[k])
            empty.append(tool_maps.empty_map(control_map))
            ref = assets.put_image(Image.fromarray(control_map))
            request = GenerationRequest(
                prompt=scene_prompt(r.scene), steps=steps, seed=k, controls=(ControlSpec("canny-map", ref),)
            )
            try:
                image = engine.generate(request, assets=assets).images[0]
            except StudioError:  # the studio refuses a canny map without edges: not obeyed
                ious.append(0.0)
                continue
            ious.append(control_obeyed(np.asarray(image), truths[k], "canny")[0])
        obeyed, filled = np.array(ious) >= 0.8, ~np.array(empty)
        row = {
            "tool": name,
            "n": n,
            "empty": float(np.mean(empty)),
            "mean_iou": float(np.mean(ious)),
            "obeyed": float(np.mean(obeyed)),
            "obeyed_non_empty": float(np.mean(obeyed[filled])) if filled.any() else 0.0,
        }
        rows.append(row)
        print(
            f"{name:32s} n={n}  empty {row['empty']:.2f}  mean IoU {row['mean_iou']:.3f}  obeyed {row['obeyed']:.2f}"
            f"  (non-empty maps: {row['obeyed_non_empty']:.2f})",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--model", default="", help="a flux-mini folder whose studio.json names the ControlNet to test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"STUDIO_DATA_DIR": tmp, **({"STUDIO_MODEL": args.model} if args.model else {})}
        settings = settings_mod.from_env(env, threads=args.threads)
        engine = Engine(settings)
        rows = measure(engine, AssetStore(Path(tmp) / "assets"), args.n, args.steps)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
