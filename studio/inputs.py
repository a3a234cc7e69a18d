"""Input images for a generation, read from the content-addressed asset store."""

from __future__ import annotations

from typing import Any

from PIL import Image

from studio.assetstore import AssetStore
from studio.settings import Settings


def load_asset_image(settings: Settings, ref: str | None, mode: str, size: tuple[int | None, int | None]) -> Any:
    """The stored image ``ref`` in ``mode``, resized to (width, height) when it differs."""
    store = AssetStore(settings.data_dir / "assets")
    image = store.load(ref or "").convert(mode)
    width, height = size
    if width and height and image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image
