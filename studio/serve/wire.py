"""What crosses between the front end and a replica: plain data (dicts, tuples, bytes) both sides rebuild from.

A replica's stream is ``("start", {"replica", "pid"})``, then ``("step", {"step", "total", "elapsed_s", "preview"})``
with the preview as PNG bytes (or None), and last ``("done", record)``, ``("result", result)`` (preview runs) or
``("error", {"type", "message", "user"})``.
"""

from __future__ import annotations

import io
from typing import Any

from studio.core import errors
from studio.core.request import GenerationRequest
from studio.engine.engine import Result, StepUpdate


def png_bytes(image: Any) -> bytes:
    """A PIL image as PNG bytes (fast compression: previews are small and short-lived)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def image_from(data: bytes) -> Any:
    """PNG bytes back to a PIL image."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.copy()


def step_event(update: StepUpdate) -> tuple[str, dict[str, Any]]:
    """A StepUpdate as a stream event."""
    preview = png_bytes(update.preview) if update.preview is not None else None
    return "step", {"step": update.step, "total": update.total, "elapsed_s": update.elapsed_s, "preview": preview}


def step_update(payload: dict[str, Any]) -> StepUpdate:
    """A step event back to the StepUpdate the UI expects (preview as a PIL image)."""
    preview = image_from(payload["preview"]) if payload.get("preview") else None
    return StepUpdate(int(payload["step"]), int(payload["total"]), preview, float(payload.get("elapsed_s", 0.0)))


def result_event(result: Result, replica: str) -> tuple[str, dict[str, Any]]:
    """A preview run's Result (not stored) as a stream event."""
    return "result", {
        "request": result.request.to_dict(),
        "images": [png_bytes(image) for image in result.images],
        "seeds": list(result.seeds),
        "timings": {**result.timings, "replica": replica},
    }


def result_from(payload: dict[str, Any]) -> Result:
    """A result event back to a Result with PIL images."""
    request = GenerationRequest.from_dict(payload["request"])
    return Result(request, [image_from(data) for data in payload["images"]], payload["seeds"], payload["timings"])


def error_event(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """An exception as a stream event: its class name, message and whether it is the user's to fix."""
    return "error", {"type": type(exc).__name__, "message": str(exc), "user": isinstance(exc, errors.StudioError)}


class RemoteFailure(RuntimeError):
    """A replica's internal fault (not a StudioError), re-raised in the front end with the replica's message."""


def raise_error(payload: dict[str, Any]) -> None:
    """Raise the front-end twin of a replica's error: the same StudioError subclass, or RemoteFailure."""
    if payload.get("user"):
        cls = getattr(errors, str(payload.get("type")), None)
        if not (isinstance(cls, type) and issubclass(cls, errors.StudioError)):
            cls = errors.StudioError
        raise cls(payload["message"])
    raise RemoteFailure(f"{payload.get('type')}: {payload.get('message')}")
