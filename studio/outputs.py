"""The ``generate`` output of INTERFACES.md, shared by the CLI and the Gradio API."""

from __future__ import annotations

from typing import Any


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
