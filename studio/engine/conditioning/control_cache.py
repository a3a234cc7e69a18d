"""The engine's control caches: annotated control maps by input content, and loaded ControlNets by source.

``ControlMaps`` is the one cache of annotated maps: generations and the UI's map previews (``Engine.control_map``)
both read it, so a map previewed before generating is annotated once. It is bounded in count and in pixel bytes
and is thread-safe (previews run beside a generation); annotation runs outside its lock.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from studio.core.errors import StudioError
from studio.core.limits import check_image
from studio.engine.conditioning import control

CONTROL_MAPS_KEPT = 16  # annotated control maps kept (least recently used dropped first) …
CONTROL_MAP_BYTES = 256 * 2**20  # … and at most this many pixel bytes in all
MapKey = tuple[Any, ...]


def content_key(image: Image.Image) -> str:
    """A key for an image's content (mode, size and pixels)."""
    digest = hashlib.sha256(f"{image.mode}:{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _pixel_bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


class ControlMaps:
    """Annotated control maps keyed by (kind, preprocess, input content, size): annotate each input once."""

    def __init__(
        self, annotators: Path | None, kept: int = CONTROL_MAPS_KEPT, max_bytes: int = CONTROL_MAP_BYTES
    ) -> None:
        self.annotators = annotators
        self.kept, self.max_bytes = kept, max_bytes
        self._maps: OrderedDict[MapKey, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._maps)

    def get(self, kind: str, preprocess: bool, source: str, open_image: Callable[[], Image.Image], size: Any) -> Any:
        """The map of the input ``source`` names (its content hash); ``open_image`` gives the input (already at
        ``size``, or as is when ``size`` is None) only when the map is not cached yet."""
        key = (kind, preprocess, source, size)
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
        mapped = control.annotate(kind, open_image(), preprocess, self.annotators)
        with self._lock:
            self._maps[key] = mapped
            self._trim()
        return mapped

    def clear(self) -> None:
        """Forget every map."""
        with self._lock:
            self._maps.clear()

    def _trim(self) -> None:
        while len(self._maps) > self.kept or (
            len(self._maps) > 1 and sum(_pixel_bytes(m) for m in self._maps.values()) > self.max_bytes
        ):
            self._maps.popitem(last=False)


def preview_map(maps: ControlMaps, kind: str, image: Image.Image, size: tuple[int, int] | None = None) -> Any:
    """The map a control input turns into (canny/depth/pose, or a ready ``-map`` as is), resized to ``size`` first
    when given; inputs over ``MAX_PIXELS`` are refused before anything is decoded."""
    check_image(image, "the control image")

    def opened() -> Image.Image:
        if size is None or image.size == size:
            return image
        return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)

    return maps.get(kind, not kind.endswith("-map"), content_key(image), opened, size)


class ControlNets:
    """Loaded ControlNets by source, kept beside the base pipeline (dropped with it)."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype
        self._nets: dict[str, Any] = {}

    def clear(self) -> None:
        """Drop every loaded net (the base model changed)."""
        self._nets.clear()

    def load(self, kind: str, source: str, transformer: Any, device: Any) -> Any:
        """The net at ``source`` on ``device`` (loaded once); StudioError naming the fix when it cannot be used."""
        from diffusers import FluxControlNetModel

        if source not in self._nets:
            try:
                net = FluxControlNetModel.from_pretrained(source, dtype=self.dtype)
            except Exception as exc:  # noqa: BLE001 - translated into a message naming the fix
                raise StudioError(
                    f"the {kind} ControlNet {source} could not be loaded ({str(exc).splitlines()[0][:160]}) — "
                    f"set STUDIO_CONTROLNET_{kind.upper()} to a FluxControlNetModel folder or hub id"
                ) from exc
            control.check_compatible(net, transformer, source)
            self._nets[source] = net.to(device).eval()
        return self._nets[source]
