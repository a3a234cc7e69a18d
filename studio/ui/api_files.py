"""Files across the API: uploaded inputs in (checked, stored by content hash), result images out, records pathless.

In: gradio_client uploads every ``handle_file(...)`` argument — nested in lists and dicts too — into Gradio's upload
folder and sends its ``FileData`` (``{"path": ..., "meta": {"_type": "gradio.FileData"}}``). Only a path inside that
folder is accepted (``stored_images.uploaded``: never a server path a client made up), and the image is stored in the
studio's asset store with the caps of ``studio.core.limits`` (bytes, pixels, formats) — as the CLI stores its files.

Out: the data folder is not part of Gradio's file serving (multi-user safety), so a result's images are copied into
Gradio's own content-addressed cache (``<GRADIO_TEMP_DIR>/<sha256 of the bytes>/<name>``) and returned as
``FileData``: the client downloads them, and only someone who already knows the image's hash can name that URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypedDict

from studio.cli.requests import control_spec
from studio.core.errors import InvalidRequest
from studio.core.request import MAX_CONTROLS, MAX_REGIONS, ControlSpec, RegionSpec
from studio.outputs import generate_output
from studio.store.assets import AssetStore
from studio.ui.stored_images import uploaded

CONTROL_KEYS = ("kind", "image", "strength", "start", "end")
REGION_KEYS = ("mask", "prompt")
CONTROL_EXAMPLE = "{'kind': 'canny', 'image': handle_file('edges.png'), 'strength': 0.8}"
REGION_EXAMPLE = "{'mask': handle_file('left.png'), 'prompt': 'a red circle'}"


# ---- the types view_api shows (gradio_client renders a path + gradio.FileData meta as "filepath") ---------------
class FileMeta(TypedDict):
    """Gradio's marker of a file payload."""

    _type: Literal["gradio.FileData"]


class ImageFile(TypedDict, total=False):
    """An image file: ``gradio_client.handle_file(path)`` on the client, its upload's ``FileData`` on the server."""

    path: str
    meta: FileMeta
    orig_name: str


class ControlInput(TypedDict, total=False):
    """One control: ``kind`` and ``image`` required; strength 1, start 0 and end 1 unless given."""

    kind: str
    image: ImageFile
    strength: float
    start: float
    end: float


class RegionInput(TypedDict):
    """One region: a mask image (white = region) and the prompt it follows."""

    mask: ImageFile
    prompt: str


class GenerateOutput(TypedDict, total=False):
    """The CLI's generate JSON with ``images`` as files (``replay_of`` only on replays)."""

    id: str
    status: str
    images: list[ImageFile]
    seed: int
    request: dict[str, Any]
    timings: dict[str, float]
    replay_of: str


# ---- in -------------------------------------------------------------------------------------------------------
def upload_path(value: Any, name: str) -> Path:
    """The file behind an API file argument, refused unless it is an upload Gradio received."""
    path = value.get("path") if isinstance(value, dict) else None
    if not isinstance(path, str) or not path:
        raise InvalidRequest(f"{name} must be a file — pass gradio_client.handle_file('picture.png')")
    try:
        return uploaded(path)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{name}: {exc}") from None


def store_upload(assets: AssetStore, value: Any, name: str) -> str:
    """An uploaded image stored content-addressed (refused over the caps of ``studio.core.limits``); its reference."""
    return assets.put_file(upload_path(value, name))


def _items(value: Any, name: str, limit: int, example: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """A list of at most ``limit`` objects with only ``keys`` (checked before anything is stored)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{name} must be a list of objects like {example}")
    if len(value) > limit:
        raise InvalidRequest(f"{len(value)} {name}s given — use at most {limit}")
    for k, item in enumerate(value, 1):
        if not isinstance(item, dict):
            raise InvalidRequest(f"{name} {k} must be an object like {example}")
        unknown = sorted(set(item) - set(keys))
        if unknown:
            raise InvalidRequest(f"{name} {k} has unknown keys {unknown} — use {', '.join(keys)}")
    return value


def _number(item: dict[str, Any], key: str, default: float, name: str) -> float:
    value = item.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{name} {key} must be a number (got {value!r}) — e.g. {default:g}")
    return float(value)


def api_controls(value: Any, assets: AssetStore) -> tuple[ControlSpec, ...]:
    """``control`` objects (see ``ControlInput``) → ControlSpecs, each image stored as on the CLI."""
    specs = []
    for k, item in enumerate(_items(value, "control", MAX_CONTROLS, CONTROL_EXAMPLE, CONTROL_KEYS), 1):
        kind = item.get("kind")
        if not isinstance(kind, str) or not kind:
            raise InvalidRequest(f"control {k} needs a kind — canny, depth, pose (or KIND-map for a ready map)")
        numbers = [
            _number(item, key, default, f"control {k}")
            for key, default in (("strength", 1.0), ("start", 0.0), ("end", 1.0))
        ]
        specs.append(control_spec(kind, store_upload(assets, item.get("image"), f"control {k} image"), *numbers))
    return tuple(specs)


def api_regions(value: Any, assets: AssetStore) -> tuple[RegionSpec, ...]:
    """``region`` objects (see ``RegionInput``) → RegionSpecs, each mask stored as on the CLI."""
    specs = []
    for k, item in enumerate(_items(value, "region", MAX_REGIONS, REGION_EXAMPLE, REGION_KEYS), 1):
        prompt = item.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest(f"region {k} needs a prompt — e.g. {REGION_EXAMPLE}")
        specs.append(RegionSpec(store_upload(assets, item.get("mask"), f"region {k} mask"), prompt))
    return tuple(specs)


def api_references(value: Any, assets: AssetStore, model: str) -> dict[str, Any]:
    """``reference`` files → the request's ``references`` field (stored with the caps of ``studio.core.limits``); a model
    that cannot use them refuses the request with the reason (``model_kinds.check_references``), never ignores them."""
    if not value:
        return {}
    if not isinstance(value, list):
        raise InvalidRequest("reference must be a list of files — e.g. [handle_file('look.png')]")
    return {"references": tuple(store_upload(assets, v, f"reference {k}") for k, v in enumerate(value, 1))}


# ---- out ------------------------------------------------------------------------------------------------------
def file_data(path: str | Path) -> dict[str, Any]:
    """A Gradio ``FileData`` of a copy of ``path`` in Gradio's cache (downloaded by gradio_client)."""
    from gradio.processing_utils import save_file_to_cache
    from gradio.utils import get_upload_folder

    copy = save_file_to_cache(path, cache_dir=get_upload_folder())
    return {"path": copy, "orig_name": Path(path).name, "mime_type": "image/png", "meta": {"_type": "gradio.FileData"}}


def api_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` for an API client: each image's server path replaced by its owner-checked gallery URL."""
    images = [
        {"sha256": img.get("sha256"), "seed": img.get("seed"), "url": f"/gallery/image/{record['id']}/{k}"}
        for k, img in enumerate(record.get("images") or [])
    ]
    return {**record, "images": images}


def api_generate_output(record: dict[str, Any]) -> dict[str, Any]:
    """The CLI's generate output, with ``images`` as files the client downloads."""
    output = generate_output(record)
    return {**output, "images": [file_data(path) for path in output["images"]]}
