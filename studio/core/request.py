"""GenerationRequest: the one description of a generation — validated, run, stored, embedded, shared, replayed.

Its JSON form is the record's ``request`` in docs/cli.md.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from studio.core import schedule as schedule_mod
from studio.core.errors import InvalidRequest

SCHEMA_VERSION = 1
MODES = ("txt2img", "img2img", "inpaint")
CACHE_KINDS = ("none", "fbcache", "magcache", "taylorseer")
QUANTS = ("none", "int8", "fp8", "nf4")
CONTROL_KINDS = ("canny", "depth", "pose")
MAX_PROMPT_CHARS = 4000
MAX_SIDE = 4096
MAX_STEPS = 200
MAX_BATCH = 16
MAX_SEED = 2**32 - 1
MAX_CONTROLS = 3
MAX_REGIONS = 8
MAX_REFERENCES = 4
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASSET_REF = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ControlSpec:
    """One structure-guidance unit: a control image (or ready map) with strength and step window."""

    kind: str
    image: str
    preprocess: bool = True
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0


@dataclass(frozen=True)
class RegionSpec:
    """A painted region mask (white = region) and the prompt it follows."""

    mask: str
    prompt: str


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA by name and content hash, applied at a weight."""

    name: str
    sha256: str = ""
    weight: float = 1.0


