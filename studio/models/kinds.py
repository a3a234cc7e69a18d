"""Which kind of FLUX transformer is loaded, told by its input width, and the requests each kind can run.

- ``base`` (FLUX.1-dev/schnell, flux-mini): input channels = output channels (64: 16 latent channels × 2×2).
- ``control`` (BFL FLUX.1-Canny-dev / Depth-dev, or a base with a Flux Control LoRA active): 2 × 64 — the control
  map's latents are concatenated to the image latents at every step (``studio.engine.conditioning.control.ChannelControl``,
  as diffusers' FluxControlPipeline).
- ``fill`` (BFL FLUX.1-Fill-dev): 6 × 64 — masked-image latents and the 8×8-packed mask are concatenated; it runs
  through diffusers' FluxFillPipeline (derived with ``from_pipe``) and only inpaints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.core.errors import InvalidRequest, StudioError
from studio.models.families import read_json

KINDS_BY_WIDTH = {1: "base", 2: "control", 6: "fill"}


def image_channels(transformer: Any) -> int:
    """The packed image latents' width (the model's output; its input is wider for Control and Fill kinds)."""
    cfg = transformer.config
    return int(getattr(transformer, "out_channels", None) or cfg.get("out_channels") or cfg.in_channels)


def transformer_kind(transformer: Any) -> str:
    """``base``, ``control`` or ``fill`` from the transformer's input/output channels."""
    cfg = transformer.config  # in_channels follows x_embedder when a Flux Control LoRA widens it
    out_channels = image_channels(transformer)
    ratio, rest = divmod(int(cfg.in_channels), out_channels)
    if rest or ratio not in KINDS_BY_WIDTH:
        raise StudioError(
            f"a transformer with {cfg.in_channels} input and {out_channels} output channels is no "
            "FLUX kind the studio knows (base, Control or Fill) — load FLUX.1-dev or -schnell"
        )
    return KINDS_BY_WIDTH[ratio]


def is_kontext(card_dir: Path | None) -> bool:
    """A FLUX.1 Kontext folder: ``model_index.json`` names ``FluxKontextPipeline``, or ``studio.json`` says
    ``"kontext": true`` (for single-file models whose card folder has no model index)."""
    if card_dir is None:
        return False
    index, card = read_json(card_dir / "model_index.json"), read_json(card_dir / "studio.json")
    return index.get("_class_name") == "FluxKontextPipeline" or card.get("kontext") is True


def check_references(request: Any, model: str, kontext: bool) -> None:
    """Refuse reference images on a model that cannot use them, and the inputs Kontext tokens do not combine with."""
    if not request.references:
        return
    if not kontext:
        raise InvalidRequest(
            f"{Path(model).name} cannot use reference images — load a FLUX.1 Kontext or FLUX.2 "
            "model, or remove reference images"
        )
    if len(request.references) > 1:
        raise InvalidRequest(
            f"a FLUX.1 Kontext model takes one reference image (got {len(request.references)}) — "
            "keep one, or load a FLUX.2 model for several"
        )
    if request.mode != "txt2img" or request.controls or request.regions:
        raise InvalidRequest(
            "a reference image does not combine with img2img/inpaint, controls or regions yet — "
            "remove them, or the reference"
        )


def check_request(transformer: Any, request: Any) -> None:
    """Refuse, with the fix, a request the loaded kind of model cannot run."""
    kind = transformer_kind(transformer)
    if kind == "control":
        _check_control(request)
    elif kind == "fill":
        _check_fill(request)


def _check_control(request: Any) -> None:
    if request.mode != "txt2img":
        raise StudioError(
            "a Flux Control model or LoRA (Canny/Depth-dev) does text-to-image with a control only — "
            "load FLUX.1-dev (or drop the Control LoRA) for img2img / inpaint"
        )
    if len(request.controls) != 1:
        raise StudioError(
            f"a Flux Control model or LoRA needs exactly one control image (got "
            f"{len(request.controls)}) — add its canny or depth map in the Structure tab (CLI: "
            "--control canny:IMAGE)"
        )
    spec = request.controls[0]
    if (spec.strength, spec.start, spec.end) != (1.0, 0.0, 1.0) or (request.schedule or {}).get("control"):
        raise StudioError(
            "a Flux Control model or LoRA has no control strength or window — set strength 1, start "
            "0, end 1 and no control curve, or use a ControlNet with FLUX.1-dev for those"
        )


def _check_fill(request: Any) -> None:
    if request.mode != "inpaint":
        raise StudioError(
            "a Flux Fill model only inpaints — give an init image and a mask (Edit tab, or "
            "--init-image and --mask), or load FLUX.1-dev for text-to-image"
        )
    if request.true_cfg > 1:
        raise StudioError("FluxFillPipeline has no true CFG — set true CFG to 1 (the distilled guidance applies)")
    if request.controls or request.regions:
        raise StudioError("controls and regions do not combine with a Flux Fill model — remove them")
