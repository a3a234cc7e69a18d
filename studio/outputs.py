"""Where a generation's results go: room on the data disk before generating, and the ``generate`` output of
docs/cli.md shared by the CLI and the Gradio API."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from studio.core.errors import StorageError

MIN_FREE_ENV = "STUDIO_MIN_FREE_MB"


def check_disk_space(data_dir: Path, minimum: int) -> int:
    """Free bytes on the disk holding ``data_dir``; StorageError naming the fix when below ``minimum``."""
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
