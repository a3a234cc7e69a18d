"""Honest LoRA inspection: detect the format and target model, convert with diffusers, check every module's shapes.

``prepare`` reads a file, converts it to peft keys (``transformer.<module>.lora_A.weight``; LyCORIS LoKr/LoHa files
as peft LoHa ``hada_*`` keys, see ``studio.lora.lycoris``; the CLIP part as ``text_encoder.<module>…``) with diffusers' own
converters, and checks each module against the loaded transformer and text encoder. It raises a StudioError saying
what the file is when it does not fit, so nothing is ever applied partially or silently. It never touches a model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from studio.core.errors import StudioError
from studio.core.limits import loads_json
from studio.lora.detect import FORMATS, UNET_MARKERS, detect_format, detect_target
from studio.lora.files import (
    LoraFileError,
    SafetensorsHeader,
    parse_meta,
    read_header,
    sha256_file,
)
from studio.lora.fit import Fit, check_fit, module_of, refuse_misfit
from studio.lora.formats import CLIP_PREFIXES, TE_PREFIX, TR_PREFIX, clip_lora, split_text_encoders, to_diffusers

__all__ = [
    "FORMATS",
    "Fit",
    "LoraInfo",
    "PreparedLora",
    "check_fit",
    "inspect",
    "load_tensors",
    "prepare",
    "to_diffusers",
]
log = logging.getLogger(__name__)
_TARGET_NAMES = {"sdxl": "an SDXL", "sd15": "a Stable Diffusion 1.5", "sd2": "a Stable Diffusion 2", "sd3": "an SD3"}


@dataclass(frozen=True)
class LoraInfo:
    """What ``lora inspect`` reports (the first seven fields are the CLI contract)."""

    format: str
    target: str
    matched: int
    total: int
    rank: int | None
    trigger_words: tuple[str, ...]
    sha256: str
    base_model: str | None = None
    notes: tuple[str, ...] = ()
    control_channels: int | None = None  # a Flux Control LoRA: the image input it widens the model to
    kind: str = "lora"  # the peft adapter it loads as: "lora" (DoRA included) or "loha" (LyCORIS LoKr/LoHa)
    text_encoder: int = 0  # of ``matched``: modules on the CLIP text encoder

    @property
    def is_control(self) -> bool:
        """A Flux Control LoRA (Canny/Depth-dev kind): it widens the model's input and needs one control image."""
        return self.control_channels is not None

    def to_json(self) -> dict[str, Any]:
        """Exactly the keys of docs/cli.md's ``lora inspect``."""
        return {
            "format": self.format,
            "target": self.target,
            "matched": self.matched,
            "total": self.total,
            "rank": self.rank,
            "trigger_words": list(self.trigger_words),
            "sha256": self.sha256,
        }

    @property
    def summary(self) -> str:
        """``N of M modules applied`` plus any notes."""
        applied = f"{self.matched} of {self.total} modules applied"
        if self.text_encoder:
            applied += f" ({self.text_encoder} on the CLIP text encoder)"
        parts = [applied, *self.notes]
        if self.is_control:
            parts.insert(
                0, f"Flux Control LoRA (input widened to {self.control_channels} channels; needs one control image)"
            )
        return "; ".join(parts)


