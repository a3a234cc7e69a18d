"""What the API hands back: images as files gradio_client downloads, records without server paths.

The data folder is not part of Gradio's file serving (multi-user safety), so an API result's images are copied
into Gradio's own content-addressed cache (``<GRADIO_TEMP_DIR>/<sha256 of the bytes>/<name>``) and returned as
``FileData``: the client downloads them, and only someone who already knows the image's hash can name that URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.outputs import generate_output


def file_data(path: str | Path) -> dict[str, Any]:
    """A Gradio ``FileData`` of a copy of ``path`` in Gradio's cache (downloaded by gradio_client)."""
    from gradio.processing_utils import save_file_to_cache
    from gradio.utils import get_upload_folder

    copy = save_file_to_cache(path, cache_dir=get_upload_folder())
    return {"path": copy, "orig_name": Path(path).name, "mime_type": "image/png", "meta": {"_type": "gradio.FileData"}}


def api_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` for an API client: each image's server path replaced by its owner-checked gallery URL."""
    images = [{"sha256": img.get("sha256"), "seed": img.get("seed"), "url": f"/gallery/image/{record['id']}/{k}"}
              for k, img in enumerate(record.get("images") or [])]
    return {**record, "images": images}


def api_generate_output(record: dict[str, Any]) -> dict[str, Any]:
    """The CLI's generate output, with ``images`` as files the client downloads."""
    output = generate_output(record)
    return {**output, "images": [file_data(path) for path in output["images"]]}
