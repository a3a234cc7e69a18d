"""A LoRA trained with the studio's own trainer (the Train LoRA tab's code) on 20 toy images of a new style.

    python -m benchmarks.lora_style [--steps 1500] [--n 24] [--keep assets/loras]
    python -m benchmarks.lora_style --shipped assets/loras      # only measure the shipped zwx-orange

Style "zwx": every object is drawn orange whatever colour the caption names (captions are the scenes' prompts, so
the LoRA must learn to override the prompt's colour). 20 one-object training-split scenes, rank 8, batch 4,
lr 1e-3, at the model's native size, one CPU thread. Effect: on held-out one-object prompts (neither object nor background orange),
the share of generated objects whose colour is orange, with the LoRA and the trigger word vs without either.
Prints the training time, both shares and position accuracy (the rest of the prompt must still be followed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from studio.core import settings as settings_mod
from studio.core.request import GenerationRequest, LoraSpec
from studio.engine.engine import Engine
from studio.lora.training import train_lora
from studio.lora.training_inputs import TrainingConfig, TrainingExample
from studio.toyworld import render_scene, scene_prompt, scene_set
from studio.toyworld.evaluate import evaluate_image
from studio.toyworld.grammar import Scene, ToyObject

STYLE_COLOUR = "orange"


def plain_scenes(n: int, seed: int, split: str) -> list[Scene]:
    """``n`` one-object scenes in which neither the object nor the background is the style colour."""
    return [
        s
        for s in scene_set("one", 4 * n, seed=seed, split=split)
        if STYLE_COLOUR not in (s.objects[0].colour, s.background)
    ][:n]


def styled(scene: Scene) -> Scene:
    """The same scene with its object drawn in the style colour."""
    obj = scene.objects[0]
    return Scene((ToyObject(STYLE_COLOUR, obj.shape, obj.position),), scene.background)


def shares(engine: Engine, scenes: list[Scene], loras: tuple[LoraSpec, ...], trigger: str) -> dict:
    """Share of objects drawn in the style colour, and of objects in the right place."""
    orange = placed = 0
    for k, scene in enumerate(scenes):
        prompt = f"{trigger}, {scene_prompt(scene)}" if trigger else scene_prompt(scene)
        image = engine.generate(GenerationRequest(prompt=prompt, seed=k, loras=loras)).images[0]
        found = evaluate_image(image, scene).objects[0]
        orange += found.colour == STYLE_COLOUR
        placed += found.position_ok
    return {"n": len(scenes), "style_colour": orange / len(scenes), "position": placed / len(scenes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="guidance-embedding value to train at (default: the model's default guidance)",
    )
    parser.add_argument(
        "--distilled-guidance-max",
        type=float,
        default=0.0,
        help="> 1: guidance-distilled targets at g ~ U[1, max] (studio.lora.training)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="copy the trained LoRA into this folder")
    parser.add_argument(
        "--shipped", type=Path, default=None, help="no training: measure zwx-orange.safetensors from this folder"
    )
    args = parser.parse_args()
    lora_dir = args.shipped or Path(tempfile.mkdtemp())
    engine = Engine(settings_mod.from_env(threads=1, lora_dirs=(lora_dir,)))
    engine.ensure()
    seconds = 0.0
    if args.shipped is None:
        train = plain_scenes(20, 300, "train")
        size = engine.defaults().width  # the model's native size (studio.json)
        examples = [
            TrainingExample(Image.fromarray(render_scene(styled(s), size, 9_000 + i).image), scene_prompt(s))
            for i, s in enumerate(train)
        ]
        config = TrainingConfig(
            name="zwx-orange",
            trigger_word="zwx",
            rank=8,
            steps=args.steps,
            learning_rate=1e-3,
            batch_size=4,
            guidance=args.guidance,
            distilled_guidance_max=args.distilled_guidance_max,
        )
        started = time.perf_counter()
        train_lora(engine, config, examples, lora_dir)
        seconds = time.perf_counter() - started
        print(f"trained {args.steps} steps on {len(examples)} images in {seconds:.1f} s (one CPU thread)")
    held = plain_scenes(args.n, 301, "heldout")
    off = shares(engine, held, (), "")
    on = shares(engine, held, (LoraSpec("zwx-orange"),), "zwx")
    print(f"{'':<22} {'orange':>7} {'position':>9}")
    print(f"{'without LoRA':<22} {off['style_colour']:>7.3f} {off['position']:>9.3f}")
    print(f"{'LoRA + trigger word':<22} {on['style_colour']:>7.3f} {on['position']:>9.3f}")
    if args.keep and args.shipped is None:
        args.keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(lora_dir / "zwx-orange.safetensors", args.keep / "zwx-orange.safetensors")
    if args.json:
        args.json.write_text(json.dumps({"train_seconds": seconds, "off": off, "on": on}, indent=2))


if __name__ == "__main__":
    main()
