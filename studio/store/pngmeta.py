"""Generation metadata in PNG files: write ours, read ours or other tools' back as a request.

Written: tEXt ``parameters`` (A1111 style, for other tools and humans) and tEXt ``flux_studio`` (the record's JSON
without its ``images`` list, plus the image's own ``seed``).

Read (``read_png_request``), first match wins:
1. ``flux_studio`` — its ``request`` with ``seed`` = the image's seed and ``batch_size`` = 1.
2. ``parameters`` (A1111 / Forge / SwarmUI-style text). CFG rule for Flux: when the text has a
   ``Distilled CFG Scale`` (Forge), that is ``guidance`` and ``CFG scale`` is ``true_cfg``; otherwise the single
   ``CFG scale`` is taken as Flux's distilled ``guidance`` (Flux-dev has no real CFG) and ``true_cfg`` stays 1.
3. ComfyUI's ``prompt`` graph (API JSON): sampler seed/steps/cfg, FluxGuidance, latent size, text encoders,
   with the same CFG rule (a FluxGuidance node plays the part of ``Distilled CFG Scale``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from studio.core.errors import InvalidRequest, NotFound
from studio.core.limits import MAX_IMAGE_BYTES, check_file_size, check_pixels, loads_json, too_large
from studio.core.request import GenerationRequest
from studio.store.assets import write_atomic

SAMPLER = "Euler (flow match)"
PARAMETERS_KEY = "parameters"
STUDIO_KEY = "flux_studio"
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"(\d+)\s*x\s*(\d+)")
_NEGATIVE = "Negative prompt:"
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)


# ---- writing ---------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return json.dumps(text) if any(c in text for c in ',:"\n') else text


def a1111_parameters(request: dict[str, Any], seed: int) -> str:
    """The A1111-style ``parameters`` text for one image of ``request``."""
    lines = [str(request.get("prompt") or "")]
    if request.get("negative_prompt"):
        lines.append(f"{_NEGATIVE} {request['negative_prompt']}")
    fields: list[tuple[str, Any]] = [
        ("Steps", request.get("steps")),
        ("Sampler", SAMPLER),
        ("CFG scale", float(request.get("true_cfg") or 1.0)),
        ("Distilled CFG Scale", None if request.get("guidance") is None else float(request["guidance"])),
        ("Seed", seed),
        ("Size", f"{request.get('width')}x{request.get('height')}"),
        ("Model", request.get("model") or None),
    ]
    if request.get("strength") is not None and request.get("mode") in ("img2img", "inpaint"):
        fields.append(("Denoising strength", float(request["strength"])))
    loras = request.get("loras") or []
    if loras:
        hashes = ", ".join(f"{lo.get('name')}: {str(lo.get('sha256') or '')[:12]}" for lo in loras)
        fields.append(("Lora hashes", hashes))
        fields.append(("Lora weights", ", ".join(f"{lo.get('name')}: {lo.get('weight')}" for lo in loras)))
    fields.append(("Version", "Flux Studio"))
    lines.append(", ".join(f"{k}: {_fmt(v)}" for k, v in fields if v is not None))
    return "\n".join(lines)


def save_png(image: Image.Image, path: Path, record_meta: dict[str, Any], seed: int) -> str:
    """Write ``image`` to ``path`` with ``parameters`` and ``flux_studio`` text, atomically; return its sha256."""
    meta = {k: v for k, v in record_meta.items() if k != "images"}
    meta["seed"] = seed
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, a1111_parameters(meta.get("request") or {}, seed))
    info.add_text(STUDIO_KEY, json.dumps(meta, ensure_ascii=True, separators=(",", ":")))
    if image.mode not in _PNG_MODES:
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    data = buf.getvalue()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


# ---- reading ---------------------------------------------------------------------------------------
def read_png_request(source: Path | bytes) -> dict[str, Any]:
    """The request embedded in a PNG (ours, A1111/Forge ``parameters`` or ComfyUI); InvalidRequest if none."""
    name = "the upload" if isinstance(source, (bytes, bytearray)) else f"{Path(source).name!r}"
    text = _png_text(source, name)
    if STUDIO_KEY in text:
        request = _from_studio(text[STUDIO_KEY])
        if request is not None:
            return request
    if text.get(PARAMETERS_KEY, "").strip():
        return parse_parameters(text[PARAMETERS_KEY])
    if "prompt" in text:
        request = _from_comfy(text["prompt"])
        if request is not None:
            return request
    raise InvalidRequest(
        f"{name} has no generation metadata — use a PNG saved by Flux Studio, A1111/Forge or ComfyUI "
        "(images re-saved by editors or chat apps lose it)"
    )


def _png_text(source: Path | bytes, name: str) -> dict[str, str]:
    """The PNG's text chunks; over-cap files and images are refused before any pixel is decoded."""
    if isinstance(source, (bytes, bytearray)):
        if len(source) > MAX_IMAGE_BYTES:
            raise InvalidRequest(
                f"{name} is {len(source) // 2**20} MiB — use a PNG under {MAX_IMAGE_BYTES // 2**20} MiB"
            )
    else:
        try:
            check_file_size(Path(source), name)
        except NotFound:
            raise InvalidRequest(f"{source} does not exist — check the path") from None
    try:
        fp: Any = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else Path(source)
        with Image.open(fp, formats=("PNG",)) as img:
            check_pixels(img.size, name)
            img.load()
            return {k: v for k, v in img.text.items() if isinstance(v, str)}
    except FileNotFoundError:
        raise InvalidRequest(f"{source} does not exist — check the path") from None
    except Image.DecompressionBombError:
        raise too_large(name) from None
    except UnidentifiedImageError:
        raise InvalidRequest(f"{name} is not a PNG — give the original PNG the image was saved as") from None
    except _DECODE_ERRORS as exc:
        raise InvalidRequest(f"{name} is a corrupt or truncated PNG ({exc}) — use the original file") from None


