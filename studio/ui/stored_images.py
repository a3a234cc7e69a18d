"""Images the UI shows or edits come from the store, looked up server-side — never from a path the client sent.

* Results and the history strip show images through the owner-checked route ``/gallery/image/<id>/<k>`` (the
  browser sends its visitor cookie or login with it), so the data folder is never part of Gradio's file serving.
* "Send to edit" and the control-map overlay open the selected record's image by its id, for this visitor only.
* Files a handler receives from an upload component must lie in Gradio's upload folder (what was uploaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from PIL import Image

from studio.core.errors import InvalidRequest, NotFound
from studio.web.share import image_file

if TYPE_CHECKING:
    from studio.service import Studio


def root_url(request: Any, share_base_url: str | None = None) -> str:
    """The public root of the studio (no trailing slash) for URLs the browser fetches."""
    if share_base_url:
        return share_base_url.rstrip("/")
    raw = getattr(request, "request", None)
    if raw is None:
        return ""
    from gradio.route_utils import get_root_url

    return get_root_url(raw, raw.url.path, None)


def image_url(root: str, record_id: str, k: int = 0) -> str:
    """The owner-checked URL of a record's image ``k``."""
    return f"{root}/gallery/image/{quote(record_id, safe='')}/{k}"


def record_images(root: str, record: dict[str, Any]) -> list[tuple[str, str]]:
    """(url, caption) of each image of ``record`` for a Gradio gallery."""
    return [(image_url(root, record["id"], k), f"seed {img['seed']}") for k, img in enumerate(record["images"])]


def owned_image(studio: Studio, record_id: str, owner: str | None, k: int = 0) -> Image.Image:
    """Image ``k`` of the visitor's record ``record_id``, loaded from the store (NotFound for anyone else's)."""
    if not record_id:
        raise InvalidRequest("no image yet — generate one or select one in the history strip")
    record = studio.store.get(record_id, owner)
    path = image_file(studio.store, record, k)
    if path is None:
        raise NotFound("this record has no stored image (cancelled or failed) — pick another one")
    with Image.open(path) as img:
        return img.convert("RGB")


def upload_folder() -> Path:
    """Gradio's upload folder (``GRADIO_TEMP_DIR``), resolved."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def uploaded(path: str | Path) -> Path:
    """``path`` if it is a file Gradio received as an upload; anything else is refused."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(upload_folder()) or not resolved.is_file():
        raise InvalidRequest("that file was not uploaded here — upload it again")
    return resolved
