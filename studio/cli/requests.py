"""Turn ``generate`` flags into a GenerationRequest (files become content-addressed asset references)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from studio.core.errors import InvalidRequest
from studio.core.limits import loads_json, read_text_file
from studio.core.request import CacheSpec, ControlSpec, GenerationRequest, LoraSpec, RegionSpec
from studio.store.assets import AssetStore


def parse_schedule(text: str | None) -> dict[str, Any] | None:
    """``--schedule`` JSON, or ``@file`` holding JSON."""
    if not text:
        return None
    source = "--schedule"
    if text.startswith("@"):
        path = Path(text[1:])
        text = read_text_file(path, "schedule file")
        source = str(path)
    try:
        value = loads_json(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"{source} is not valid JSON ({exc}) — e.g. '{{\"guidance\": [[0, 4], [1, 2]]}}'"
        ) from None
    return value


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidRequest(f"{what} {text!r} is not a number") from None


# ---- shared with the API (studio/ui/api_files.py): the same specs from the same kind of input ---------------------
def control_spec(kind: str, image: str, strength: float = 1.0, start: float = 0.0, end: float = 1.0) -> ControlSpec:
    """A control on a stored image ref; KIND-map means the image already is the map (no preprocessing)."""
    return ControlSpec(kind, image, not kind.endswith("-map"), strength, start, end)


def edit_mode(init_image: str | None, mask: str | None) -> str:
    """The mode the inputs imply: an init image → img2img, with a mask → inpaint, neither → txt2img."""
    return "inpaint" if mask else ("img2img" if init_image else "txt2img")


def parse_control(text: str, assets: AssetStore) -> ControlSpec:
    """``KIND:IMAGE[:STRENGTH[:START:END]]``; KIND-map means the image already is the map."""
    parts = text.split(":")
    if len(parts) not in (2, 3, 5):
        raise InvalidRequest(
            f"--control {text!r} must look like KIND:IMAGE[:STRENGTH[:START:END]], e.g. canny:edges.png:0.8"
        )
    kind, image = parts[0], parts[1]
    strength = _float(parts[2], "control strength") if len(parts) >= 3 else 1.0
    start, end = (_float(parts[3], "control start"), _float(parts[4], "control end")) if len(parts) == 5 else (0.0, 1.0)
    return control_spec(kind, assets.put_file(Path(image)), strength, start, end)


def parse_region(text: str, assets: AssetStore) -> RegionSpec:
    """``MASK_PNG:PROMPT`` (white = region)."""
    mask, sep, prompt = text.partition(":")
    if not sep or not prompt.strip():
        raise InvalidRequest(f"--region {text!r} must look like MASK_PNG:PROMPT, e.g. left.png:a red circle")
    return RegionSpec(assets.put_file(Path(mask)), prompt)


def parse_lora(text: str) -> LoraSpec:
    """``NAME_OR_PATH[:WEIGHT]``."""
    name, sep, weight = text.rpartition(":")
    if not sep or not _is_number(weight):
        return LoraSpec(text, "", 1.0)
    return LoraSpec(name, "", float(weight))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_cache(text: str | None) -> CacheSpec:
    """``KIND[:THRESHOLD]``."""
    if not text:
        return CacheSpec()
    kind, _, threshold = text.partition(":")
    return CacheSpec(kind, _float(threshold, "cache threshold") if threshold else None)


def request_from_args(args: argparse.Namespace, prompt: str, assets: AssetStore) -> GenerationRequest:
    """The request the flags describe, validated."""
    init_image = assets.put_file(args.init_image) if args.init_image else None
    mask = assets.put_file(args.mask) if args.mask else None
    return GenerationRequest(
        prompt=prompt,
        model=args.model or "",
        mode=edit_mode(init_image, mask),
        prompt_2=args.prompt_2,
        negative_prompt=args.negative_prompt,
        width=args.width,
        height=args.height,
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch,
        guidance=args.guidance,
        true_cfg=args.true_cfg,
        schedule=parse_schedule(args.schedule),
        controls=tuple(parse_control(c, assets) for c in args.control),
        regions=tuple(parse_region(r, assets) for r in args.region),
        region_base_ratio=args.region_base_ratio,
        loras=tuple(parse_lora(x) for x in args.lora),
        init_image=init_image,
        mask=mask,
        strength=args.strength,
        cache=parse_cache(args.cache),
        references=tuple(assets.put_file(Path(image)) for image in getattr(args, "reference", None) or ()),
    ).validate()
