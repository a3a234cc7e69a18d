"""Train flux-mini's sample style LoRA "outlined" with the studio's own LoRA trainer, then measure it.

    python -m training.train_outlined_lora --seed 0 --steps 5000 --true-cfg 1 3   # the shipped file (≈ 20 min)
    python -m training.train_outlined_lora --skip-train --n-eval 120 --true-cfg 1 2 3   # measure the shipped files
    python -m training.train_outlined_lora --skip-train --n-eval 120 --true-cfg 3 --sample-steps 8

Data: ``--n-train`` (2 048) one-object toy scenes of the training split in the outlined style (TOYWORLD.md: closed
outlines, stroke ~5 % of the side; stick figures are excluded — they are strokes already;
``training.data.outlined_scenes``), captioned with their prompts, which carry the trigger word in front of the shape
("a red outlined circle in the top left on a white background"). A style has to generalise to every colour, shape
and position, so it is taught from many generated scenes, not the Training tab's 10–30 images (64 scenes learned
nothing that held out).
Training: ``studio.lora.training.train_lora`` on the resident flux-mini (the Training tab's code path), rank 16, on
all layers of the double-stream blocks (``layers="double_blocks"``: both streams' attention and MLPs — the part
kohya's Flux format can hold), with the plain velocity target at g = 1 (the 128-px base is not guidance-distilled,
so the LoRA learns the conditional velocity of outlined scenes and is sampled with true CFG like the base;
``--distilled-guidance-max 4`` gives the targets v_u + g·(ε − x0 − v_u) that suited the earlier distilled 64-px
transformer), 30 % of σ on the four σ the sampler visits (as the base was trained). Written to ``assets/loras/outlined.safetensors``
with trigger-word / base-model metadata; a kohya-format copy goes to
``assets/loras/kohya/outlined-kohya.safetensors`` (``training.kohya_export``).

Measurement: held-out one-object prompts without figures, 4 steps, default guidance, each ``--true-cfg`` scale (empty
negative prompt; 3 is where the style holds), seeds 0..n-1: hollow share
(TOYWORLD.md) and ToyGenEval of the other attributes with the LoRA at weight 1 (prompt with the trigger word), with
the kohya copy, and without the LoRA (prompt without the trigger word). Writes ``--report``
(``runs/outlined_lora.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from PIL import Image

from studio.core import settings as settings_mod
from studio.core.request import GenerationRequest, LoraSpec
from studio.engine.engine import Engine
from studio.lora.training import train_lora
from studio.lora.training_inputs import TrainingConfig, TrainingExample
from studio.toyworld import scene_prompt
from studio.toyworld.evaluate import evaluate_image, is_hollow
from studio.toyworld.grammar import Scene
from training.data import OUTLINED_RENDER_SEED, outlined_scenes, render_images
from training.kohya_export import export as export_kohya

LORA_DIR = Path("assets/loras")
KOHYA_PATH = LORA_DIR / "kohya" / "outlined-kohya.safetensors"


def hollow_share(
    engine: Engine,
    scenes: list[Scene],
    loras: tuple[LoraSpec, ...],
    styled: bool,
    true_cfg: float = 1.0,
    steps: int | None = None,
) -> dict:
    """Generate each scene's prompt (with or without the trigger word) and score hollowness and attributes."""
    hollow = correct = 0
    for k, scene in enumerate(scenes):
        plain = Scene(scene.objects, scene.background, None)
        prompt = scene_prompt(scene if styled else plain)
        request = GenerationRequest(prompt=prompt, seed=k, loras=loras, true_cfg=true_cfg, steps=steps)
        image = engine.generate(request).images[0]
        found = evaluate_image(image, plain).objects[0]
        hollow += bool(found.mask is not None and is_hollow(found.mask))
        correct += bool(found.colour_ok and found.position_ok)
    n = len(scenes)
    return {"n": n, "hollow": hollow / n, "colour_and_position": correct / n}