def _from_studio(raw: str) -> dict[str, Any] | None:
    try:
        meta = loads_json(raw)
    except ValueError:
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("request"), dict):
        return None
    request = dict(meta["request"])
    seed = meta.get("seed", request.get("seed"))
    request["seed"] = seed
    request["batch_size"] = 1
    return request


def _split_prompt(text: str) -> tuple[str, str, str]:
    """(prompt, negative, settings line) of an A1111 parameters text (same split as A1111's parser)."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if line.startswith(_NEGATIVE):
            negative.append(line[len(_NEGATIVE) :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    return "\n".join(prompt).strip(), "\n".join(negative).strip(), last


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def _number(fields: dict[str, str], key: str, kind: type) -> Any:
    raw = fields.get(key, "").strip()
    for convert in (kind, lambda v: kind(float(v))):
        try:
            return convert(raw)
        except (ValueError, OverflowError):
            continue
    return None


def parse_parameters(text: str) -> dict[str, Any]:
    """A request dict from A1111/Forge ``parameters`` text (see the module doc for the CFG rule)."""
    prompt, negative, last = _split_prompt(text)
    fields = {k.strip(): _unquote(v) for k, v in _PARAM.findall(last)}
    cfg = _number(fields, "CFG scale", float)
    distilled = _number(fields, "Distilled CFG Scale", float)
    values: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": negative or None,
        "steps": _number(fields, "Steps", int),
        "seed": _number(fields, "Seed", int),
        "model": fields.get("Model", ""),
    }
    if distilled is not None:
        values["guidance"] = distilled
        values["true_cfg"] = cfg if cfg is not None else 1.0
    else:
        values["guidance"] = cfg
    size = _SIZE.fullmatch(fields.get("Size", "").strip())
    if size:
        values["width"], values["height"] = int(size.group(1)), int(size.group(2))
    return GenerationRequest(**values).to_dict()


# ---- ComfyUI ---------------------------------------------------------------------------------------
def _comfy_text(graph: dict[str, Any], link: Any, depth: int = 0) -> str | None:
    """Follow a conditioning link back to the first text-encoder string."""
    if not (isinstance(link, list) and link and depth < 16):
        return None
    node = graph.get(str(link[0]))
    inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
    for key in ("text", "t5xxl", "text_g", "clip_l"):
        if isinstance(inputs.get(key), str):
            return inputs[key]
    for key in ("conditioning", "conditioning_1", "conditioning_to", "positive"):
        found = _comfy_text(graph, inputs.get(key), depth + 1)
        if found is not None:
            return found
    return None


def _from_comfy(raw: str) -> dict[str, Any] | None:
    try:
        graph = loads_json(raw)
    except ValueError:
        return None
    if not isinstance(graph, dict):
        return None
    found: dict[str, Any] = {}
    flux_guidance = None
    for node in graph.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        kind = str(node.get("class_type", ""))
        for key, target in (("seed", "seed"), ("noise_seed", "seed"), ("steps", "steps"), ("cfg", "cfg")):
            if isinstance(inputs.get(key), (int, float)) and target not in found:
                found[target] = inputs[key]
        if kind in ("FluxGuidance", "CLIPTextEncodeFlux") and isinstance(inputs.get("guidance"), (int, float)):
            flux_guidance = float(inputs["guidance"])
        if kind.startswith("Empty") and "Latent" in kind:
            found.setdefault("width", inputs.get("width"))
            found.setdefault("height", inputs.get("height"))
        for key in ("unet_name", "ckpt_name"):
            if isinstance(inputs.get(key), str):
                found.setdefault("model", inputs[key])
        if "positive" in inputs or ("conditioning" in inputs and "Guider" in kind):
            found.setdefault("prompt", _comfy_text(graph, inputs.get("positive") or inputs.get("conditioning")))
            found.setdefault("negative_prompt", _comfy_text(graph, inputs.get("negative")))
    if not found.get("prompt"):
        return None
    cfg = float(found["cfg"]) if "cfg" in found else None
    guidance, true_cfg = (flux_guidance, cfg or 1.0) if flux_guidance is not None else (cfg, 1.0)
    ints = {k: int(found[k]) for k in ("seed", "steps", "width", "height") if isinstance(found.get(k), (int, float))}
    return GenerationRequest(
        prompt=found["prompt"],
        negative_prompt=found.get("negative_prompt") or None,
        model=found.get("model", ""),
        guidance=guidance,
        true_cfg=true_cfg,
        **ints,
    ).to_dict()
