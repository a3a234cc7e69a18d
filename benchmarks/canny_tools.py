"""Does flux-mini's union ControlNet obey canny maps the way other tools make them?

    python -m benchmarks.canny_tools [--n 40] [--steps 4] [--model FOLDER] [--json out.json]

Held-out one-object scenes (``benchmarks.controls.held_out_scenes``) are rendered antialiased at the model's size;
each scene's canny map is made four ways and given to the studio as a ready map (``canny-map``, strength 1):

- ``benchmark``: the toy world's own canny map (what the ControlNet was trained on);
- ``cv2 100/200``: ``cv2.Canny(gray, 100, 200)`` — one-pixel edges, what A1111/Forge and ComfyUI's OpenCV canny
  preprocessors draw with their default thresholds;
- ``controlnet-aux``: ``controlnet_aux.CannyDetector()(image)`` (its defaults, 100/200), as diffusers' examples do;
- ``blur + cv2 50/150``: a 5×5 Gaussian blur, then ``cv2.Canny(gray, 50, 150)``, another common recipe.

A map is obeyed when the generated object's IoU with the scene's true silhouette (the benchmark map, filled) is
≥ 0.8 (``studio.toyworld.evaluate.control_obeyed``). Prints one row per tool: mean IoU and the share obeyed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from benchmarks.controls import held_out_scenes
from studio.core import settings as settings_mod
from studio.core.request import ControlSpec, GenerationRequest
from studio.engine.engine import Engine
from studio.store.assets import AssetStore
from studio.toyworld import render_scene, scene_prompt
from studio.toyworld.evaluate import control_obeyed, control_silhouette


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def _rgb(edges: np.ndarray) -> np.ndarray:
    return np.repeat(edges[:, :, None], 3, axis=2)


def cv2_canny(image: np.ndarray) -> np.ndarray:
    return _rgb(cv2.Canny(_gray(image), 100, 200))


def controlnet_aux_canny(image: np.ndarray) -> np.ndarray:
    from controlnet_aux import CannyDetector

    out = CannyDetector()(Image.fromarray(image), detect_resolution=image.shape[0], image_resolution=image.shape[0])
    return np.asarray(out.convert("RGB"))


def blurred_canny(image: np.ndarray) -> np.ndarray:
    return _rgb(cv2.Canny(cv2.GaussianBlur(_gray(image), (5, 5), 0), 50, 150))


TOOLS = {
    "benchmark": None,
    "cv2 100/200": cv2_canny,
    "controlnet-aux": controlnet_aux_canny,
    "blur + cv2 50/150": blurred_canny,
}


def measure(engine: Engine, assets: AssetStore, n: int, steps: int) -> list[dict]:
    """One row per tool: mean IoU and share obeyed over ``n`` held-out scenes (scene k with seed k)."""
    size = engine.defaults().width
    rendered = [render_scene(s, size, 77_000 + i) for i, s in enumerate(held_out_scenes("canny", n))]
    truths = [control_silhouette(r.control("canny"), "canny") for r in rendered]
    rows = []
    for name, tool in TOOLS.items():
        ious = []
        for k, r in enumerate(rendered):
            control_map = r.control("canny") if tool is None else tool(r.image)
            ref = assets.put_image(Image.fromarray(control_map))
            request = GenerationRequest(
                prompt=scene_prompt(r.scene), steps=steps, seed=k, controls=(ControlSpec("canny-map", ref),)
            )
            image = engine.generate(request, assets=assets).images[0]
            ious.append(control_obeyed(np.asarray(image), truths[k], "canny")[0])
        rows.append(
            {"tool": name, "n": n, "mean_iou": float(np.mean(ious)), "obeyed": float(np.mean(np.array(ious) >= 0.8))}
        )
        print(f"{name:20s} n={n}  mean IoU {rows[-1]['mean_iou']:.3f}  obeyed {rows[-1]['obeyed']:.2f}", flush=True)
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
