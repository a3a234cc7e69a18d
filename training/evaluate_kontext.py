"""Evaluate a flux-mini-kontext folder: held-out reference edits per kind, copy share, and text-to-image quality.

    python -m training.evaluate_kontext --model assets/models/flux-mini-kontext --n-per-kind 25 --t2i 40

Edits (``training.kontext_data.eval_edits``: the result's object is a held-out combination) are sampled with the
unchanged ``FluxKontextPipeline.from_pretrained(folder)`` at the folder's native size (``max_area=W*H``,
``_auto_resize=False``), its default steps and guidance (``studio.json``), edit k with seed k. An edit is
*obeyed* when ToyGenEval judges the output joint-correct against the edited scene's one-object prompt and finds
the edited scene's background colour (ToyGenEval's joint scores the objects only, so without that check a copy
of the reference would pass every background edit); a *copy* when the same holds for the reference's scene
instead (the instruction ignored). Text-to-image:
``FluxPipeline.from_pretrained(folder)`` on ``prompt_set("one", n, seed=0, split="heldout")``, prompt k seed k,
the same steps and guidance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import diffusers
import numpy as np
import torch
import transformers
from diffusers import FluxKontextPipeline, FluxPipeline
from PIL import Image

from studio.toyworld import Scene, evaluate_image, evaluate_many, prompt_set, scene_prompt
from training.kontext_data import KINDS, Edit, eval_edits

diffusers.utils.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()


def card(folder: Path) -> dict:
    """The folder's ``studio.json`` defaults (size 128, 4 steps, guidance 2.0 when absent)."""
    path = Path(folder) / "studio.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    return {
        "size": int(info.get("width", 128)),
        "steps": int(info.get("steps", 4)),
        "guidance": float(info.get("guidance", 2.0)),
    }


def to_uint8(images: np.ndarray) -> list[np.ndarray]:
    return [(img * 255).round().clip(0, 255).astype(np.uint8) for img in images]


@torch.no_grad()
def edit_images(
    folder: Path,
    edits: list[Edit],
    steps: int | None = None,
    guidance: float | None = None,
    size: int | None = None,
    pipe: FluxKontextPipeline | None = None,
    chunk: int = 8,
) -> list[np.ndarray]:
    """Edit k's output (uint8 HxWx3) from ``FluxKontextPipeline``, seed k."""
    defaults = card(folder)
    size, steps = size or defaults["size"], steps or defaults["steps"]
    guidance = defaults["guidance"] if guidance is None else guidance
    pipe = pipe or FluxKontextPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out: list[np.ndarray] = []
    for i in range(0, len(edits), chunk):
        part = edits[i : i + chunk]
        refs = [Image.fromarray(e.reference_image(size)) for e in part]
        gens = [torch.Generator().manual_seed(i + k) for k in range(len(part))]
        images = pipe(
            prompt=[e.prompt for e in part],
            image=refs,
            height=size,
            width=size,
            max_area=size * size,
            _auto_resize=False,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gens,
            output_type="np",
            max_sequence_length=32,
        ).images
        out += to_uint8(images)
    return out


def matches(image: np.ndarray, scene: Scene) -> bool:
    """ToyGenEval joint-correct against ``scene``'s prompt AND its background colour found (ToyGenEval's joint
    covers the objects only; without the background check a copied reference would pass every background edit)."""
    score = evaluate_image(image, scene_prompt(scene))
    return bool(score.joint) and score.background == scene.background


def score_edits(edits: list[Edit], images: list[np.ndarray]) -> dict:
    """Per kind and overall: obeyed (joint-correct against the edited scene) and copy (against the reference)."""
    result: dict = {}
    rows = []
    for edit, image in zip(edits, images, strict=True):
        obeyed = matches(image, edit.target)
        copy = matches(image, edit.reference)
        rows.append((edit.kind, bool(obeyed), bool(copy)))
    for kind in (*KINDS, "all"):
        mine = [r for r in rows if kind in ("all", r[0])]
        if mine:
            result[kind] = {
                "n": len(mine),
                "obeyed": float(np.mean([r[1] for r in mine])),
                "copy": float(np.mean([r[2] for r in mine])),
            }
    return result


@torch.no_grad()
def t2i_images(
    folder: Path,
    prompts: list[str],
    steps: int | None = None,
    guidance: float | None = None,
    size: int | None = None,
    chunk: int = 16,
) -> list[np.ndarray]:
    """Plain text-to-image with ``FluxPipeline.from_pretrained(folder)``, prompt k seed k."""
    defaults = card(folder)
    size, steps = size or defaults["size"], steps or defaults["steps"]
    guidance = defaults["guidance"] if guidance is None else guidance
    pipe = FluxPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out: list[np.ndarray] = []
    for i in range(0, len(prompts), chunk):
        part = prompts[i : i + chunk]
        gens = [torch.Generator().manual_seed(i + k) for k in range(len(part))]
        images = pipe(
            prompt=part,
            height=size,
            width=size,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gens,
            output_type="np",
            max_sequence_length=32,
        ).images
        out += to_uint8(images)
    return out


def t2i_score(folder: Path, n: int = 40, **kw: float) -> dict:
    """ToyGenEval of ``prompt_set("one", n, seed=0, split="heldout")`` (prompt k seed k)."""
    prompts = prompt_set("one", n, seed=0, split="heldout")
    return evaluate_many(zip(t2i_images(folder, prompts, **kw), prompts, strict=True))


def evaluate(folder: Path, n_per_kind: int = 10, n_t2i: int = 40, grid: Path | None = None, **kw: float) -> dict:
    """Edit scores (``n_per_kind`` per kind) and, with ``n_t2i`` > 0, the text-to-image one-object scores."""
    edits = eval_edits(n_per_kind)
    images = edit_images(folder, edits, **kw)
    result = {"edits": score_edits(edits, images)}
    if grid is not None:  # reference row over output row, the first 4 edits of each kind
        size = images[0].shape[0]
        pick = [i for k in range(len(KINDS)) for i in range(k * n_per_kind, k * n_per_kind + min(4, n_per_kind))]
        top = np.concatenate([edits[i].reference_image(size) for i in pick], axis=1)
        bottom = np.concatenate([images[i] for i in pick], axis=1)
        Image.fromarray(np.concatenate([top, bottom], axis=0)).save(grid)
    if n_t2i:
        result["t2i_one_heldout"] = t2i_score(folder, n_t2i, **kw)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("assets/models/flux-mini-kontext"))
    parser.add_argument("--n-per-kind", type=int, default=10)
    parser.add_argument("--t2i", type=int, default=40, help="held-out one-object prompts (0: skip)")
    parser.add_argument("--steps", type=int, default=None, help="default: the folder's studio.json")
    parser.add_argument("--guidance", type=float, default=None, help="default: the folder's studio.json")
    parser.add_argument("--grid", type=Path, default=None, help="save references over outputs as a PNG")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        json.dumps(
            evaluate(args.model, args.n_per_kind, args.t2i, args.grid, steps=args.steps, guidance=args.guidance),
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
