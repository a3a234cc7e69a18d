"""The training runs' own torch checkpoints, loaded safely: ``weights_only=True``, so a planted pickle runs no code.

What the runs save is tensors, state dicts (OrderedDicts of tensors), optimizer state (dicts, lists, tuples, numbers,
bools, None) and plain numbers; ``plain_args`` turns an argparse Namespace into such values (Paths become strings).
Checkpoints written before that stored ``pathlib`` paths; those two classes are the only extra globals allowed.
"""

from __future__ import annotations

import argparse
import pathlib
from pathlib import Path, PurePath
from typing import Any

import torch

_OLD_RUN_GLOBALS = [pathlib.PosixPath, pathlib.WindowsPath]


def load(path: Path | str, map_location: Any = None) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only; anything else is refused."""
    with torch.serialization.safe_globals(_OLD_RUN_GLOBALS):
        return torch.load(path, map_location=map_location, weights_only=True)


def plain_args(args: argparse.Namespace) -> dict[str, Any]:
    """The run's options as plain values (paths as strings), loadable with ``weights_only=True``."""
    return {key: str(value) if isinstance(value, PurePath) else value for key, value in vars(args).items()}
