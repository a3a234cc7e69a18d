"""X/Y plot: the same request over one or two axes (schedule preset, guidance, true CFG, steps, seed, LoRA weight,
control strength) as one labelled grid image; every cell is also an ordinary record in history."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from studio.core import schedule as sched
from studio.core.errors import Cancelled, InvalidRequest
from studio.core.request import GenerationRequest

AXES = ("schedule preset", "guidance", "true_cfg", "steps", "seed", "LoRA weight", "control strength")
MAX_CELLS = 64


@dataclass(frozen=True)
class Axis:
    """One axis: what varies and its values (already parsed)."""

    name: str
    values: tuple[Any, ...]


def parse_axis(name: str, text: str) -> Axis:
    """``"guidance"`` and ``"1, 3.5, 7"`` → Axis; presets by name, numbers for the rest."""
    if name not in AXES:
        raise InvalidRequest(f"X/Y axis {name!r} is unknown — use one of {', '.join(AXES)}")
    items = [item.strip() for item in (text or "").split(",") if item.strip()]
    if not items:
        raise InvalidRequest(f"give the {name} values separated by commas, e.g. 1, 3.5, 7")
    if name == "schedule preset":
        known = sched.presets()
        unknown = [item for item in items if item not in known]
        if unknown:
            raise InvalidRequest(f"unknown preset {unknown[0]!r} — use {', '.join(known)}")
        return Axis(name, tuple(items))
    cast = int if name in ("steps", "seed") else float
    try:
        return Axis(name, tuple(cast(item) for item in items))
    except ValueError:
        raise InvalidRequest(f"{name} values must be {cast.__name__} numbers, e.g. 1, 2, 3") from None


def apply(request: GenerationRequest, axis: Axis, value: Any) -> GenerationRequest:
    """The request with one axis value applied."""
    if axis.name == "schedule preset":
        level = request.true_cfg if request.true_cfg > 1 else 3.0
        # run() fills in the model's default guidance first; 3.5 only shapes curves for validating a draft
        guidance = request.guidance if request.guidance is not None else 3.5
        return request.replace(schedule=sched.presets(guidance=guidance, true_cfg=level)[value])
    if axis.name == "LoRA weight":
        if not request.loras:
            raise InvalidRequest("the LoRA weight axis needs at least one LoRA — pick one in the LoRA tab")
        return request.replace(loras=tuple(dataclasses.replace(lora, weight=value) for lora in request.loras))
    if axis.name == "control strength":
        if not request.controls:
            raise InvalidRequest("the control strength axis needs a control — add one in the Structure tab")
        return request.replace(controls=tuple(dataclasses.replace(c, strength=value) for c in request.controls))
    field = {"true_cfg": "true_cfg", "guidance": "guidance", "steps": "steps", "seed": "seed"}[axis.name]
    return request.replace(**{field: value})


def cell_requests(base: GenerationRequest, x: Axis, y: Axis | None) -> list[list[GenerationRequest]]:
    """Rows (y) of cells (x), validated; a batch of one each."""
    rows = [base] if y is None else [apply(base, y, value) for value in y.values]
    grid = [[apply(row, x, value).replace(batch_size=1).validate() for value in x.values] for row in rows]
    if sum(len(r) for r in grid) > MAX_CELLS:
        raise InvalidRequest(f"an X/Y plot can have at most {MAX_CELLS} cells — use fewer values")
    return grid


def _label(axis: Axis, value: Any) -> str:
    return f"{axis.name}: {value}"


def compose(images: Sequence[Sequence[Image.Image]], x: Axis, y: Axis | None) -> Image.Image:
    """One grid image with the x labels on top and the y labels on the left."""
    font = ImageFont.load_default()
    cell_w = max(img.width for row in images for img in row)
    cell_h = max(img.height for row in images for img in row)
    top, left = 18, (110 if y is not None else 0)
    grid = Image.new("RGB", (left + cell_w * len(x.values), top + cell_h * len(images)), "white")
    draw = ImageDraw.Draw(grid)
    for i, value in enumerate(x.values):
        draw.text((left + i * cell_w + 2, 3), _label(x, value), fill="black", font=font)
    for j, row in enumerate(images):
        if y is not None:
            draw.text((3, top + j * cell_h + cell_h // 2 - 6), _label(y, y.values[j]), fill="black", font=font)
        for i, img in enumerate(row):
            grid.paste(img.convert("RGB"), (left + i * cell_w, top + j * cell_h))
    return grid


def run(
    studio: Any,
    base: GenerationRequest,
    x: Axis,
    y: Axis | None = None,
    on_cell: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    owner: str | None = None,
) -> tuple[Image.Image, list[dict[str, Any]]]:
    """Generate every cell (each stored as a record) and compose the labelled grid."""
    if base.guidance is None and "schedule preset" in (x.name, y.name if y is not None else None):
        # presets shape the guidance level: the model's own default, not a generic one
        base = base.replace(guidance=studio.engine.defaults(base.model).guidance)
    grid = cell_requests(base, x, y)
    total = sum(len(row) for row in grid)
    images: list[list[Image.Image]] = []
    records: list[dict[str, Any]] = []
    for row in grid:
        images.append([])
        for request in row:
            if cancel is not None and cancel.is_set():
                raise Cancelled("X/Y plot cancelled")
            record = studio.generate(request, cancel=cancel, owner=owner)
            if record["status"] != "done":
                raise Cancelled("X/Y plot cancelled")
            records.append(record)
            images[-1].append(Image.open(record["images"][0]["path"]))
            if on_cell is not None:
                on_cell(len(records), total)
    return compose(images, x, y), records
