"""The only module that knows both widget values and requests: widgets → GenerationRequest and back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from studio.core.errors import InvalidRequest
from studio.core.limits import loads_json
from studio.core.request import MAX_SEED, CacheSpec, ControlSpec, GenerationRequest, LoraSpec, RegionSpec


@dataclass(frozen=True)
class PromptPanelValues:
    """The prompt panel's widgets, in the order they are wired."""

    prompt: str
    prompt_2: str
    negative_prompt: str
    width: float | None
    height: float | None
    steps: float | None
    seed: float | None
    guidance: float | None
    true_cfg: float | None
    batch: float | None
    schedule_json: str = ""
    cache_kind: str = "none"
    cache_threshold: float | None = None


FIELDS = tuple(PromptPanelValues.__dataclass_fields__)


def _int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    number = float(value)
    if number != int(number):
        raise InvalidRequest(f"{name} must be a whole number (got {value})")
    return int(number)


def _text(value: Any) -> str | None:
    text = (value or "").strip() if isinstance(value, str) else value
    return text or None


def parse_schedule_json(text: str) -> dict[str, Any] | None:
    """The schedule editor's JSON (empty = no schedule)."""
    if not text or not text.strip():
        return None
    try:
        return loads_json(text)
    except ValueError as exc:
        raise InvalidRequest(f"the schedule is not valid JSON ({exc}) — fix it or pick a preset") from None


def request_from_panel(values: PromptPanelValues, model: str = "") -> GenerationRequest:
    """The panel's request (``Page.request_from`` validates it once the other panels' inputs are added); a seed of -1
    or empty means random."""
    seed = _int(values.seed, "seed")
    return GenerationRequest(
        prompt=values.prompt or "",
        model=model,
        prompt_2=_text(values.prompt_2),
        negative_prompt=_text(values.negative_prompt),
        width=_int(values.width, "width"),
        height=_int(values.height, "height"),
        steps=_int(values.steps, "steps"),
        seed=None if seed is None or seed < 0 else seed,
        batch_size=_int(values.batch, "batch size") or 1,
        guidance=None if values.guidance is None else float(values.guidance),
        true_cfg=1.0 if values.true_cfg is None else float(values.true_cfg),
        schedule=parse_schedule_json(values.schedule_json),
        cache=CacheSpec(values.cache_kind or "none", _threshold(values.cache_threshold)),
    )


def _threshold(value: Any) -> float | None:
    return None if value is None or value == "" or float(value) <= 0 else float(value)


def panel_from_request(request: dict[str, Any]) -> PromptPanelValues:
    """Panel values that reproduce a stored request ("reuse settings")."""
    schedule = request.get("schedule")
    return PromptPanelValues(
        prompt=request.get("prompt") or "",
        prompt_2=request.get("prompt_2") or "",
        negative_prompt=request.get("negative_prompt") or "",
        width=request.get("width"),
        height=request.get("height"),
        steps=request.get("steps"),
        seed=request.get("seed"),
        guidance=request.get("guidance"),
        true_cfg=request.get("true_cfg", 1.0),
        batch=request.get("batch_size", 1),
        schedule_json=json.dumps(schedule) if schedule else "",
        cache_kind=(request.get("cache") or {}).get("kind", "none"),
        cache_threshold=(request.get("cache") or {}).get("threshold"),
    )


def random_seed_value() -> int:
    """A fresh random seed for the seed box."""
    import secrets

    return secrets.randbelow(MAX_SEED)


def region_specs(pairs: list[tuple[Any, str]], put_image: Any) -> tuple[RegionSpec, ...]:
    """Painted (mask, prompt) pairs → RegionSpecs, masks stored content-addressed via ``put_image``."""
    from PIL import Image

    specs = []
    for mask, prompt in pairs:
        ref = put_image(Image.fromarray(mask.astype("uint8") * 255, "L"))
        specs.append(RegionSpec(ref, prompt))
    return tuple(specs)


def control_specs(units: list[dict[str, Any]], put_image: Any) -> tuple[ControlSpec, ...]:
    """Control units (kind, image, strength, start, end) → ControlSpecs; units set to off are skipped."""
    specs = []
    for k, unit in enumerate(units):
        if unit["kind"] in (None, "", "off"):
            continue
        if unit["image"] is None:
            raise InvalidRequest(f"control {k + 1} ({unit['kind']}) has no image — upload one or set it to off")
        ref = put_image(unit["image"])
        specs.append(
            ControlSpec(
                unit["kind"],
                ref,
                not unit["kind"].endswith("-map"),
                float(unit["strength"]),
                float(unit["start"]),
                float(unit["end"]),
            )
        )
    return tuple(specs)


def lora_specs(picked: list[dict[str, Any]]) -> tuple[LoraSpec, ...]:
    """Picked LoRAs (name, sha256, weight) → LoraSpecs."""
    return tuple(LoraSpec(p["name"], p.get("sha256") or "", float(p["weight"])) for p in picked)
