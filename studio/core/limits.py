"""Size limits on untrusted input in one place: image pixels and bytes, JSON nesting, text files.

Images are measured before their pixels are decoded (PIL's lazy open reads only the header), so an over-cap image
costs a header read, not gigabytes. Pillow's own bomb guard is set from the same cap when this module is imported:
it warns above ``MAX_PIXELS`` and refuses (``DecompressionBombError``) above twice that, which also guards the
decodes that happen before our code sees an image (Gradio's ``gr.Image(type="pil")``).

JSON from files (safetensors headers, PNG text chunks, request files) is scanned for its bracket depth before
``json.loads``, which otherwise raises ``RecursionError`` on ``[[[[…]]]]`` nested a few thousand deep.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from studio.core.errors import InvalidRequest, NotFound

MAX_PIXELS = 50_000_000
MAX_SIDE = 4096  # what the messages suggest resizing to (16.8 MP, the largest generation size)
MAX_IMAGE_BYTES = 64 * 1024 * 1024
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")  # what uploads may be (no EPS/PSD/… decoders)
MAX_JSON_DEPTH = 64
MAX_TEXT_FILE_BYTES = 1024 * 1024
MAX_TEXT_FILE_LINES = 10_000

Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_CHUNK = 4 * 1024 * 1024
_STEPS = np.zeros(256, np.int8)
_STEPS[[ord("["), ord("{")]], _STEPS[[ord("]"), ord("}")]] = 1, -1


# ---- images ----------------------------------------------------------------------------------------------------
def too_large(name: str, size: tuple[int, int] | None = None) -> InvalidRequest:
    """The refusal for an image over ``MAX_PIXELS``, naming the fix."""
    dims = f" ({size[0]}×{size[1]})" if size else ""
    return InvalidRequest(
        f"{name}{dims} has more than {MAX_PIXELS // 1_000_000} megapixels — resize it to at most "
        f"{MAX_SIDE}×{MAX_SIDE} first"
    )


def check_pixels(size: tuple[int, int], name: str) -> None:
    """Refuse a (width, height) over ``MAX_PIXELS``."""
    if int(size[0]) * int(size[1]) > MAX_PIXELS:
        raise too_large(name, (int(size[0]), int(size[1])))


def image_size(image: Any) -> tuple[int, int] | None:
    """(width, height) of a PIL image or an H×W(×C) array; None for anything else."""
    if isinstance(image, Image.Image):
        return image.size
    shape = getattr(image, "shape", None)
    if shape is not None and len(shape) >= 2:
        return int(shape[1]), int(shape[0])
    return None


def check_image(image: Any, name: str) -> None:
    """Refuse a decoded image (PIL or array) over ``MAX_PIXELS``; anything without a size passes."""
    size = image_size(image)
    if size is not None:
        check_pixels(size, name)


def check_file_size(path: Path, name: str, limit: int = MAX_IMAGE_BYTES) -> None:
    """Refuse a file over ``limit`` bytes (NotFound when it does not exist)."""
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist — check the path") from None
    except OSError as exc:
        raise InvalidRequest(f"{name} cannot be read ({exc.strerror}) — check the file") from None
    if size > limit:
        raise InvalidRequest(
            f"{name} is {size / 2**20:.0f} MiB — use a file under {limit // 2**20} MiB (resize it to at most "
            f"{MAX_SIDE}×{MAX_SIDE} or save it compressed)"
        )


def open_image(path: Path | str, name: str | None = None, formats: tuple[str, ...] = IMAGE_FORMATS) -> Image.Image:
    """An image file in one of ``formats``, fully loaded, after checking its bytes and (from the header) pixels."""
    path = Path(path)
    name = name or f"image {path.name!r}"
    check_file_size(path, name)
    try:
        with Image.open(path, formats=formats) as probe:
            check_pixels(probe.size, name)
            probe.load()
            return probe.copy()
    except Image.DecompressionBombError:
        raise too_large(name) from None
    except UnidentifiedImageError:
        raise InvalidRequest(f"{name} is not a supported image — use a {', '.join(formats)} file") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidRequest(f"{name} is corrupt or truncated ({exc}) — re-export it or use another file") from None


# ---- JSON ------------------------------------------------------------------------------------------------------
def json_depth(raw: str | bytes) -> int:
    """The deepest bracket nesting of JSON text, strings skipped; vectorised, never recursive (≈1 s per 100 MB)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    data = data.replace(b"\\\\", b"").replace(b'\\"', b"")  # escaped backslashes, then escaped quotes
    depth, deepest, in_string = 0, 0, 0
    for start in range(0, len(data), _CHUNK):
        chunk = np.frombuffer(data, np.uint8, count=min(_CHUNK, len(data) - start), offset=start)
        quotes = np.cumsum(chunk == ord('"'), dtype=np.int64) + in_string
        steps = _STEPS[chunk] * ((quotes & 1) == 0)
        running = np.cumsum(steps, dtype=np.int64) + depth
        deepest, depth, in_string = max(deepest, int(running.max())), int(running[-1]), int(quotes[-1] & 1)
    return deepest


def json_too_deep(raw: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw`` nests arrays/objects deeper than ``limit``."""
    return json_depth(raw) > limit


def loads_json(raw: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that raises ValueError, never RecursionError, for nesting deeper than ``limit``."""
    if json_too_deep(raw, limit):
        raise ValueError(f"JSON nested deeper than {limit} levels")
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError(f"JSON nested too deeply to parse (limit {limit})") from None


# ---- text files ------------------------------------------------------------------------------------------------
def read_text_file(path: Path, what: str, max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """A UTF-8 text file of at most ``max_bytes`` (read no further, so /dev/zero or a FIFO cannot hang it)."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidRequest(f"cannot read {what} {path} ({exc.strerror or exc}) — check the path") from None
    if len(data) > max_bytes:
        raise InvalidRequest(f"{what} {path} is over {max_bytes // 1024} KiB — split it into smaller files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"cannot read {what} {path} ({exc}) — give a UTF-8 text file") from None
