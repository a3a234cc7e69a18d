"""Where a generation's results go: room on the data disk before generating, and the ``generate`` output of
docs/cli.md shared by the CLI and the Gradio API."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from studio.core.errors import StorageError, StudioError

MIN_FREE_ENV = "STUDIO_MIN_FREE_MB"
DEFAULT_MIN_FREE_MB = 200.0


def min_free_bytes() -> int:
    """STUDIO_MIN_FREE_MB in bytes (default 200 MB; 0 turns the check off)."""
    raw = os.environ.get(MIN_FREE_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_MIN_FREE_MB
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise StudioError(f"{MIN_FREE_ENV}={raw!r} is not a number of megabytes ≥ 0 — e.g. {MIN_FREE_ENV}=200")
    return int(value * 2**20)


def check_disk_space(data_dir: Path, minimum: int | None = None) -> int:
    """Free bytes on the disk holding ``data_dir``; StorageError naming the fix when below ``minimum``."""
    minimum = min_free_bytes() if minimum is None else minimum
    if minimum <= 0:
        return -1
    path = Path(data_dir)
    while not path.exists() and path != path.parent:  # the folder may not exist yet: its disk is the parent's
        path = path.parent
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return -1  # not measurable here (e.g. a network share); the write itself will tell
    if free < minimum:
        raise StorageError(
            f"only {free / 2**20:.0f} MB free on the disk holding {data_dir} (at least {minimum / 2**20:.0f} MB "
            f"needed) — free some space, choose another STUDIO_DATA_DIR, or lower {MIN_FREE_ENV}"
        )
    return free


def generate_output(record: dict[str, Any]) -> dict[str, Any]:
    """``{"id", "status", "images": [abs paths], "seed", "request", "timings"}`` (+ ``replay_of``)."""
    result = {
        "id": record["id"],
        "status": record["status"],
        "images": [img["path"] for img in record["images"]],
        "seed": record["request"]["seed"],
        "request": record["request"],
        "timings": record["timings"],
    }
    if record.get("replay_of"):
        result["replay_of"] = record["replay_of"]
    return result
