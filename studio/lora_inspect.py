"""Honest LoRA inspection: detect the format and target model, convert with diffusers, check every module's shapes.

``prepare`` reads a file, converts it to diffusers keys (``transformer.<module>.lora_A.weight``) with diffusers' own
converters, and checks each module against the loaded transformer. It raises a StudioError saying what the file is
when it does not fit, so nothing is ever applied partially or silently. It never touches the transformer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from studio.errors import StudioError
from studio.limits import loads_json
from studio.lora_files import (
    UNET_MARKERS,
    LoraFileError,
    SafetensorsHeader,
    detect_format,
    detect_target,
    is_control_lora,
    parse_meta,
    read_header,
    sha256_file,
)
from studio.model_kinds import image_channels

log = logging.getLogger(__name__)
TE_PREFIX = "text_encoder."
TR_PREFIX = "transformer."
_LORA_SUFFIX = re.compile(r"[._]lora(?:_linear_layer)?[._](?:down|up|A|B)(?:\.[^.]+)?\.(?:weight|bias)$")
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

    @property
    def is_control(self) -> bool:
        """A Flux Control LoRA (Canny/Depth-dev kind): it widens the model's input and needs one control image."""
        return self.control_channels is not None

    def to_json(self) -> dict[str, Any]:
        """Exactly the keys of INTERFACES.md's ``lora inspect``."""
        return {"format": self.format, "target": self.target, "matched": self.matched, "total": self.total,
                "rank": self.rank, "trigger_words": list(self.trigger_words), "sha256": self.sha256}

    @property
    def summary(self) -> str:
        """``N of M modules applied`` plus any notes."""
        parts = [f"{self.matched} of {self.total} modules applied", *self.notes]
        if self.is_control:
            parts.insert(0, f"Flux Control LoRA (input widened to {self.control_channels} channels; needs one control "
                            "image)")
        return "; ".join(parts)


@dataclass(frozen=True)
class PreparedLora:
    """A checked LoRA ready for ``load_lora_into_transformer``: diffusers keys, alphas, peft metadata."""

    info: LoraInfo
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    network_alphas: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Fit:
    """How the converted modules fit the transformer."""

    matched: tuple[str, ...]
    missing: tuple[str, ...]
    wrong: tuple[tuple[str, str], ...]
    text_encoder: tuple[str, ...]
    norms: tuple[str, ...] = ()  # Flux Control LoRAs also replace the q/k RMSNorm scales
    control_channels: int | None = None


# ---- reading -------------------------------------------------------------------------------------------
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
            "kohya lora_down/lora_up or xlabs keys for a Flux model"
        )
    if fmt == "lycoris":
        raise StudioError(f"{name} is a LyCORIS LoKr/LoHa file, not a LoRA — it is not supported; use a plain LoRA")
    if any("dora_scale" in k for k in keys):
        raise StudioError(f"{name} is a DoRA (dora_scale keys), which diffusers cannot apply to Flux — use a plain LoRA")


