"""``python -m studio lora inspect PATH``, ``lora list`` and ``lora train``: the LoRA commands of docs/cli.md."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from studio.core.errors import InvalidRequest, NotFound

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def add_lora_parser(sub: Any, common: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Register ``lora inspect`` and ``lora list`` under the CLI's subcommands."""
    lora = sub.add_parser("lora", help="inspect and list LoRA files")
    common(lora)
    commands = lora.add_subparsers(dest="lora_command", required=True, parser_class=parser_class)
    inspect_cmd = commands.add_parser("inspect", help="what a LoRA file is and whether it fits the model")
    common(inspect_cmd)
    inspect_cmd.add_argument("path", type=Path)
    inspect_cmd.add_argument("--model", default=None, help="check against this model (default: STUDIO_MODEL)")
    list_cmd = commands.add_parser("list", help="the LoRAs in STUDIO_LORA_DIRS")
    common(list_cmd)
    train = commands.add_parser("train", help="train a LoRA on the model from a folder of images")
    common(train)
    train.add_argument("--name", required=True, help="file name of the LoRA (written to STUDIO_DATA_DIR/loras)")
    train.add_argument("--trigger", required=True, help="trigger word put in front of every caption")
    train.add_argument("--images", required=True, type=Path, help="folder of 10–30 images")
    train.add_argument(
        "--captions",
        type=Path,
        default=None,
        help="file with one 'FILENAME<TAB>caption' (or 'FILENAME: caption') a line; default: a .txt next to each image",
    )
    train.add_argument(
        "--captions-from-filenames",
        action="store_true",
        help="caption each image with its file name ('red_circle.png' → 'red circle')",
    )
    train.add_argument("--steps", type=int, default=200)
    train.add_argument("--rank", type=int, default=8)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--resolution", type=int, default=None, help="default: the model's default size")
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=1, help="CPU threads for training (default 1)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing LoRA of that name")


def cmd_lora(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``lora inspect`` or ``lora list``."""
    from studio.core import settings as settings_mod

    settings = settings_mod.from_env()
    if args.lora_command == "train":
        return train_from_folder(args, settings)
    if args.lora_command == "list":
        from studio.lora.files import LoraLibrary

        library = LoraLibrary(settings.lora_dirs)
        return {"loras": [library.describe(f) for f in library.scan()]}
    return inspect_file(args.path, settings, args.model).to_json()


def inspect_file(path: Path, settings: Any, model: str | None = None) -> Any:
    """LoraInfo of ``path`` checked against the model's transformer and CLIP shapes (no weights are loaded)."""
    from studio.lora.inspection import inspect
    from studio.lora.skeletons import text_encoder_skeleton, transformer_skeleton
    from studio.models.catalog import locate

    if not path.is_file():
        raise NotFound(f"no file at {path} — check the path")
    location = locate(model or settings.model, settings)
    source = location.source
    return inspect(path, transformer_skeleton(source), text_encoder=text_encoder_skeleton(source))


def load_examples(folder: Path, captions_file: Path | None, from_filenames: bool) -> list[Any]:
    """Training examples from a folder: captions from a captions file, ``.txt`` side files or the file names."""
    from studio.core.limits import open_image, read_text_file
    from studio.lora.training_inputs import MAX_IMAGES, TrainingExample

    if not folder.is_dir():
        raise NotFound(f"no folder at {folder} — give --images a folder of images")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(paths) > MAX_IMAGES:
        raise InvalidRequest(f"{folder} holds {len(paths)} images — train on at most {MAX_IMAGES} (10–30 is typical)")
    listed: dict[str, str] = {}
    if captions_file is not None:
        if not captions_file.is_file():
            raise NotFound(f"no captions file at {captions_file}")
        for line in read_text_file(captions_file, "--captions").splitlines():
            sep = "\t" if "\t" in line else ":"
            if sep in line:
                key, caption = line.split(sep, 1)
                listed[key.strip()] = caption.strip()
    examples = []
    for path in paths:
        side = path.with_suffix(".txt")
        if path.name in listed or path.stem in listed:
            caption = listed.get(path.name, listed.get(path.stem, ""))
        elif side.is_file():
            caption = side.read_text(encoding="utf-8").strip()
        elif from_filenames:
            caption = path.stem.replace("_", " ").replace("-", " ").strip()
        else:
            raise InvalidRequest(
                f"no caption for {path.name} — add {side.name}, list it in --captions, or pass "
                "--captions-from-filenames"
            )
        try:
            examples.append(TrainingExample(open_image(path, path.name).convert("RGB"), caption))
        except OSError as exc:
            raise InvalidRequest(f"{path.name} is not a readable image ({exc}) — remove it from {folder}") from None
    return examples


def train_from_folder(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """``lora train``: train on the folder's images and report the file, steps, final loss and seconds."""
    from studio.engine.engine import Engine
    from studio.lora.training import train_lora
    from studio.lora.training_inputs import TrainingConfig

    config = TrainingConfig(
        args.name,
        args.trigger,
        rank=args.rank,
        steps=args.steps,
        learning_rate=args.lr,
        resolution=args.resolution,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    examples = load_examples(args.images, args.captions, args.captions_from_filenames)
    engine = Engine(settings)
    started = time.perf_counter()
    losses: list[float] = []

    def progress(step: int, total: int, loss: float) -> None:
        losses.append(loss)
        if step == total or step % 10 == 0:
            print(f"step {step}/{total} loss {loss:.4f}", file=sys.stderr)

    path = train_lora(
        engine,
        config,
        examples,
        settings.data_dir / "loras",
        on_progress=progress,
        overwrite=args.overwrite,
        threads=args.threads,
    )
    tail = losses[-10:] or [float("nan")]
    return {
        "path": str(path),
        "steps": args.steps,
        "final_loss": round(sum(tail) / len(tail), 6),
        "seconds": round(time.perf_counter() - started, 2),
    }