@dataclass(frozen=True)
class CacheSpec:
    """Step caching: kind and its threshold (None = the kind's default)."""

    kind: str = "none"
    threshold: float | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """Everything needed to make (and remake) a generation. ``None`` fields take the model's defaults."""

    prompt: str
    model: str = ""
    mode: str = "txt2img"
    prompt_2: str | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    seed: int | None = None
    batch_size: int = 1
    guidance: float | None = None
    true_cfg: float = 1.0
    schedule: dict[str, list[list[float]]] | None = None
    controls: tuple[ControlSpec, ...] = ()
    regions: tuple[RegionSpec, ...] = ()
    region_base_ratio: float = 0.0  # share of the base prompt mixed into every region prompt's tokens (0..1)
    loras: tuple[LoraSpec, ...] = ()
    init_image: str | None = None
    mask: str | None = None
    strength: float | None = None
    cache: CacheSpec = field(default_factory=CacheSpec)
    quant: str = ""  # "": the studio's STUDIO_QUANT; the resolved request records what ran
    references: tuple[str, ...] = ()  # reference images (``sha256:<hex>``) for FLUX.1 Kontext / FLUX.2 models

    # ---- derived -------------------------------------------------------------------------------
    @property
    def is_resolved(self) -> bool:
        """True once model defaults and the seed are filled in."""
        return None not in (self.width, self.height, self.steps, self.seed, self.guidance) and bool(self.model)

    def seeds(self) -> list[int]:
        """Seed of each batch image: seed + k."""
        assert self.seed is not None, "resolve the request first"
        return [self.seed + k for k in range(self.batch_size)]

    def replace(self, **changes: Any) -> GenerationRequest:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # ---- validation ----------------------------------------------------------------------------
    def validate(self) -> GenerationRequest:
        """Raise InvalidRequest with a message naming the fix; return self when fine."""
        _check_prompt("prompt", self.prompt, required=True)
        _check_prompt("prompt_2", self.prompt_2)
        _check_prompt("negative_prompt", self.negative_prompt)
        if self.mode not in MODES:
            raise InvalidRequest(f"mode {self.mode!r} is unknown — use one of {', '.join(MODES)}")
        for name in ("width", "height"):
            _check_side(name, getattr(self, name))
        _check_int("steps", self.steps, 1, MAX_STEPS, hint="4 for schnell-like models, 20–50 for dev")
        _check_int("seed", self.seed, 0, MAX_SEED, hint="leave it empty for a random seed")
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH, hint="1")
        if self.seed is not None and self.seed + self.batch_size - 1 > MAX_SEED:
            raise InvalidRequest(f"seed + batch_size must stay ≤ {MAX_SEED} — use a smaller seed")
        _check_float("guidance", self.guidance, 0.0, 30.0, hint="3.5 for dev-like models, 0 for schnell")
        _check_float("true_cfg", self.true_cfg, 0.0, 30.0, hint="1 turns true CFG off")
        schedule_mod.validate_schedule(self.schedule)
        self._validate_inputs()
        self._validate_extensions()
        return self

    def _validate_inputs(self) -> None:
        for name in ("init_image", "mask"):
            _check_ref(name, getattr(self, name))
        if self.mode in ("img2img", "inpaint") and not self.init_image:
            raise InvalidRequest(f"mode {self.mode} needs an init image — add one or use txt2img")
        if self.mode == "inpaint" and not self.mask:
            raise InvalidRequest("inpaint needs a mask (white = repaint) — paint or upload one")
        if self.mode == "txt2img" and (self.init_image or self.mask):
            raise InvalidRequest("an init image or mask needs mode img2img or inpaint — set the mode")
        if not isinstance(self.references, tuple) or len(self.references) > MAX_REFERENCES:
            raise InvalidRequest(f"references must be a list of at most {MAX_REFERENCES} stored images — remove some")
        for ref in self.references:
            _check_ref("reference image", ref, required=True)
        if self.strength is not None:
            _check_float("strength", self.strength, 0.0, 1.0, hint="0.6")
            if self.strength == 0.0:
                raise InvalidRequest("strength 0 would change nothing — use a value in (0, 1], e.g. 0.6")

    def _validate_extensions(self) -> None:
        if len(self.controls) > MAX_CONTROLS:
            raise InvalidRequest(f"{len(self.controls)} controls given — use at most {MAX_CONTROLS}")
        for control in self.controls:
            base = control.kind.removesuffix("-map")
            if base not in CONTROL_KINDS:
                raise InvalidRequest(f"control kind {control.kind!r} is unknown — use canny, depth, pose (or KIND-map)")
            _check_ref("control image", control.image, required=True)
            _check_float("control strength", control.strength, 0.0, 2.0, hint="1.0")
            _check_float("control start", control.start, 0.0, 1.0, hint="0")
            _check_float("control end", control.end, 0.0, 1.0, hint="1")
            if control.start >= control.end:
                raise InvalidRequest("a control's start must be before its end — e.g. start 0, end 1")
        if len(self.regions) > MAX_REGIONS:
            raise InvalidRequest(f"{len(self.regions)} regions given — use at most {MAX_REGIONS}")
        for region in self.regions:
            _check_ref("region mask", region.mask, required=True)
            _check_prompt("region prompt", region.prompt, required=True)
        _check_float("region_base_ratio", self.region_base_ratio, 0.0, 1.0, hint="0 (regions only) to 0.3")
        for lora in self.loras:
            if not lora.name:
                raise InvalidRequest("a LoRA needs a name or path")
            _check_float(f"LoRA {lora.name} weight", lora.weight, -4.0, 4.0, hint="1.0")
        if self.cache.kind not in CACHE_KINDS:
            raise InvalidRequest(f"cache {self.cache.kind!r} is unknown — use one of {', '.join(CACHE_KINDS)}")
        if self.cache.threshold is not None:
            _check_float("cache threshold", self.cache.threshold, 0.0, 10.0, hint="0.1")
        if self.quant not in ("", *QUANTS):
            raise InvalidRequest(f"quant {self.quant!r} is unknown — use one of {', '.join(QUANTS)}")

    # ---- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The record's ``request`` JSON object."""
        data = dataclasses.asdict(self)
        data["schema_version"] = SCHEMA_VERSION
        for key in ("controls", "regions", "loras", "references"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        """Build from a record's request JSON (unknown keys are ignored; missing ones take defaults)."""
        if not isinstance(data, dict):
            raise InvalidRequest("a request must be a JSON object")
        if "prompt" not in data:
            raise InvalidRequest("the request has no prompt")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["controls"] = tuple(ControlSpec(**c) for c in values.get("controls") or ())
            values["regions"] = tuple(RegionSpec(**r) for r in values.get("regions") or ())
            values["loras"] = tuple(LoraSpec(**x) for x in values.get("loras") or ())
            values["cache"] = CacheSpec(**(values.get("cache") or {}))
            references = values.get("references") or ()
            if not isinstance(references, (list, tuple)):
                raise TypeError("references must be a list of 'sha256:<hex>' image references")
            values["references"] = tuple(references)
        except TypeError as exc:
            raise InvalidRequest(
                f"the request's controls/regions/loras/cache/references are malformed: {exc}"
            ) from None
        return cls(**values)


# ---- checks ----------------------------------------------------------------------------------------
def _check_prompt(name: str, text: str | None, required: bool = False) -> None:
    if text is None:
        if required:
            raise InvalidRequest(f"{name} is required — describe the image")
        return
    if not isinstance(text, str):
        raise InvalidRequest(f"{name} must be text")
    if required and not text.strip():
        raise InvalidRequest(f"{name} is empty — describe the image, e.g. 'a red circle on a white background'")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"{name} has {len(text)} characters — shorten it to at most {MAX_PROMPT_CHARS}")
    if _CONTROL_CHARS.search(text):
        raise InvalidRequest(f"{name} contains control characters — remove them (plain text and newlines only)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int, high: int, hint: str) -> None:
    if value is None:
        return
    if not _is_int(value):
        raise InvalidRequest(f"{name} must be a whole number — try {hint}")
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be from {low} to {high} (got {value}) — try {hint}")


def _check_side(name: str, value: Any) -> None:
    if value is None:
        return
    if not _is_int(value) or value < 16 or value > MAX_SIDE:
        raise InvalidRequest(f"{name} must be a whole number from 16 to {MAX_SIDE} (got {value!r}) — try 1024")
    if value % 16:
        nearest = max(16, round(value / 16) * 16)
        raise InvalidRequest(f"{name} must be a multiple of 16 (got {value}) — try {nearest}")


def _check_float(name: str, value: Any, low: float, high: float, hint: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{name} must be a number — try {hint}")
    if not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a finite number (got {value}) — try {hint}")
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be from {low:g} to {high:g} (got {value:g}) — try {hint}")


def _check_ref(name: str, ref: str | None, required: bool = False) -> None:
    if ref is None or ref == "":
        if required:
            raise InvalidRequest(f"{name} is missing — upload an image")
        return
    if not isinstance(ref, str) or not _ASSET_REF.match(ref):
        raise InvalidRequest(f"{name} must be a stored asset reference 'sha256:<64 hex>' — upload the image again")
