"""ToyGenEval of a flux-mini folder through the unchanged ``FluxPipeline.from_pretrained`` (4 steps, the folder's native size).

    python -m training.evaluate --model assets/models/flux-mini --n 40 --grid runs/final_grid.png

Held-out prompts: ``prompt_set(kind, n, seed=S, split="heldout")`` (S = ``--prompt-seed``, 0 for the model card);
prompt k is sampled with seed 1000·S + k at ``--guidance`` (2.0, studio.json's, unless given). Reports one- and
two-object accuracy, each without and with true CFG 3 (empty negative prompt);
``--sweep``: the model card's table of distilled guidance × true CFG pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from studio.toyworld import evaluate_many, prompt_set
from training.train_base import SAMPLE_PROMPTS, generate, save_grid


def evaluate(
    model: Path,
    n: int,
    true_cfgs: tuple[float, ...] = (1.0, 3.0),
    kinds: tuple[str, ...] = ("one", "two"),
    steps: int = 4,
    guidance: float = 2.0,
    seed: int = 0,
) -> dict[str, dict]:
    """Scores keyed like ``one_cfg1`` / ``one_cfg3`` / ``two_cfg1``; prompt set ``seed``, sample seeds from it x 1000."""
    out = {}
    for kind in kinds:
        prompts = prompt_set(kind, n, seed=seed, split="heldout")
        for cfg in true_cfgs:
            images = generate(model, prompts, steps=steps, guidance=guidance, seed=1000 * seed, true_cfg=cfg)
            out[f"{kind}_cfg{cfg:g}"] = evaluate_many(zip(images, prompts, strict=True))
            if kind == "one":
                out[f"{kind}_cfg{cfg:g}"]["joint_by_shape"] = joint_by_shape(images, prompts)
    return out


def joint_by_shape(images: list, prompts: list[str]) -> dict[str, list[float]]:
    """One-object joint accuracy per asked shape: ``{shape: [accuracy, count]}``."""
    from collections import defaultdict

    from studio.toyworld.evaluate import evaluate_image

    hits: dict[str, list[bool]] = defaultdict(list)
    for image, prompt in zip(images, prompts, strict=True):
        score = evaluate_image(image, prompt)
        hits[score.scene.objects[0].shape].append(score.joint)
    return {shape: [sum(v) / len(v), len(v)] for shape, v in sorted(hits.items())}


SWEEP = {
    "two": ((1.0, 1.0), (1.0, 2.0), (1.0, 3.0), (2.0, 1.0), (3.5, 1.0), (5.0, 1.0), (2.0, 2.0)),
    "one": ((1.0, 1.0), (1.0, 3.0), (5.0, 1.0)),
}  # (distilled guidance, true CFG) pairs of the model card


def sweep(model: Path, n: int, steps: int = 4) -> dict[str, dict]:
    """Scores per (guidance, true CFG) pair of SWEEP, keyed like ``two_g1_cfg3``."""
    out = {}
    for kind, pairs in SWEEP.items():
        prompts = prompt_set(kind, n, seed=0, split="heldout")
        for guidance, cfg in pairs:
            images = generate(model, prompts, steps=steps, guidance=guidance, true_cfg=cfg)
            out[f"{kind}_g{guidance:g}_cfg{cfg:g}"] = evaluate_many(zip(images, prompts, strict=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("assets/models/flux-mini"))
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument(
        "--prompt-seed", type=int, default=0, help="which held-out prompt set (model card: 0; 1 to pick)"
    )
    parser.add_argument("--grid", type=Path, default=None, help="also write a PNG grid of the sample prompts")
    parser.add_argument("--sweep", action="store_true", help="the model card's guidance × true-CFG sweep instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scores = (
        sweep(args.model, args.n, args.steps)
        if args.sweep
        else evaluate(args.model, args.n, steps=args.steps, guidance=args.guidance, seed=args.prompt_seed)
    )
    print(json.dumps(scores, indent=1))
    if args.grid:
        save_grid(generate(args.model, list(SAMPLE_PROMPTS), steps=args.steps), args.grid, scale=3)


if __name__ == "__main__":
    main()
