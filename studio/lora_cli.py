"""``python -m studio lora inspect PATH`` and ``lora list``: the LoRA commands of INTERFACES.md."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from studio.errors import NotFound


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


def cmd_lora(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``lora inspect`` or ``lora list``."""
    from studio import settings as settings_mod

    settings = settings_mod.from_env()
    if args.lora_command == "list":
        from studio.lora_files import LoraLibrary

        library = LoraLibrary(settings.lora_dirs)
        return {"loras": [library.describe(f) for f in library.scan()]}
    return inspect_file(args.path, settings, args.model).to_json()


def inspect_file(path: Path, settings: Any, model: str | None = None) -> Any:
    """LoraInfo of ``path`` checked against the model's transformer shapes (no weights are loaded)."""
    from studio.lora_inspect import inspect, transformer_skeleton
    from studio.models import locate

    if not path.is_file():
        raise NotFound(f"no file at {path} — check the path")
    location = locate(model or settings.model, settings)
    return inspect(path, transformer_skeleton(location.source))
