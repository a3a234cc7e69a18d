"""Content-addressed store for input images (masks, control images, init images).

Each image is kept once as a canonical PNG named by the sha256 of its bytes; a request refers to it as
``"sha256:<hex>"`` (docs/cli.md), so a record alone replays. Uploads are opened defensively: only common
image formats, no corrupt or truncated files, no decompression bombs.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import tempfile
import zlib
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from studio.core.errors import InvalidRequest, NotFound, StudioError
from studio.core.limits import IMAGE_FORMATS, MAX_IMAGE_BYTES, MAX_PIXELS, check_image, check_pixels, too_large

__all__ = [
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "UPLOAD_FORMATS",
    "AssetStore",
    "canonical_png",
    "open_upload",
    "parse_ref",
    "write_atomic",
]
MAX_UPLOAD_BYTES = MAX_IMAGE_BYTES
UPLOAD_FORMATS = IMAGE_FORMATS
_KEPT_MODES = ("L", "RGB", "RGBA")
_REF = re.compile(r"sha256:([0-9a-f]{64})")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)


def parse_ref(ref: object) -> str:
    """The hex digest of a ``sha256:<64 hex>`` reference; InvalidRequest for anything else."""
    match = _REF.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        shown = repr(ref)[:80]
        raise InvalidRequest(
            f"asset reference {shown} is malformed — expected 'sha256:<64 hex>'; upload the image again"
        )
    return match.group(1)


def canonical_png(img: Image.Image) -> bytes:
    """PNG bytes of ``img`` without metadata; mode kept if L/RGB/RGBA, else RGBA (has alpha) or RGB."""
    if img.mode not in _KEPT_MODES:
        has_alpha = "A" in img.getbands() or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    clean = img.copy()
    clean.info = {}
    buf = io.BytesIO()
    clean.save(buf, format="PNG")
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_upload(data: bytes, name: str = "the upload") -> Image.Image:
    """Decode untrusted image bytes fully, refusing non-images, corrupt/truncated files and bombs."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidRequest(
            f"{name} is {len(data) // 2**20} MiB — upload an image under {MAX_UPLOAD_BYTES // 2**20} MiB"
        )
    formats = ", ".join(UPLOAD_FORMATS)
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as probe:
            check_pixels(probe.size, name)
            probe.verify()
        img = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
        img.load()
    except Image.DecompressionBombError:
        raise too_large(name) from None
    except UnidentifiedImageError:
        raise InvalidRequest(f"{name} is not a supported image — upload a {formats} file") from None
    except _DECODE_ERRORS as exc:
        raise InvalidRequest(f"{name} is corrupt or truncated ({exc}) — re-export or upload it again") from None
    return ImageOps.exif_transpose(img)


class AssetStore:
    """Input images under ``root`` as ``<sha256>.png``; the folder is created on the first write."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put_image(self, img: Image.Image) -> str:
        """Store ``img`` as a canonical PNG; return its reference ``sha256:<hex>`` (refused over ``MAX_PIXELS``)."""
        check_image(img, "the image")
        data = canonical_png(img)
        digest = hashlib.sha256(data).hexdigest()
        target = self.root / f"{digest}.png"
        if not target.exists():
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                write_atomic(target, data)
            except OSError as exc:
                raise StudioError(
                    f"cannot write to the asset folder {self.root} ({exc.strerror or exc}) — "
                    "choose a writable STUDIO_DATA_DIR with free space"
                ) from None
        return f"sha256:{digest}"

    def put_file(self, source: Path | str | bytes) -> str:
        """Store an uploaded image file (path or bytes) after opening it safely; return its reference."""
        if isinstance(source, (bytes, bytearray)):
            data, name = bytes(source), "the upload"
        else:
            path = Path(source)
            name = f"image {path.name!r}"
            try:
                if path.stat().st_size > MAX_UPLOAD_BYTES:
                    raise InvalidRequest(f"{name} is too large — upload an image under {MAX_UPLOAD_BYTES // 2**20} MiB")
                data = path.read_bytes()
            except FileNotFoundError:
                raise NotFound(f"{path} does not exist — check the path") from None
            except IsADirectoryError:
                raise InvalidRequest(f"{path} is a folder — give an image file") from None
            except PermissionError:
                raise InvalidRequest(f"{path} cannot be read — check its permissions") from None
        return self.put_image(open_upload(data, name))

    def path(self, ref: str) -> Path:
        """The file of ``ref`` (which may not exist yet); InvalidRequest for a malformed ref."""
        return self.root / f"{parse_ref(ref)}.png"

    def exists(self, ref: str) -> bool:
        """True when ``ref`` is stored."""
        return self.path(ref).is_file()

    def load(self, ref: str) -> Image.Image:
        """The stored image of ``ref``, fully loaded; NotFound when it is not stored."""
        path = self.path(ref)
        try:
            with Image.open(path, formats=("PNG",)) as img:
                img.load()
                return img.copy()
        except FileNotFoundError:
            raise NotFound(f"input image {ref} is not in {self.root} — upload the image again") from None
        except _DECODE_ERRORS as exc:
            raise StudioError(
                f"stored input {path} is damaged ({exc}) — delete it and upload the image again"
            ) from None