# ---- conversion ----------------------------------------------------------------------------------------
def to_diffusers(
    tensors: dict[str, torch.Tensor], fmt: str, transformer: torch.nn.Module, name: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Diffusers keys (``transformer.…lora_A.weight``) and network alphas, via diffusers' own converters."""
    from diffusers import FluxPipeline

    tensors = dict(tensors)
    if fmt in ("peft", "ai-toolkit", "diffusers"):
        tensors = _prefix_peft_keys(tensors, transformer)
    try:
        state_dict, alphas = FluxPipeline.lora_state_dict(tensors, return_alphas=True)
    except (ValueError, AssertionError, KeyError, NotImplementedError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise StudioError(
            f"{name} ({fmt} format) could not be converted by diffusers ({detail}) — it was probably trained for a "
            "model of another size; use a LoRA trained for this model"
        ) from None
    return dict(state_dict), (dict(alphas) if alphas else None)


def _prefix_peft_keys(tensors: dict[str, torch.Tensor], transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """peft ``save_pretrained`` / bare keys → ``transformer.`` keys (diffusers would silently skip them)."""
    top = {name for name, _ in transformer.named_children()}
    out = {}
    for key, value in tensors.items():
        bare = key.removeprefix("base_model.model.")
        if not bare.startswith((TR_PREFIX, TE_PREFIX)) and bare.split(".", 1)[0] in top:
            bare = TR_PREFIX + bare
        out[bare] = value
    return out


# ---- fit ----------------------------------------------------------------------------------------------
def check_fit(state_dict: Mapping[str, torch.Tensor], transformer: torch.nn.Module) -> Fit:
    """Which converted modules exist in the transformer with matching in/out features.

    A Flux Control LoRA (BFL's Canny/Depth-dev LoRAs, diffusers' ``train_control_lora_flux.py``) is recognised by its
    ``x_embedder`` taking twice the model's image channels (diffusers widens the layer when loading it); its q/k norm
    scales must match the transformer's norms.
    """
    modules, others = _modules(state_dict)
    control = control_channels(state_dict, transformer)
    checks = [(name, _shape_problem(name, state_dict, transformer, control)) for name in modules]
    norm_keys = [k for k in others if k.startswith(TR_PREFIX) and k.rsplit(".", 2)[-2] in NORM_KEYS]
    checks += [(key, _norm_problem(key, state_dict[key], transformer)) for key in norm_keys]
    matched, norms, missing, wrong = [], [], [], []
    for name, problem in checks:
        if problem is None:
            (norms if name in norm_keys else matched).append(name)
        elif problem == "missing":
            missing.append(name)
        else:
            wrong.append((name, problem))
    text_encoder = tuple(sorted({_module_of(k) for k in others if k.startswith(TE_PREFIX)}))
    missing += sorted({_module_of(k) for k in others if not k.startswith(TE_PREFIX) and k not in norm_keys})
    return Fit(tuple(matched), tuple(missing), tuple(wrong), text_encoder, tuple(norms), control)


NORM_KEYS = ("norm_q", "norm_k", "norm_added_q", "norm_added_k")  # what diffusers loads from a Control LoRA


def control_channels(state_dict: Mapping[str, torch.Tensor], transformer: torch.nn.Module) -> int | None:
    """The widened input of a Flux Control LoRA (``x_embedder`` lora_A twice the image channels), else None."""
    shapes = {key: tuple(value.shape) for key, value in state_dict.items() if key.endswith("x_embedder.lora_A.weight")}
    return 2 * image_channels(transformer) if is_control_file(shapes, transformer) else None


def is_control_file(shapes: Mapping[str, tuple[int, ...]], transformer: torch.nn.Module) -> bool:
    """Whether a file's header (tensor shapes) is a Flux Control LoRA for ``transformer`` (cheap: reads no weights)."""
    return is_control_lora(shapes, image_channels(transformer))


def _norm_problem(key: str, value: torch.Tensor, transformer: torch.nn.Module) -> str | None:
    name = key.removeprefix(TR_PREFIX).removesuffix(".weight")
    try:
        module = transformer.get_submodule(name)
    except AttributeError:
        return "missing"
    weight = getattr(module, "weight", None)
    if weight is None or tuple(weight.shape) != tuple(value.shape):
        shape = None if weight is None else tuple(weight.shape)
        return f"{name} expects a norm scale of shape {shape}, file has {tuple(value.shape)}"
    return None


def _module_of(key: str) -> str:
    return _LORA_SUFFIX.sub("", key)


def _modules(state_dict: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    modules, others = set(), []
    for key in state_dict:
        match = re.match(r"^transformer\.(.+)\.lora_[AB]\.(weight|bias)$", key)
        if match:
            modules.add(match.group(1))
        else:
            others.append(key)
    return sorted(modules), others


def _shape_problem(
    module_name: str, sd: Mapping[str, torch.Tensor], transformer: torch.nn.Module, control: int | None = None
) -> str | None:
    try:
        module = transformer.get_submodule(module_name)
    except AttributeError:
        return "missing"
    base = getattr(module, "base_layer", module)
    in_features, out_features = getattr(base, "in_features", None), getattr(base, "out_features", None)
    if in_features is None or out_features is None:
        return f"{module_name} is a {type(base).__name__}, not a linear layer"
    lora_a = sd.get(f"{TR_PREFIX}{module_name}.lora_A.weight")
    lora_b = sd.get(f"{TR_PREFIX}{module_name}.lora_B.weight")
    if lora_a is None or lora_b is None or lora_a.ndim != 2 or lora_b.ndim != 2:
        return f"{module_name} lacks a 2-D lora_A/lora_B pair"
    if module_name == "x_embedder" and control is not None:
        in_features = control  # diffusers widens the layer to the Control LoRA's input when loading it
    if lora_a.shape[1] != in_features:
        return f"{module_name} expects in {in_features}, file has {lora_a.shape[1]}"
    if lora_b.shape[0] != out_features:
        return f"{module_name} expects out {out_features}, file has {lora_b.shape[0]}"
    if lora_a.shape[0] != lora_b.shape[1]:
        return f"{module_name} has rank {lora_a.shape[0]} in lora_A but {lora_b.shape[1]} in lora_B"
    return None


def _refuse_misfit(fit: Fit, name: str, transformer: torch.nn.Module) -> None:
    total = len(fit.matched) + len(fit.missing) + len(fit.wrong)
    if fit.wrong:
        raise StudioError(
            f"{name}: {len(fit.wrong)} of {total} modules have wrong shapes: e.g. {fit.wrong[0][1]} — it was "
            "trained for another model; use a LoRA trained for this one"
        )
    if fit.missing:
        config = getattr(transformer, "config", {})
        size = f"{config.get('num_layers', '?')} double and {config.get('num_single_layers', '?')} single blocks"
        raise StudioError(
            f"{name}: {len(fit.missing)} of {total} modules are not in this model (e.g. {fit.missing[0]}; this model "
            f"has {size}) — it was trained for another model; use a LoRA trained for this one"
        )
    if not fit.matched:
        raise StudioError(f"{name} has no modules for the transformer — nothing would apply; use a Flux LoRA")


# ---- the whole check -----------------------------------------------------------------------------------
def prepare(path: Path, transformer: torch.nn.Module, sha256: str = "") -> PreparedLora:
    """Read, detect, convert and check a LoRA file against ``transformer``; raise a StudioError when it misfits."""
    path = Path(path)
    tensors, metadata = load_tensors(path)
    keys = list(tensors)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    fmt, target = detect_format(keys, metadata), detect_target(keys, shapes)
    _refuse_early(fmt, target, keys, path.name)
    state_dict, alphas = to_diffusers(tensors, fmt, transformer, path.name)
    fit = check_fit(state_dict, transformer)
    _refuse_misfit(fit, path.name, transformer)
    notes = ()
    if fit.text_encoder:
        notes = (f"{len(fit.text_encoder)} text-encoder modules not applied (the studio applies LoRAs to the "
                 "transformer only)",)
    meta = parse_meta(SafetensorsHeader(shapes, metadata))
    info = LoraInfo(
        format=fmt, target=target, matched=len(fit.matched), total=len(fit.matched) + len(fit.text_encoder),
        rank=meta.rank, trigger_words=meta.trigger_words, sha256=sha256 or sha256_file(path),
        base_model=meta.base_model, notes=notes, control_channels=fit.control_channels,
    )
    transformer_sd = {k: v for k, v in state_dict.items() if k.startswith(TR_PREFIX)}
    adapter_meta = _adapter_metadata(metadata)
    return PreparedLora(info, transformer_sd, None if adapter_meta else _transformer_alphas(alphas), adapter_meta)


def inspect(path: Path, transformer: torch.nn.Module, sha256: str = "") -> LoraInfo:
    """What the file is and how it fits ``transformer`` (raises a StudioError naming the problem if it does not)."""
    return prepare(path, transformer, sha256).info


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


def transformer_skeleton(source: str) -> torch.nn.Module:
    """A weightless (meta-device) Flux transformer built from a model's config: enough to check shapes."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    try:
        config = FluxTransformer2DModel.load_config(source, subfolder="transformer")
    except (OSError, ValueError) as exc:
        raise StudioError(
            f"cannot read the transformer config of {source} ({str(exc).splitlines()[0][:160]}) — set "
            "STUDIO_MODEL (or --model) to a diffusers Flux folder or hub id"
        ) from None
    with init_empty_weights():
        return FluxTransformer2DModel.from_config(config)
