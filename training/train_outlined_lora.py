"""Train flux-mini's sample style LoRA "outlined" with the studio's own LoRA trainer, then measure it.

    python -m training.train_outlined_lora --seed 0 --steps 800

Data: 64 one-object toy scenes of the training split in the outlined style (TOYWORLD.md: closed outlines, stroke
~5 % of the side; stick figures are excluded — they are strokes already), captioned with their prompts, which
carry the trigger word in front of the shape ("a red outlined circle in the top left on a white background").
Training: ``studio.lora_training.train_lora`` on the resident flux-mini (the Training tab's code path), rank 8, on
the double-stream blocks' attention (``double_blocks_only``: the part kohya's format can hold), written to
``assets/loras/outlined.safetensors`` with trigger-word / base-model metadata; a kohya-format copy goes to
``assets/loras/kohya/outlined-kohya.safetensors`` (``training.kohya_export``).

Measurement: held-out one-object prompts without figures, 4 steps, seeds 0..n-1: hollow share (TOYWORLD.md) and
ToyGenEval of the other attributes with the LoRA at weight 1 (prompt with the trigger word), with the kohya copy,
and without the LoRA (prompt without the trigger word). Writes ``runs/outlined_lora.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from PIL import Image

from studio import settings as settings_mod
from studio.engine import Engine
from studio.lora_training import TrainingConfig, TrainingExample, train_lora
from studio.request import GenerationRequest, LoraSpec
from studio.toyworld import render_scene, scene_prompt, scene_set
from studio.toyworld.evaluate import evaluate_image, is_hollow
from studio.toyworld.grammar import STICK_FIGURE, Scene
from training.kohya_export import export as export_kohya

LORA_DIR = Path("assets/loras")
KOHYA_PATH = LORA_DIR / "kohya" / "outlined-kohya.safetensors"


def styled_scenes(n: int, seed: int, split: str) -> list[Scene]:
    """``n`` one-object scenes without stick figures, in the outlined style."""
    scenes: list[Scene] = []
    batch = 0
    while len(scenes) < n:
        for scene in scene_set("one", 4 * n, seed=seed + batch, split=split):
            if scene.objects[0].shape != STICK_FIGURE and len(scenes) < n:
                scenes.append(Scene(scene.objects, scene.background, "outlined"))
        batch += 1
    return scenes


def hollow_share(engine: Engine, scenes: list[Scene], loras: tuple[LoraSpec, ...], styled: bool) -> dict:
    """Generate each scene's prompt (with or without the trigger word) and score hollowness and attributes."""
    hollow = correct = 0
    for k, scene in enumerate(scenes):
        plain = Scene(scene.objects, scene.background, None)
        prompt = scene_prompt(scene if styled else plain)
        image = engine.generate(GenerationRequest(prompt=prompt, seed=k, loras=loras)).images[0]
        found = evaluate_image(image, plain).objects[0]
        hollow += bool(found.mask is not None and is_hollow(found.mask))
        correct += bool(found.colour_ok and found.position_ok)
    n = len(scenes)
    return {"n": n, "hollow": hollow / n, "colour_and_position": correct / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-eval", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=64, help="how many outlined training scenes")
    parser.add_argument("--all-blocks", action="store_true", help="also the single blocks (no kohya copy then)")
    parser.add_argument("--out-dir", type=Path, default=LORA_DIR)
    parser.add_argument("--skip-train", action="store_true", help="only measure the shipped files")
    args = parser.parse_args()
    settings = settings_mod.from_env(threads=1, lora_dirs=(args.out_dir,))
    engine = Engine(settings)
    engine.ensure()
    report: dict = {}
    if not args.skip_train:
        train_scenes = styled_scenes(args.n_train, 1000 + args.seed, "train")
        examples = [TrainingExample(Image.fromarray(render_scene(s, 64, 50_000 + i).image), scene_prompt(s))
                    for i, s in enumerate(train_scenes)]
        config = TrainingConfig(name="outlined", trigger_word="outlined", rank=args.rank, steps=args.steps,
                                learning_rate=args.lr, seed=args.seed, batch_size=args.batch,
                                double_blocks_only=not args.all_blocks)
        started = time.perf_counter()
        last = [0.0]

        def progress(step: int, total: int, loss: float) -> None:
            if step % 50 == 0 or step == total:
                print(f"step {step}/{total} loss {loss:.4f} ({time.perf_counter() - started:.0f}s)", flush=True)
            last[0] = loss

        path = train_lora(engine, config, examples, args.out_dir, on_progress=progress, overwrite=True)
        report["train_seconds"] = round(time.perf_counter() - started, 1)
        if not args.all_blocks:
            export_kohya(path, args.out_dir / KOHYA_PATH.relative_to(LORA_DIR))
        print(f"wrote {path}", flush=True)
    eval_scenes = styled_scenes(args.n_eval, 9000 + args.seed, "heldout")
    report["off"] = hollow_share(engine, eval_scenes, (), styled=False)
    report["on"] = hollow_share(engine, eval_scenes, (LoraSpec("outlined"),), styled=True)
    if (args.out_dir / KOHYA_PATH.relative_to(LORA_DIR)).is_file():
        report["kohya_on"] = hollow_share(engine, eval_scenes, (LoraSpec("kohya/outlined-kohya"),), styled=True)
    report["trigger_without_lora"] = hollow_share(engine, eval_scenes, (), styled=True)
    print(json.dumps(report, indent=1))
    Path("runs").mkdir(exist_ok=True)
    Path("runs/outlined_lora.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
