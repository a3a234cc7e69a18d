"""A LoRA's recommended settings (steps, true CFG, guidance, weight), offered when it is picked.

Read from the file's safetensors metadata (``studio_recommended`` or ``flux_studio.recommended``: a JSON object), or
from a sidecar ``<name>.json`` next to it (``{"recommended": {...}, "note": "..."}``) for files whose weights should
not be rewritten. Unknown keys and out-of-range values are dropped. Header only: no tensors, no torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.core.limits import loads_json
from studio.lora.files import SUFFIX, read_header

log = logging.getLogger(__name__)
METADATA_KEYS = ("studio_recommended", "flux_studio.recommended")
SIDECAR_MAX_BYTES = 64 * 1024
# key → (type, minimum, maximum): what a recommendation may set, in the panel's own ranges
FIELDS: dict[str, tuple[type, float, float]] = {
    "steps": (int, 1, 200),
    "true_cfg": (float, 1.0, 15.0),
    "guidance": (float, 0.0, 15.0),
    "weight": (float, -2, 2),
}


def clean(raw: Any) -> dict[str, float | int]:
    """The usable part of a recommendation: known keys with numbers in range."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, float | int] = {}
    for key, (kind, low, high) in FIELDS.items():
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if low <= value <= high and (kind is float or float(value).is_integer()):
            out[key] = kind(value)
    return out


def sidecar(path: Path) -> Path:
    """Where a LoRA's sidecar JSON lives: ``outlined.safetensors`` → ``outlined.json``."""
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    return path.with_name(stem + ".json")


def _from_sidecar(path: Path) -> tuple[dict[str, Any], str]:
    file = sidecar(path)
    try:
        if not file.is_file() or file.stat().st_size > SIDECAR_MAX_BYTES:
            return {}, ""
        data = loads_json(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.warning("ignoring the LoRA sidecar %s: %s", file, exc)
        return {}, ""
    if not isinstance(data, dict):
        return {}, ""
    note = data.get("note")
    return clean(data.get("recommended")), note if isinstance(note, str) else ""


def _from_metadata(path: Path) -> dict[str, Any]:
    try:
        metadata = read_header(path).metadata
    except (StudioError, OSError):
        return {}
    for key in METADATA_KEYS:
        if key in metadata:
            try:
                return clean(loads_json(metadata[key]))
            except ValueError:
                return {}
    return {}


def recommended(path: str | Path | None) -> dict[str, Any]:
    """``{"settings": {...}, "note": "..."}`` for the LoRA at ``path``; empty settings when it recommends nothing.

    The file's own metadata wins over the sidecar, key by key.
    """
    if not path:
        return {"settings": {}, "note": ""}
    path = Path(path)
    settings, note = _from_sidecar(path)
    return {"settings": {**settings, **_from_metadata(path)}, "note": note}


def with_recommendations(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The picker's entries, each with its ``recommended`` settings."""
    return [
        {**entry, "recommended": recommended(entry.get("path") if not entry.get("error") else None)}
        for entry in entries
    ]


def describe(settings: dict[str, Any]) -> str:
    """``8 steps · true CFG 3 · weight 1``."""
    parts = []
    if "steps" in settings:
        parts.append(f"{settings['steps']} steps")
    if "true_cfg" in settings:
        parts.append(f"true CFG {settings['true_cfg']:g}")
    if "guidance" in settings:
        parts.append(f"guidance {settings['guidance']:g}")
    if "weight" in settings:
        parts.append(f"weight {settings['weight']:g}")
    return " · ".join(parts)