def arg_parser() -> argparse.ArgumentParser:
    """The command-line options (also how ``training.train_all`` builds this stage's arguments)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-eval", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=2048, help="how many outlined training scenes")
    parser.add_argument(
        "--distilled-guidance-max",
        type=float,
        default=0.0,
        help="train at g ~ U[1, max] against guidance-distilled targets (0: plain loss at g = 1)",
    )
    parser.add_argument("--out-dir", type=Path, default=LORA_DIR)
    parser.add_argument("--skip-train", action="store_true", help="only measure the shipped files")
    parser.add_argument(
        "--true-cfg",
        type=float,
        nargs="+",
        default=[1.0],
        help="measure at each of these true-CFG scales (empty negative prompt)",
    )
    parser.add_argument("--sample-steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="the base model folder (default: STUDIO_MODEL or the shipped flux-mini)",
    )
    parser.add_argument("--report", type=Path, default=Path("runs/outlined_lora.json"), help="where the scores go")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Train (unless ``--skip-train``) into ``--out-dir``, then measure; returns the report."""
    model = str(args.model.resolve()) if args.model is not None else None
    data_dir = args.report.parent / "outlined-lora-studio-data"  # the engine's scratch space, not the gallery
    settings = settings_mod.from_env(threads=1, lora_dirs=(args.out_dir,), model=model, data_dir=data_dir)
    engine = Engine(settings)
    engine.ensure()
    report: dict = {}
    if not args.skip_train:
        train_scenes = outlined_scenes(args.n_train, 1000 + args.seed, "train")
        size = engine.defaults().width  # the model's native size (studio.json), 128 for the shipped flux-mini
        images = render_images(train_scenes, size, OUTLINED_RENDER_SEED)
        examples = [
            TrainingExample(Image.fromarray(image), scene_prompt(s))
            for image, s in zip(images, train_scenes, strict=True)
        ]
        config = TrainingConfig(
            name="outlined",
            trigger_word="outlined",
            rank=args.rank,
            steps=args.steps,
            learning_rate=args.lr,
            seed=args.seed,
            batch_size=args.batch,
            layers="double_blocks",
            guidance=1.0,
            sampler_sigma_share=0.3,
            distilled_guidance_max=args.distilled_guidance_max,
        )
        started = time.perf_counter()

        def progress(step: int, total: int, loss: float) -> None:
            if step % 50 == 0 or step == total:
                print(f"step {step}/{total} loss {loss:.4f} ({time.perf_counter() - started:.0f}s)", flush=True)

        path = train_lora(
            engine, config, examples, args.out_dir, on_progress=progress, overwrite=True, max_images=len(examples)
        )
        report["train_seconds"] = round(time.perf_counter() - started, 1)
        export_kohya(path, args.out_dir / KOHYA_PATH.relative_to(LORA_DIR))
        print(f"wrote {path}", flush=True)
    eval_scenes = outlined_scenes(args.n_eval, 9000 + args.seed, "heldout")
    kohya = (args.out_dir / KOHYA_PATH.relative_to(LORA_DIR)).is_file()
    for cfg in args.true_cfg:
        key = ("" if cfg == 1.0 else f"_cfg{cfg:g}") + (f"_steps{args.sample_steps}" if args.sample_steps else "")
        sampling = {"true_cfg": cfg, "steps": args.sample_steps}
        report["off" + key] = hollow_share(engine, eval_scenes, (), styled=False, **sampling)
        report["on" + key] = hollow_share(engine, eval_scenes, (LoraSpec("outlined"),), styled=True, **sampling)
        if kohya:
            report["kohya_on" + key] = hollow_share(
                engine, eval_scenes, (LoraSpec("kohya/outlined-kohya"),), styled=True, **sampling
            )
        report["trigger_without_lora" + key] = hollow_share(engine, eval_scenes, (), styled=True, **sampling)
    print(json.dumps(report, indent=1))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1))
    return report


def main() -> None:
    run(arg_parser().parse_args())


if __name__ == "__main__":
    main()