@dataclass(frozen=True)
class PreparedLora:
    """A checked LoRA ready to load: transformer keys, alphas, peft metadata, and the CLIP text encoder's keys."""

    info: LoraInfo
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    network_alphas: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    text_encoder_state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the header metadata of a safetensors file (refusing pickles, empty and truncated files)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    header = read_header(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise LoraFileError(f"{path.name} could not be read as safetensors ({exc}) — download the file again") from None
    return tensors, header.metadata


def _refuse_early(fmt: str, target: str, keys: list[str], name: str) -> None:
    if target in _TARGET_NAMES:
        markers = (*UNET_MARKERS, "joint_blocks", "pos_embed")
        example = next(k for k in keys if any(m in k.lower() for m in markers)).split(".")[0][:48]
        raise StudioError(
            f"{name} is {_TARGET_NAMES[target]} LoRA (keys like {example}…) — it cannot apply to a Flux "
            "model; use a LoRA trained for FLUX.1"
        )
    if fmt == "unknown" or target == "unknown":
        example = keys[0] if keys else "(no tensors)"
        raise StudioError(
            f"{name} holds no LoRA weights we recognise (e.g. {example}) — expected diffusers/peft lora_A/lora_B, "
            "kohya lora_down/lora_up, LyCORIS lokr_/hada_ or xlabs keys for a Flux model"
        )
    if any(k.endswith(".dora_scale") for k in keys):
        raise StudioError(
            f"{name} is a kohya/LyCORIS DoRA (dora_scale keys): diffusers drops those scales for Flux, which would "
            "apply it wrongly — use its plain-LoRA version, or save it as a peft DoRA (lora_A/lora_B with "
            "lora_magnitude_vector keys, e.g. diffusers' own Flux DoRA training), which the studio loads"
        )


# ---- fit ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Converted:
    """A file as peft state dicts: transformer and CLIP keys, alphas, the kind of adapter, and what is left over."""

    transformer: dict[str, torch.Tensor]
    text_encoder: dict[str, torch.Tensor]
    alphas: dict[str, Any] | None
    kind: str
    unresolved: tuple[str, ...] = ()  # modules that name no layer of the model
    unchecked: tuple[str, ...] = ()  # CLIP modules with no text encoder given to check them against
    t5: tuple[str, ...] = ()  # T5 modules: never applied


def convert(
    tensors: dict[str, torch.Tensor],
    fmt: str,
    transformer: torch.nn.Module,
    text_encoder: torch.nn.Module | None,
    name: str,
) -> Converted:
    """The file's transformer and CLIP parts in peft keys (LyCORIS as LoHa, everything else as LoRA)."""
    if fmt.startswith("lycoris-"):
        from studio.lora import lycoris

        done = lycoris.to_peft(tensors, transformer, text_encoder, name)
        te_unresolved = [m for m in done.unresolved if m.startswith(CLIP_PREFIXES)]
        unresolved = tuple(m for m in done.unresolved if m not in te_unresolved)
        unchecked = tuple(te_unresolved) if text_encoder is None else ()
        unresolved += () if text_encoder is None else tuple(te_unresolved)
        return Converted(
            {k: v for k, v in done.state_dict.items() if k.startswith(TR_PREFIX)},
            {k: v for k, v in done.state_dict.items() if k.startswith(TE_PREFIX)},
            None,
            "loha",
            unresolved,
            unchecked,
            done.t5,
        )
    rest, clip, t5 = split_text_encoders(tensors)
    state_dict, alphas = to_diffusers(rest, fmt, transformer, name)
    te_state, te_unresolved = clip_lora(clip, text_encoder)
    unchecked = tuple(te_unresolved) if text_encoder is None else ()
    unresolved = () if text_encoder is None else tuple(te_unresolved)
    t5_modules = tuple(sorted({module_of(k) for k in t5}))
    return Converted(state_dict, te_state, alphas, "lora", unresolved, unchecked, t5_modules)


def prepare(
    path: Path, transformer: torch.nn.Module, sha256: str = "", text_encoder: torch.nn.Module | None = None
) -> PreparedLora:
    """Read, detect, convert and check a LoRA file against ``transformer`` (and the CLIP ``text_encoder`` when given:
    without it, CLIP modules are reported as not checked); raise a StudioError when it misfits."""
    path = Path(path)
    tensors, metadata = load_tensors(path)
    keys = list(tensors)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    fmt, target = detect_format(keys, metadata), detect_target(keys, shapes)
    _refuse_early(fmt, target, keys, path.name)
    label = f"{path.name} ({fmt} format)"
    parts = convert(tensors, fmt, transformer, text_encoder, path.name)
    fit = check_fit({k: v for k, v in parts.transformer.items() if not k.startswith(TE_PREFIX)}, transformer)
    fit = Fit(
        fit.matched,
        fit.missing + tuple(m for m in parts.unresolved if not m.startswith(CLIP_PREFIXES)),
        fit.wrong,
        fit.norms,
        fit.control_channels,
    )
    refuse_misfit(fit, label, transformer)
    te_matched = _check_text_encoder(parts, text_encoder, label)
    notes = []
    if parts.unchecked:
        notes.append(f"{len(parts.unchecked)} CLIP text-encoder modules not checked (no text encoder to check against)")
    if parts.t5:
        notes.append(
            f"{len(parts.t5)} T5 text-encoder modules not applied (the studio applies LoRAs to the "
            "transformer and the CLIP text encoder)"
        )
    meta = parse_meta(SafetensorsHeader(shapes, metadata))
    matched = len(fit.matched) + te_matched
    info = LoraInfo(
        format=fmt,
        target=target,
        matched=matched,
        total=matched + len(parts.unchecked) + len(parts.t5),
        rank=meta.rank,
        trigger_words=meta.trigger_words,
        sha256=sha256 or sha256_file(path),
        base_model=meta.base_model,
        notes=tuple(notes),
        control_channels=fit.control_channels,
        kind=parts.kind,
        text_encoder=te_matched,
    )
    adapter_meta = _adapter_metadata(metadata)
    return PreparedLora(
        info,
        parts.transformer,
        None if adapter_meta else _transformer_alphas(parts.alphas),
        adapter_meta,
        parts.text_encoder,
    )


def _check_text_encoder(parts: Converted, text_encoder: torch.nn.Module | None, name: str) -> int:
    """How many CLIP modules fit (raising for any that do not)."""
    if text_encoder is None or not (parts.text_encoder or parts.unresolved):
        return 0
    fit = check_fit(parts.text_encoder, text_encoder, TE_PREFIX)
    missing = fit.missing + tuple(m for m in parts.unresolved if m.startswith(CLIP_PREFIXES))
    if fit.wrong:
        raise StudioError(
            f"{name}: {len(fit.wrong)} CLIP text-encoder modules have wrong shapes: e.g. "
            f"{fit.wrong[0][1]} — it was trained for another text encoder; use a LoRA for this model"
        )
    if missing:
        layers = getattr(getattr(text_encoder, "config", None), "num_hidden_layers", "?")
        raise StudioError(
            f"{name}: {len(missing)} CLIP text-encoder modules are not in this model's text encoder "
            f"(e.g. {missing[0]}; it has {layers} layers) — it was trained for another model; use a "
            "LoRA trained for this one"
        )
    return len(fit.matched)


def inspect(
    path: Path, transformer: torch.nn.Module, sha256: str = "", text_encoder: torch.nn.Module | None = None
) -> LoraInfo:
    """What the file is and how it fits ``transformer`` (and ``text_encoder``); a StudioError names any misfit."""
    return prepare(path, transformer, sha256, text_encoder).info


def _adapter_metadata(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return None
    try:
        parsed = loads_json(raw)
    except ValueError:
        log.warning("ignoring unreadable lora_adapter_metadata")
        return None
    return parsed if isinstance(parsed, dict) and any(k.startswith(TR_PREFIX) for k in parsed) else None


def _transformer_alphas(alphas: dict[str, Any] | None) -> dict[str, Any] | None:
    if not alphas:
        return None
    kept = {k: v for k, v in alphas.items() if k.startswith(TR_PREFIX)}
    return kept or None
